"""`qos-scout collector ...`: serve, migrate, and the admin commands that create partners,
customers, sites and enrollment tokens (printing keys once; `--json` for scripts), and take
credentials away: disable, enable, revoke or rekey an agent, list and revoke tokens; edit
probe profiles (the agents' central config) and list outdated or silent agents.

The database URL comes from `--db`, else QOS_SCOUT_DB_URL, else the config file; its
password may come from the file named by QOS_SCOUT_DB_PASSWORD_FILE (a Docker secret), so
no password has to sit on a command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any


class CliError(Exception):
    """A mistake the person running the command can fix; printed without a traceback."""


def _cmd(fn: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int]:
    """`fn` as a command handler: a CliError becomes its message on stderr and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args) or 0)
        except CliError as exc:
            print(f"qos-scout: {exc}", file=sys.stderr)
            return 2

    return run


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("collector", help="the central collector service and its admin")
    sub = p.add_subparsers(dest="collector_command", metavar="COMMAND")
    sub.required = True

    def common(sp: argparse.ArgumentParser, json_out: bool = True) -> None:
        sp.add_argument("--config", help="collector config file (YAML)")
        sp.add_argument("--db", help="database URL (default: from config, else SQLite file)")
        if json_out:
            sp.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("serve", help="run the collector HTTP service")
    common(s, json_out=False)
    s.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:8080)")
    s.set_defaults(func=_cmd(_serve))

    m = sub.add_parser("migrate", help="create or upgrade the database schema")
    common(m)
    m.set_defaults(func=_cmd(_migrate))

    rs = sub.add_parser(
        "rotate-secrets",
        help="re-encrypt every stored channel secret with the first master key",
    )
    common(rs)
    rs.set_defaults(func=_cmd(_rotate_secrets))

    gr = sub.add_parser(
        "grafana-role",
        help="create or update the read-only PostgreSQL role of the site-history dashboard",
    )
    common(gr)
    gr.add_argument(
        "--password-file", required=True, help="file holding the role's password (16+ chars)"
    )
    gr.add_argument("--role", default="qos_scout_grafana", help="role name (qos_scout_grafana)")
    gr.set_defaults(func=_cmd(_grafana_role))

    pa = sub.add_parser("partner", help="partners (tenants) and their API keys")
    pas = pa.add_subparsers(dest="action", metavar="ACTION")
    pas.required = True
    pc = pas.add_parser("create", help="create a partner and print its API key")
    pc.add_argument("name")
    common(pc)
    pc.set_defaults(func=_cmd(_partner_create))
    pl = pas.add_parser("list", help="list partners")
    common(pl)
    pl.set_defaults(func=_cmd(_partner_list))
    pr = pas.add_parser("rotate-key", help="issue a new API key (the old one stops working)")
    pr.add_argument("partner_id")
    common(pr)
    pr.set_defaults(func=_cmd(_partner_rotate))
    pt = pas.add_parser(
        "retention", help="how many days a partner's raw results are kept (its override)"
    )
    pt.add_argument("partner_id")
    how = pt.add_mutually_exclusive_group(required=True)
    how.add_argument("--days", type=int, help="keep raw results this many days (1-3650)")
    how.add_argument(
        "--default", action="store_true", help="drop the override: the config's retention.raw_days"
    )
    common(pt)
    pt.set_defaults(func=_cmd(_partner_retention))

    cu = sub.add_parser("customer", help="customers of a partner")
    cus = cu.add_subparsers(dest="action", metavar="ACTION")
    cus.required = True
    cc = cus.add_parser("create", help="create a customer")
    cc.add_argument("--partner", required=True, help="partner id")
    cc.add_argument("name")
    cc.add_argument("--notes", default="")
    common(cc)
    cc.set_defaults(func=_cmd(_customer_create))
    cl = cus.add_parser("list", help="list a partner's customers")
    cl.add_argument("--partner", required=True, help="partner id")
    common(cl)
    cl.set_defaults(func=_cmd(_customer_list))

    si = sub.add_parser("site", help="customer sites")
    sis = si.add_subparsers(dest="action", metavar="ACTION")
    sis.required = True
    sc = sis.add_parser("create", help="create a site")
    sc.add_argument("--partner", required=True, help="partner id")
    sc.add_argument("--customer", required=True, help="customer id")
    sc.add_argument("name")
    sc.add_argument("--address", default="")
    sc.add_argument("--down-mbps", type=_mbps, help="contracted download speed, Mbit/s")
    sc.add_argument("--up-mbps", type=_mbps, help="contracted upload speed, Mbit/s")
    sc.add_argument("--firewall-make", default="")
    sc.add_argument("--firewall-model", default="")
    sc.add_argument("--sip-server", default="")
    sc.add_argument("--sip-domain", default="")
    common(sc)
    sc.set_defaults(func=_cmd(_site_create))
    sl = sis.add_parser("list", help="list a partner's sites")
    sl.add_argument("--partner", required=True, help="partner id")
    common(sl)
    sl.set_defaults(func=_cmd(_site_list))

    to = sub.add_parser("token", help="one-time enrollment tokens for agents")
    tos = to.add_subparsers(dest="action", metavar="ACTION")
    tos.required = True
    tc = tos.add_parser("create", help="create an enrollment token for a site")
    tc.add_argument("--partner", help="partner id (default: the site's partner)")
    tc.add_argument("--site", required=True, help="site id")
    tc.add_argument("--ttl", type=float, help="validity in seconds (default from config: 1 day)")
    common(tc)
    tc.set_defaults(func=_cmd(_token_create))
    tl = tos.add_parser("list", help="list enrollment tokens and their state")
    tl.add_argument("--partner", required=True, help="partner id")
    tl.add_argument("--site", help="only this site's")
    common(tl)
    tl.set_defaults(func=_cmd(_token_list))
    tr = tos.add_parser("revoke", help="revoke an enrollment token that was not used yet")
    tr.add_argument("--partner", required=True, help="partner id")
    tr.add_argument("token_id", help="the token's id (from `token list` or `token create`)")
    common(tr)
    tr.set_defaults(func=_cmd(_token_revoke))

    ag = sub.add_parser("agent", help="enrolled agents and their keys")
    ags = ag.add_subparsers(dest="action", metavar="ACTION")
    ags.required = True
    al = ags.add_parser("list", help="list a partner's agents and their state")
    al.add_argument("--partner", required=True, help="partner id")
    al.add_argument("--site", help="only this site's")
    common(al)
    al.set_defaults(func=_cmd(_agent_list))
    _profile_commands(sub, common)
    for action, helptext in (
        ("disable", "refuse the agent's key until it is enabled again"),
        ("enable", "accept a disabled agent's key again"),
        ("revoke", "refuse the agent's key for good (enroll it again to bring it back)"),
        ("rotate-key", "issue a new key for the agent (printed once; the old one stops)"),
    ):
        ap = ags.add_parser(action, help=helptext)
        ap.add_argument("--partner", required=True, help="partner id")
        ap.add_argument("agent_id")
        common(ap)
        ap.set_defaults(func=_cmd(_agent_action), agent_action=action)


def _profile_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    us = sub.add_parser("user", help="people who log in to the support pages")
    uss = us.add_subparsers(dest="action", metavar="ACTION")
    uss.required = True
    uc = uss.add_parser(
        "create", help="create a user: prints an invitation link, or sets a password from stdin"
    )
    uc.add_argument("--partner", required=True, help="partner id")
    uc.add_argument("--email", required=True, help="the user's e-mail (their login)")
    uc.add_argument("--role", required=True, choices=["admin", "technician", "customer"])
    uc.add_argument("--customer", help="customer id (a customer viewer's one customer)")
    uc.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin instead of printing an invitation link",
    )
    uc.add_argument("--portal-url", help="the portal's address for the link "
                    "(default: mail.portal_url of the config)")  # fmt: skip
    common(uc)
    uc.set_defaults(func=_cmd(_user_create))
    ul = uss.add_parser("list", help="list a partner's users")
    ul.add_argument("--partner", required=True, help="partner id")
    common(ul)
    ul.set_defaults(func=_cmd(_user_list))

    pf = sub.add_parser("profile", help="probe profiles: the agents' central config")
    pfs = pf.add_subparsers(dest="action", metavar="ACTION")
    pfs.required = True

    def scope(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--partner", required=True, help="partner id")
        which = sp.add_mutually_exclusive_group()
        which.add_argument("--customer", help="the customer's profile (default: the partner's)")
        which.add_argument("--site", help="the site's profile (default: the partner's)")
        common(sp)

    for action, helptext, fn in (
        ("show", "print a profile and its version", _profile_show),
        ("set", "create or replace a profile from a YAML file (`modules:`)", _profile_set),
        ("delete", "remove a profile", _profile_delete),
    ):
        sp = pfs.add_parser(action, help=helptext)
        scope(sp)
        if action == "set":
            sp.add_argument("--file", required=True, help="YAML file with a `modules:` mapping")
        if action != "show":
            sp.add_argument("--if-version", type=int, help="refuse unless this is the version")
        sp.set_defaults(func=_cmd(fn))
    pe = pfs.add_parser("effective", help="print the config a site's agents run")
    pe.add_argument("--partner", required=True, help="partner id")
    pe.add_argument("--site", required=True, help="site id")
    common(pe)
    pe.set_defaults(func=_cmd(_profile_effective))


def _config(args: argparse.Namespace) -> Any:
    from collector.config import ConfigFileError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    updates: dict[str, Any] = {}
    db = getattr(args, "db", None) or os.environ.get(DB_URL_ENV, "").strip() or cfg.db
    pw_file = os.environ.get(DB_PASSWORD_FILE_ENV, "").strip()
    if pw_file:
        db = _with_password(db, pw_file)
    if db != cfg.db:
        updates["db"] = db
    if getattr(args, "listen", None):
        from collector.config import parse_listen

        try:
            parse_listen(args.listen)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        updates["listen"] = args.listen
    return cfg.model_copy(update=updates)


DB_URL_ENV = "QOS_SCOUT_DB_URL"
DB_PASSWORD_FILE_ENV = "QOS_SCOUT_DB_PASSWORD_FILE"


def _with_password(url: str, path: str) -> str:
    """The database URL with the password read from `path` (surrounding blanks dropped)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from collector.db import DatabaseError, normalise_url

    try:
        password = open(path, encoding="utf-8").read().strip()
    except OSError as exc:
        raise CliError(f"{DB_PASSWORD_FILE_ENV} {path}: cannot read: {exc.strerror}") from None
    if not password:
        raise CliError(f"{DB_PASSWORD_FILE_ENV} {path}: the file is empty")
    try:
        u = make_url(normalise_url(url))
    except (DatabaseError, ArgumentError) as exc:
        raise CliError(str(exc)) from None
    return u.set(password=password).render_as_string(hide_password=False)


def _mbps(text: str) -> int:
    """A speed given in Mbit/s (as people say it), as the bit/s the API stores."""
    try:
        mbps = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed in Mbit/s, e.g. 100 or 0.5"
        ) from None
    if not 0 < mbps <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text} Mbit/s: expected more than 0, at most 1000000")
    return round(mbps * 1e6)


def _store(args: argparse.Namespace) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    from collector.db import DatabaseError
    from collector.store import Store

    cfg = _config(args)
    try:
        store = Store(cfg)
        store.migrate()
    except DatabaseError as exc:
        raise CliError(str(exc)) from None
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise CliError(f"database {cfg.db}: {reason}") from None
    return store


def _admin(args: argparse.Namespace, fn: Any) -> Any:
    from collector.errors import CollectorError

    store = _store(args)
    try:
        with store.write() as conn:
            return fn(conn, time.time())
    except CollectorError as exc:
        raise CliError(exc.message) from None
    finally:
        store.dispose()


def _emit(args: argparse.Namespace, doc: Any, text: str) -> int:
    if args.json:
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(text)
    return 0


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    lines = ["\t".join(cols)]
    lines += ["\t".join(str(r.get(c, "")) for c in cols) for r in rows]
    return "\n".join(lines)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from collector.api.app import create_app
    from collector.config import ConfigFileError, parse_listen
    from collector.logs import setup_json_logging

    cfg = _config(args)
    setup_json_logging(cfg.log_level)
    store = _store(args)
    host, port = parse_listen(cfg.listen)
    try:
        app = create_app(store, freeze_gc=True)
    except ConfigFileError as exc:
        store.dispose()
        raise CliError(str(exc)) from None
    # uvicorn believes no X-Forwarded-* header (its default trusts 127.0.0.1): the app's
    # web.trusted_proxies decides (collector/api/security.py).
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the
    # handler it found: this one, so a requested stop exits 0 (as the agent does) instead of
    # dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    _raise_nofile()
    try:
        if cfg.metrics.listen is None:
            _server_class()(
                uvicorn.Config(
                    app, host=host, port=port, log_config=None, access_log=False,
                    lifespan="on", timeout_graceful_shutdown=5, proxy_headers=False,
                )
            ).run()  # fmt: skip
        else:
            _serve_with_metrics_listener(app, host, port, cfg.metrics.listen)
    except _Stopped:
        pass
    finally:
        store.dispose()
    return 0


def _server_class() -> type[Any]:
    """uvicorn's server, but its shutdown first answers every job poll that is waiting (an
    agent polls again at once, at another replica or at this one restarted), so they are
    not cut, each with a logged traceback, when the graceful shutdown runs out."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            st = getattr(self.config.loaded_app.state, "qs", None) if self.config.loaded else None
            if st is None:
                st = getattr(getattr(self.config.app, "state", None), "qs", None)
            if st is not None:
                st.waker.stop()
            await super().shutdown(sockets=sockets)

    return _Server


def _raise_nofile() -> None:
    """Every waiting agent holds a socket: lift the soft open-files limit to the hard one
    (often 1,024 soft, which would refuse the 1,000th long poll)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _serve_with_metrics_listener(app: Any, host: str, port: int, metrics_listen: str) -> None:
    """The app on host:port and its /metrics alone on `metrics_listen`, in one event loop;
    the main server owns the signals and the metrics listener stops with it."""
    import asyncio
    from contextlib import contextmanager

    import uvicorn

    from collector.api.app import create_metrics_app
    from collector.config import parse_listen

    class _Quiet(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Any:  # the main server handles SIGTERM/SIGINT
            yield

    mhost, mport = parse_listen(metrics_listen)
    main = _server_class()(
        uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
            timeout_graceful_shutdown=5, proxy_headers=False,
        )
    )  # fmt: skip
    side = _Quiet(
        uvicorn.Config(
            create_metrics_app(app), host=mhost, port=mport, log_config=None,
            access_log=False, lifespan="off",
        )
    )  # fmt: skip

    async def both() -> None:
        side_task = asyncio.create_task(side.serve())
        try:
            await main.serve()
        finally:
            side.should_exit = True
            await side_task

    with asyncio.Runner(loop_factory=main.config.get_loop_factory()) as runner:
        runner.run(both())


class _Stopped(Exception):
    """Raised by the signal handler once uvicorn has shut down."""


def _stopped(signum: int, _frame: Any) -> None:
    raise _Stopped(signum)


def _migrate(args: argparse.Namespace) -> int:
    store = _store(args)
    from collector.db import current_revision

    rev = current_revision(store.engine)
    store.dispose()
    return _emit(args, {"revision": rev}, f"database schema at revision {rev}")


def _rotate_secrets(args: argparse.Namespace) -> int:
    """After a new master key is put first (channels.master_keys or QOS_SCOUT_MASTER_KEYS):
    every partner channel's credentials re-encrypted with it; the old keys can then go."""
    from collector.config import ConfigFileError
    from collector.secretbox import SecretBox, SecretError

    cfg = _config(args)
    try:
        box = SecretBox.from_config(cfg.channels)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    if box is None:
        raise CliError("no master key configured (channels.master_keys or QOS_SCOUT_MASTER_KEYS)")

    def run(c: Any, _now: float) -> int:
        from collector.channels import rotate_all

        try:
            return rotate_all(c, box)
        except SecretError as exc:
            raise CliError(str(exc)) from None

    n = _admin(args, run)
    return _emit(args, {"rotated": n}, f"{n} channel secrets re-encrypted with the first key")


def _grafana_role(args: argparse.Namespace) -> int:
    """The role Grafana's PostgreSQL datasource logs in with: SELECT on the columns the
    site-history board reads (collector/readonly.py), nothing else."""
    from collector import readonly

    try:
        password = open(args.password_file, encoding="utf-8").read().strip()
    except OSError as exc:
        raise CliError(
            f"--password-file {args.password_file}: cannot read: {exc.strerror}"
        ) from None
    granted = _admin(args, lambda c, _now: readonly.grant(c, args.role, password))
    doc = {"role": args.role, "select": granted}
    lines = [f"role {args.role}: read-only, SELECT on"]
    lines += [f"  {table} ({', '.join(cols)})" for table, cols in granted.items()]
    return _emit(args, doc, "\n".join(lines))


def _partner_create(args: argparse.Namespace) -> int:
    from collector.tenants import create_partner

    row, key = _admin(args, lambda c, now: create_partner(c, args.name, now))
    doc = {"partner_id": row["id"], "name": row["name"], "api_key": key}
    return _emit(args, doc, f"partner {row['name']} id {row['id']}\nAPI key (shown once): {key}")


def _partner_list(args: argparse.Namespace) -> int:
    from collector.tenants import list_partners

    rows = _admin(args, lambda c, _now: list_partners(c))
    return _emit(args, rows, _table(rows, ["id", "name", "raw_retention_days"]))


def _partner_rotate(args: argparse.Namespace) -> int:
    from collector.tenants import rotate_partner_key

    key = _admin(args, lambda c, _now: rotate_partner_key(c, args.partner_id))
    doc = {"partner_id": args.partner_id, "api_key": key}
    return _emit(args, doc, f"new API key (shown once): {key}")


def _partner_retention(args: argparse.Namespace) -> int:
    from collector.tenants import set_partner_retention

    days = None if args.default else args.days
    _admin(args, lambda c, _now: set_partner_retention(c, args.partner_id, days))
    doc = {"partner_id": args.partner_id, "raw_retention_days": days}
    text = f"raw results kept {days} days" if days else "raw results kept retention.raw_days"
    return _emit(args, doc, text)


def _user_create(args: argparse.Namespace) -> int:
    from collector import audit, users
    from collector.tenants import get_partner

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    cfg = _config(args)
    base = args.portal_url or (cfg.mail.portal_url if cfg.mail else "http://127.0.0.1:8080")

    def run(c: Any, now: float) -> tuple[dict[str, Any], str | None]:
        get_partner(c, args.partner)
        u = users.create_user(c, args.partner, args.email, args.role, now, args.customer,
                              password=password)  # fmt: skip
        audit.record(c, args.partner, "command line", "user.create", now, u["email"],
                     {"role": args.role})  # fmt: skip
        return u, (None if password is not None else users.create_invitation(c, u["id"], now))

    u, token = _admin(args, run)
    link = f"{base.rstrip('/')}/ui/invite/{token}" if token else None
    doc = {"user_id": u["id"], "email": u["email"], "role": u["role"], "invitation_link": link}
    text = f"user {u['email']} ({u['role']}) id {u['id']}"
    text += f"\ninvitation link (single use, 3 days): {link}" if link else "\npassword set"
    return _emit(args, doc, text)


def _user_list(args: argparse.Namespace) -> int:
    from collector.users import list_users

    rows = _admin(args, lambda c, _now: list_users(c, args.partner))
    return _emit(args, rows, _table(rows, ["id", "email", "role", "customer_id", "state"]))


def _customer_create(args: argparse.Namespace) -> int:
    from collector.tenants import create_customer, get_partner

    def run(c: Any, now: float) -> Any:
        get_partner(c, args.partner)
        return create_customer(c, args.partner, args.name, args.notes, now)

    row = _admin(args, run)
    doc = {"customer_id": row["id"], "partner_id": args.partner, "name": row["name"]}
    return _emit(args, doc, f"customer {row['name']} id {row['id']}")


def _customer_list(args: argparse.Namespace) -> int:
    from collector.tenants import list_customers

    rows = _admin(args, lambda c, _now: list_customers(c, args.partner))
    return _emit(args, rows, _table(rows, ["id", "name"]))


def _site_create(args: argparse.Namespace) -> int:
    from collector.tenants import create_site

    values = {
        "name": args.name,
        "address": args.address,
        "contracted_down_bps": args.down_mbps,
        "contracted_up_bps": args.up_mbps,
        "firewall_make": args.firewall_make,
        "firewall_model": args.firewall_model,
        "sip_server": args.sip_server,
        "sip_domain": args.sip_domain,
    }
    row = _admin(args, lambda c, now: create_site(c, args.partner, args.customer, values, now))
    doc = {"site_id": row["id"], "customer_id": row["customer_id"], "name": row["name"]}
    return _emit(args, doc, f"site {row['name']} id {row['id']}")


def _site_list(args: argparse.Namespace) -> int:
    from collector.tenants import list_sites

    rows = _admin(args, lambda c, _now: list_sites(c, args.partner))
    return _emit(args, rows, _table(rows, ["id", "name", "customer_name"]))


def _token_create(args: argparse.Namespace) -> int:
    from collector.tenants import create_token, site_partner

    def run(c: Any, now: float) -> Any:
        ttl = args.ttl or _config(args).token_ttl_s
        partner = args.partner or site_partner(c, args.site)
        return create_token(c, partner, args.site, ttl, now)

    out = _admin(args, run)
    from collector.timefmt import iso

    doc = {"token": out["token"], "site_id": out["site_id"], "expires_at": iso(out["expires_at"])}
    return _emit(
        args, doc, f"enrollment token (one use, until {doc['expires_at']}): {out['token']}"
    )


def _token_list(args: argparse.Namespace) -> int:
    from collector.tenants import get_partner, list_tokens
    from collector.timefmt import iso

    def run(c: Any, now: float) -> Any:
        get_partner(c, args.partner)
        return list_tokens(c, args.partner, now, args.site)

    rows = _admin(args, run)
    for r in rows:
        for k in ("created_at", "expires_at", "used_at", "revoked_at"):
            r[k] = iso(r[k])
    return _emit(args, rows, _table(rows, ["id", "site_id", "state", "expires_at", "agent_id"]))


def _token_revoke(args: argparse.Namespace) -> int:
    from collector.tenants import revoke_token
    from collector.timefmt import iso

    row = _admin(args, lambda c, now: revoke_token(c, args.partner, args.token_id, now))
    row = {**row, **{k: iso(row[k]) for k in ("created_at", "expires_at", "used_at", "revoked_at")}}
    return _emit(args, row, f"enrollment token {row['id']} revoked at {row['revoked_at']}")


AGENT_TIMES = (
    "created_at", "last_seen_at", "disabled_at", "revoked_at", "key_rotated_at",
    "config_reported_at",
)  # fmt: skip


AGENT_COLUMNS = [
    "id", "hostname", "site_id", "state", "version", "outdated", "silent", "config_version",
    "last_seen_at",
]  # fmt: skip


def _agent_doc(a: dict[str, Any], health: dict[str, Any] | None = None) -> dict[str, Any]:
    from collector.tenants import agent_state
    from collector.timefmt import iso

    times = {k: iso(a.get(k)) for k in AGENT_TIMES}
    return {**a, **(health or {}), "state": agent_state(a), **times}


def _agent_list(args: argparse.Namespace) -> int:
    """Agents with their software version, `outdated` (older than this collector's release
    or `min_agent_version`), `silent` (not heard from for `silent_agent_timeout_s`) and the
    config version they run."""
    from collector.profiles import agent_health
    from collector.tenants import get_partner, list_agents

    cfg = _config(args)

    def run(c: Any, _now: float) -> Any:
        get_partner(c, args.partner)
        return list_agents(c, args.partner, args.site)

    now, silent = time.time(), cfg.silent_agent_timeout_s

    def health(a: dict[str, Any]) -> dict[str, Any]:
        return agent_health(a, now, silent_after_s=silent, min_version=cfg.min_agent_version)

    rows = [_agent_doc(a, health(a)) for a in _admin(args, run)]
    return _emit(args, rows, _table(rows, AGENT_COLUMNS))


def _agent_action(args: argparse.Namespace) -> int:
    """disable, enable, revoke or rotate-key: effective on every running collector within
    2 s (they read the credentials epoch once a second)."""
    from collector import tenants

    pid, aid, action = args.partner, args.agent_id, args.agent_action
    key = None
    if action == "rotate-key":
        a, key = _admin(args, lambda c, now: tenants.rotate_agent_key(c, pid, aid, now))
    elif action == "revoke":
        a = _admin(args, lambda c, now: tenants.revoke_agent(c, pid, aid, now))
    else:
        off = action == "disable"
        a = _admin(args, lambda c, now: tenants.set_agent_disabled(c, pid, aid, off, now))
    doc = _agent_doc(a)
    if key is not None:
        doc["agent_key"] = key
        text = f"agent {aid}: new key (shown once): {key}\nthe old key stops working within 2 s"
    else:
        text = f"agent {aid} ({doc['hostname']}) is {doc['state']}"
    return _emit(args, doc, text)


def _scope(args: argparse.Namespace) -> tuple[Any, str]:
    if getattr(args, "site", None):
        return "site", args.site
    if getattr(args, "customer", None):
        return "customer", args.customer
    return "partner", args.partner


def _profile_text(doc: dict[str, Any]) -> str:
    import yaml

    head = f"# {doc['scope']} {doc['scope_id']} profile, version {doc['version']}\n"
    return head + yaml.safe_dump({"modules": doc["modules"]}, sort_keys=False).rstrip()


def _profile_show(args: argparse.Namespace) -> int:
    from collector.profiles import get_profile

    scope, sid = _scope(args)
    doc = _admin(args, lambda c, _now: get_profile(c, args.partner, scope, sid))
    return _emit(args, doc, _profile_text(doc))


def _profile_set(args: argparse.Namespace) -> int:
    """Refused with the key named (the agent's own model) when the profile is invalid."""
    import yaml

    from collector.profiles import put_profile

    try:
        data = yaml.safe_load(open(args.file, encoding="utf-8").read())
    except OSError as exc:
        raise CliError(f"{args.file}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{args.file}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{args.file}: expected a mapping with `modules:`")
    scope, sid = _scope(args)
    doc = _admin(
        args, lambda c, now: put_profile(c, args.partner, scope, sid, data, now, args.if_version)
    )
    return _emit(args, doc, _profile_text(doc))


def _profile_delete(args: argparse.Namespace) -> int:
    from collector.profiles import delete_profile

    scope, sid = _scope(args)
    _admin(
        args, lambda c, now: delete_profile(c, args.partner, scope, sid, args.if_version, now=now)
    )
    return _emit(args, {"deleted": {"scope": scope, "scope_id": sid}}, f"{scope} {sid}: deleted")


def _profile_effective(args: argparse.Namespace) -> int:
    import yaml

    from collector.profiles import effective

    cfg = _admin(args, lambda c, _now: effective(c, args.partner, args.site))
    doc = cfg.model_dump(mode="json")
    head = f"# version {doc['version']}, from: {', '.join(doc['layers']) or 'no profile'}\n"
    return _emit(args, doc, head + yaml.safe_dump({"modules": doc["modules"]}).rstrip())
