"""Anti-forgery tokens for the support pages' forms, bound to the browser's session.

A random nonce lives in its own cookie (HttpOnly, SameSite=Strict, renewed at each login);
a form carries HMAC-SHA256(nonce, session) where the session is the login cookie's value
(empty before login). Another site can neither read the cookie nor compute the token, and
a token stops working when the session or the nonce changes. No server secret is needed,
so any replica checks a token another one wrote; a later login by user name only changes
what the session cookie holds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

NONCE_COOKIE = "qs_csrf"
FIELD = "csrf"
_CONTEXT = b"qs-csrf-v1\0"


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def token(nonce: str, session: str) -> str:
    mac = hmac.new(nonce.encode(), _CONTEXT + session.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def valid(nonce: str | None, session: str, presented: str | None) -> bool:
    """Does the form's token match this browser's nonce and session?"""
    if not nonce or not presented:
        return False
    return hmac.compare_digest(token(nonce, session).encode(), presented.encode())
