"""Random API keys and enrollment tokens, shown once and stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import uuid

PARTNER_PREFIX = "qsp_"
AGENT_PREFIX = "qsa_"
TOKEN_PREFIX = "qse_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_id() -> str:
    return str(uuid.uuid4())
