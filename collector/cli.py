"""`qos-scout collector ...`: serve, migrate, and the admin commands that create partners,
customers, sites and enrollment tokens (printing keys once; `--json` for scripts)."""

from __future__ import annotations

import argparse
import json
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
    sc.add_argument("--down-bps", type=int, help="contracted download speed, bit/s")
    sc.add_argument("--up-bps", type=int, help="contracted upload speed, bit/s")
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
    tc.add_argument("--partner", required=True, help="partner id")
    tc.add_argument("--site", required=True, help="site id")
    tc.add_argument("--ttl", type=float, help="validity in seconds (default from config: 1 day)")
    common(tc)
    tc.set_defaults(func=_cmd(_token_create))


def _config(args: argparse.Namespace) -> Any:
    from collector.config import ConfigFileError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    updates: dict[str, Any] = {}
    if getattr(args, "db", None):
        updates["db"] = args.db
    if getattr(args, "listen", None):
        from collector.config import parse_listen

        try:
            parse_listen(args.listen)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        updates["listen"] = args.listen
    return cfg.model_copy(update=updates)


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
    from collector.config import parse_listen
    from collector.logs import setup_json_logging

    cfg = _config(args)
    setup_json_logging(cfg.log_level)
    store = _store(args)
    host, port = parse_listen(cfg.listen)
    app = create_app(store, freeze_gc=True)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the
    # handler it found: this one, so a requested stop exits 0 (as the agent does) instead of
    # dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    try:
        uvicorn.run(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
            timeout_graceful_shutdown=5,
        )  # fmt: skip
    except _Stopped:
        pass
    finally:
        store.dispose()
    return 0


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


def _partner_create(args: argparse.Namespace) -> int:
    from collector.tenants import create_partner

    row, key = _admin(args, lambda c, now: create_partner(c, args.name, now))
    doc = {"partner_id": row["id"], "name": row["name"], "api_key": key}
    return _emit(args, doc, f"partner {row['name']} id {row['id']}\nAPI key (shown once): {key}")


def _partner_list(args: argparse.Namespace) -> int:
    from collector.tenants import list_partners

    rows = _admin(args, lambda c, _now: list_partners(c))
    return _emit(args, rows, _table(rows, ["id", "name"]))


def _partner_rotate(args: argparse.Namespace) -> int:
    from collector.tenants import rotate_partner_key

    key = _admin(args, lambda c, _now: rotate_partner_key(c, args.partner_id))
    doc = {"partner_id": args.partner_id, "api_key": key}
    return _emit(args, doc, f"new API key (shown once): {key}")


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
        "contracted_down_bps": args.down_bps,
        "contracted_up_bps": args.up_bps,
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
    from collector.tenants import create_token

    def run(c: Any, now: float) -> Any:
        ttl = args.ttl or _config(args).token_ttl_s
        return create_token(c, args.partner, args.site, ttl, now)

    out = _admin(args, run)
    from collector.timefmt import iso

    doc = {"token": out["token"], "site_id": out["site_id"], "expires_at": iso(out["expires_at"])}
    return _emit(
        args, doc, f"enrollment token (one use, until {doc['expires_at']}): {out['token']}"
    )
