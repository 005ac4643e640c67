"""Partner channels' credentials encrypted at rest: Fernet tokens under the collector's
master keys (MultiFernet: the first key encrypts, every key decrypts, `rotate` re-encrypts
with the first)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from collector.config import MASTER_KEYS_ENV, ChannelsConfig, ConfigFileError


class SecretError(Exception):
    """A stored secret cannot be read with the master keys in force."""


class SecretBox:
    """Encrypts and decrypts a channel's secrets (a JSON object) with the master keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("no master key")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    @classmethod
    def from_config(cls, cfg: ChannelsConfig) -> SecretBox | None:
        """The box of the configured keys, None when none is configured; ConfigFileError
        naming the bad key's position when one is not a Fernet key."""
        keys = cfg.keys()
        if not keys:
            return None
        for i, k in enumerate(keys):
            try:
                Fernet(k.encode())
            except (ValueError, TypeError):
                raise ConfigFileError(
                    f"channels.master_keys (or {MASTER_KEYS_ENV}): key {i + 1} is not a "
                    "Fernet key (32 url-safe base64-encoded bytes; make one with "
                    "`python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`)"
                ) from None
        return cls(keys)

    def seal(self, secrets: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            data = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretError(
                "the channel's secrets were encrypted with a master key no longer configured"
            ) from None
        return dict(data)

    def rotate(self, token: str) -> str:
        """The same secrets encrypted with the first key (SecretError if none decrypts)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretError("a stored secret decrypts with none of the master keys") from None
