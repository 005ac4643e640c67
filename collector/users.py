"""People of a partner: users with a role, argon2 password hashes, server-side web
sessions (idle and absolute expiry), users' API tokens and single-use invitation links.

Every secret handed out (session id, API token, invitation) is random and stored only as
its SHA-256; passwords only as argon2id hashes. Times are passed in (`now`)."""

from __future__ import annotations

import re
import secrets
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from collector import tenants
from collector.errors import Conflict, Invalid, NotFound, Unauthorized
from collector.keys import hash_secret, new_id
from collector.schema import invitations, user_sessions, user_tokens, users

ROLES = ("admin", "technician", "customer")
ROLE_LABELS = {"admin": "Partner admin", "technician": "Technician", "customer": "Customer viewer"}
TOKEN_PREFIX = "qsu_"  # a user's API token
SESSION_IDLE_S = 2 * 3600.0
SESSION_MAX_S = 12 * 3600.0
TOUCH_EVERY_S = 60.0  # a session's last use is written at most this often
INVITE_TTL_S = 3 * 86400.0
PASSWORD_MIN = 10
PASSWORD_MAX = 256
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
# Cheap enough for a 2-core box under test load, still argon2id with 19 MiB (OWASP's floor).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# A hash to verify against when the e-mail is unknown, so both answers take as long.
_DUMMY = _HASHER.hash("not a password of anyone")


def normalise_email(email: str) -> str:
    e = email.strip().lower()
    if not EMAIL_RE.match(e):
        raise Invalid(f"email: {email[:80]!r} is not an e-mail address (name@example.com)")
    return e


def check_password(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(f"password: must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")


def _check_role(conn: sa.Connection, partner_id: str, role: str, customer_id: str | None) -> None:
    if role not in ROLES:
        raise Invalid(f"role: {role[:40]!r} is not one of {', '.join(ROLES)}")
    if role == "customer":
        if not customer_id:
            raise Invalid("customer_id: a customer viewer needs the customer they may see")
        tenants.get_customer(conn, partner_id, customer_id)  # another partner's: 404
    elif customer_id:
        raise Invalid(f"customer_id: only a customer viewer is limited to a customer, not {role}")


def view(r: Any) -> dict[str, Any]:
    d = dict(r._mapping)
    d["has_password"] = d.pop("password_hash", None) is not None
    d["state"] = "disabled" if d["disabled_at"] else ("active" if d["has_password"] else "invited")
    return d


def create_user(
    conn: sa.Connection, partner_id: str, email: str, role: str, now: float,
    customer_id: str | None = None, name: str = "", password: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    email = normalise_email(email)
    _check_role(conn, partner_id, role, customer_id)
    if password is not None:
        check_password(password)
    if conn.execute(sa.select(users.c.id).where(users.c.email == email)).first():
        raise Conflict(f"a user with the e-mail {email} exists already")
    uid = new_id()
    conn.execute(
        users.insert().values(
            id=uid, partner_id=partner_id, email=email, name=name[:200], role=role,
            customer_id=customer_id, created_at=now,
            password_hash=_HASHER.hash(password) if password is not None else None,
        )
    )  # fmt: skip
    return get_user(conn, partner_id, uid)


def get_user(conn: sa.Connection, partner_id: str, user_id: str) -> dict[str, Any]:
    r = conn.execute(
        sa.select(users).where(users.c.id == user_id, users.c.partner_id == partner_id)
    ).first()
    if r is None:
        raise NotFound(f"user {user_id} not found")
    return view(r)


def list_users(conn: sa.Connection, partner_id: str) -> list[dict[str, Any]]:
    q = sa.select(users).where(users.c.partner_id == partner_id).order_by(users.c.email)
    return [view(r) for r in conn.execute(q)]


def update_user(
    conn: sa.Connection, partner_id: str, user_id: str, now: float, *, role: str | None = None,
    customer_id: str | None = None, disabled: bool | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Change a user's role (and customer) or disable/enable them; disabling ends their
    sessions and refuses their API tokens."""
    u = get_user(conn, partner_id, user_id)
    values: dict[str, Any] = {}
    if role is not None:
        _check_role(conn, partner_id, role, customer_id)
        values.update(role=role, customer_id=customer_id if role == "customer" else None)
    if disabled is not None:
        values["disabled_at"] = (u["disabled_at"] or now) if disabled else None
    if values:
        conn.execute(users.update().where(users.c.id == user_id).values(**values))
    if disabled or role is not None:  # a new role starts with new sessions
        revoke_sessions(conn, user_id, now)
    return get_user(conn, partner_id, user_id)


def set_password(conn: sa.Connection, user_id: str, password: str) -> None:
    check_password(password)
    conn.execute(
        users.update().where(users.c.id == user_id).values(password_hash=_HASHER.hash(password))
    )


def authenticate(conn: sa.Connection, email: str, password: str) -> dict[str, Any]:
    """The user of this e-mail and password, or Unauthorized (the same message whether the
    e-mail is unknown, the password wrong or the user disabled)."""
    wrong = Unauthorized("wrong e-mail or password")
    r = conn.execute(sa.select(users).where(users.c.email == email.strip().lower())).first()
    stored = r.password_hash if r is not None and r.password_hash else _DUMMY
    try:
        _HASHER.verify(stored, password[:PASSWORD_MAX])
    except (VerificationError, InvalidHashError):
        raise wrong from None
    if r is None or not r.password_hash or r.disabled_at is not None:
        raise wrong
    if _HASHER.check_needs_rehash(r.password_hash):
        conn.execute(
            users.update().where(users.c.id == r.id).values(password_hash=_HASHER.hash(password))
        )
    return view(r)


# --------------------------------------------------------------------------- sessions


def create_session(conn: sa.Connection, user_id: str, now: float, user_agent: str = "") -> str:
    """A new session; returns the id for the cookie (only its hash is stored)."""
    sid = secrets.token_urlsafe(32)
    conn.execute(
        user_sessions.insert().values(
            id_hash=hash_secret(sid), user_id=user_id, created_at=now, last_seen_at=now,
            expires_at=now + SESSION_MAX_S, user_agent=user_agent[:200],
        )
    )  # fmt: skip
    return sid


def session_user(conn: sa.Connection, sid: str, now: float) -> dict[str, Any]:
    """The user of a live session ("touch_due": its use should be recorded with
    `touch_session`, at most every TOUCH_EVERY_S); Unauthorized when the session is
    unknown, revoked, idle for SESSION_IDLE_S, older than SESSION_MAX_S or its user
    disabled."""
    h = hash_secret(sid)
    r = conn.execute(
        sa.select(users, user_sessions.c.last_seen_at, user_sessions.c.expires_at,
                  user_sessions.c.revoked_at.label("session_revoked_at"))
        .join(user_sessions, user_sessions.c.user_id == users.c.id)
        .where(user_sessions.c.id_hash == h)
    ).first()  # fmt: skip
    if r is None or r.session_revoked_at is not None or r.disabled_at is not None:
        raise Unauthorized("not logged in")
    if now >= r.expires_at or now - r.last_seen_at >= SESSION_IDLE_S:
        raise Unauthorized("your session has expired: log in again")
    u = view(r)
    u["session"] = h
    u["touch_due"] = now - r.last_seen_at >= TOUCH_EVERY_S
    for k in ("last_seen_at", "expires_at", "session_revoked_at"):
        u.pop(k, None)
    return u


def touch_session(conn: sa.Connection, session_hash: str, now: float) -> None:
    """Record a session's use (its idle expiry counts from here)."""
    conn.execute(
        user_sessions.update()
        .where(user_sessions.c.id_hash == session_hash)
        .values(last_seen_at=now)
    )


def end_session(conn: sa.Connection, sid: str, now: float) -> None:
    conn.execute(
        user_sessions.update()
        .where(user_sessions.c.id_hash == hash_secret(sid), user_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def list_sessions(conn: sa.Connection, user_id: str, now: float) -> list[dict[str, Any]]:
    """The user's live sessions, newest first; `id` is a prefix of the stored hash."""
    q = (
        sa.select(user_sessions)
        .where(user_sessions.c.user_id == user_id, user_sessions.c.revoked_at.is_(None))
        .where(user_sessions.c.expires_at > now)
        .where(user_sessions.c.last_seen_at > now - SESSION_IDLE_S)
        .order_by(user_sessions.c.created_at.desc())
    )
    return [
        {"id": r.id_hash[:16], "created_at": r.created_at, "last_seen_at": r.last_seen_at,
         "user_agent": r.user_agent, "hash": r.id_hash}
        for r in conn.execute(q)
    ]  # fmt: skip


def revoke_session(conn: sa.Connection, user_id: str, session_id: str, now: float) -> None:
    """End one of the user's sessions by its listed id (another user's: not found)."""
    if not re.fullmatch(r"[0-9a-f]{16}", session_id):
        raise NotFound(f"session {session_id[:40]} not found")
    res = conn.execute(
        user_sessions.update()
        .where(user_sessions.c.user_id == user_id, user_sessions.c.revoked_at.is_(None))
        .where(user_sessions.c.id_hash.startswith(session_id))
        .values(revoked_at=now)
    )
    if res.rowcount == 0:
        raise NotFound(f"session {session_id} not found")


def revoke_sessions(conn: sa.Connection, user_id: str, now: float) -> None:
    conn.execute(
        user_sessions.update()
        .where(user_sessions.c.user_id == user_id, user_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


# --------------------------------------------------------------------------- API tokens


def create_token(conn: sa.Connection, user_id: str, name: str, now: float) -> tuple[str, str]:
    """(token id, the token itself: shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = new_id()
    conn.execute(
        user_tokens.insert().values(
            id=tid, user_id=user_id, token_hash=hash_secret(token), name=name[:200], created_at=now
        )
    )
    return tid, token


def list_tokens(conn: sa.Connection, user_id: str) -> list[dict[str, Any]]:
    q = sa.select(user_tokens.c.id, user_tokens.c.name, user_tokens.c.created_at,
                  user_tokens.c.revoked_at).where(user_tokens.c.user_id == user_id)  # fmt: skip
    return [dict(r._mapping) for r in conn.execute(q.order_by(user_tokens.c.created_at))]


def revoke_token(conn: sa.Connection, user_id: str, token_id: str, now: float) -> None:
    res = conn.execute(
        user_tokens.update()
        .where(user_tokens.c.id == token_id, user_tokens.c.user_id == user_id)
        .where(user_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if res.rowcount == 0:
        raise NotFound(f"token {token_id[:40]} not found")


def token_user(conn: sa.Connection, token: str) -> dict[str, Any]:
    r = conn.execute(
        sa.select(users)
        .join(user_tokens, user_tokens.c.user_id == users.c.id)
        .where(user_tokens.c.token_hash == hash_secret(token), user_tokens.c.revoked_at.is_(None))
    ).first()
    if r is None or r.disabled_at is not None:
        raise Unauthorized("unknown or revoked API token")
    return view(r)


# --------------------------------------------------------------------------- invitations


def create_invitation(conn: sa.Connection, user_id: str, now: float) -> str:
    """A single-use link token (INVITE_TTL_S) to set the user's password; earlier unused
    ones stop working."""
    conn.execute(
        invitations.update()
        .where(invitations.c.user_id == user_id, invitations.c.used_at.is_(None))
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    conn.execute(
        invitations.insert().values(
            token_hash=hash_secret(token), user_id=user_id, created_at=now,
            expires_at=now + INVITE_TTL_S,
        )
    )  # fmt: skip
    return token


def invitation_user(conn: sa.Connection, token: str, now: float) -> dict[str, Any]:
    """The user an invitation link is for; NotFound when it is unknown, used or expired."""
    r = conn.execute(
        sa.select(users, invitations.c.used_at, invitations.c.expires_at)
        .join(invitations, invitations.c.user_id == users.c.id)
        .where(invitations.c.token_hash == hash_secret(token))
    ).first()
    if r is None or r.used_at is not None or r.disabled_at is not None:
        raise NotFound("this invitation link is not valid (already used or replaced)")
    if now >= r.expires_at:
        raise NotFound("this invitation link has expired: ask your administrator for a new one")
    u = view(r)
    u.pop("used_at", None)
    u.pop("expires_at", None)
    return u


def accept_invitation(conn: sa.Connection, token: str, password: str, now: float) -> dict[str, Any]:
    u = invitation_user(conn, token, now)
    set_password(conn, u["id"], password)
    conn.execute(
        invitations.update()
        .where(invitations.c.token_hash == hash_secret(token))
        .values(used_at=now)
    )
    return u


# --------------------------------------------------------------------------- actions


def invite(
    conn: sa.Connection, partner_id: str, actor: str, email: str, role: str, now: float,
    customer_id: str | None = None, name: str = "",
) -> tuple[dict[str, Any], str]:  # fmt: skip
    """A new user without a password and their invitation token; audited."""
    from collector import audit

    u = create_user(conn, partner_id, email, role, now, customer_id, name)
    token = create_invitation(conn, u["id"], now)
    audit.record(conn, partner_id, actor, "user.invite", now, u["email"],
                 {"role": role, "customer_id": customer_id})  # fmt: skip
    return u, token


def change(
    conn: sa.Connection, partner_id: str, actor: str, user_id: str, now: float, *,
    role: str | None = None, customer_id: str | None = None, disabled: bool | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`update_user`, audited."""
    from collector import audit

    u = update_user(conn, partner_id, user_id, now, role=role, customer_id=customer_id,
                    disabled=disabled)  # fmt: skip
    data: dict[str, Any] = {}
    if role is not None:
        data.update(role=role, customer_id=u["customer_id"])
    if disabled is not None:
        data["disabled"] = disabled
    audit.record(conn, partner_id, actor, "user.update", now, u["email"], data)
    return u
