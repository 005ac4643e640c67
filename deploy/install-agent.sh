#!/bin/sh
# Install the qos-scout agent (and responder) on a Debian / Raspberry Pi OS box:
# a virtualenv under PREFIX, a system user, the config directory and the systemd units.
#
#   sudo deploy/install-agent.sh [--prefix /opt/qos-scout] [--user qos-scout] [--no-systemd]
#
# Then enroll once and start:
#   sudo -u qos-scout /opt/qos-scout/venv/bin/qos-scout agent enroll \
#        --collector https://collector.example.net --token TOKEN --config /etc/qos-scout/agent.yml
#   sudo systemctl enable --now qos-scout-agent
set -eu

PREFIX=/opt/qos-scout
CONFDIR=/etc/qos-scout
STATEDIR=/var/lib/qos-scout
UNITDIR=/etc/systemd/system
SYSTEMD=1
RUNAS=qos-scout
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --confdir) CONFDIR=$2; shift 2 ;;
        --statedir) STATEDIR=$2; shift 2 ;;
        --unitdir) UNITDIR=$2; shift 2 ;;
        --source) SOURCE=$2; shift 2 ;;
        --user) RUNAS=$2; shift 2 ;;
        --no-systemd) SYSTEMD=0; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install-agent.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

[ -f "$SOURCE/pyproject.toml" ] || { echo "install-agent.sh: no pyproject.toml in $SOURCE" >&2; exit 2; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "install-agent.sh: $PYTHON is older than 3.11" >&2; exit 2; }

echo "installing qos-scout from $SOURCE into $PREFIX"
mkdir -p "$PREFIX/share"
"$PYTHON" -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install --quiet --upgrade pip
"$PREFIX/venv/bin/python" -m pip install --quiet "$SOURCE"
rm -rf "$PREFIX/share/docs" && cp -r "$SOURCE/docs" "$PREFIX/share/docs"

if [ "$(id -u)" = 0 ] && ! id "$RUNAS" >/dev/null 2>&1; then
    useradd --system --home-dir "$STATEDIR" --shell /usr/sbin/nologin "$RUNAS"
fi
mkdir -p "$CONFDIR" "$STATEDIR"
if [ ! -f "$CONFDIR/agent.yml" ]; then
    sed -e "s#/var/lib/qos-scout#$STATEDIR#g" -e "s#/etc/qos-scout#$CONFDIR#g" \
        "$SOURCE/deploy/agent.example.yml" > "$CONFDIR/agent.yml"
    echo "wrote $CONFDIR/agent.yml: set the collector URL and targets, then enroll"
fi
if [ "$(id -u)" = 0 ]; then
    group=$(id -gn "$RUNAS")
    chown -R "$RUNAS:$group" "$STATEDIR"
    chown "root:$group" "$CONFDIR" && chmod 0770 "$CONFDIR"
fi

if [ "$SYSTEMD" = 1 ]; then
    mkdir -p "$UNITDIR"
    for unit in qos-scout-agent.service qos-scout-responder.service; do
        sed -e "s#/opt/qos-scout#$PREFIX#g" -e "s#/etc/qos-scout#$CONFDIR#g" \
            -e "s#/var/lib/qos-scout#$STATEDIR#g" \
            -e "s#^User=qos-scout#User=$RUNAS#" -e "s#^Group=qos-scout#Group=$(id -gn "$RUNAS" 2>/dev/null || echo "$RUNAS")#" \
            "$SOURCE/deploy/systemd/$unit" > "$UNITDIR/$unit"
    done
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    echo "installed systemd units in $UNITDIR (not started)"
fi
"$PREFIX/venv/bin/qos-scout" --version
