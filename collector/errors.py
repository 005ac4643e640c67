"""Errors the store raises; the API maps each to one HTTP status with its message."""

from __future__ import annotations


class CollectorError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CollectorError):
    """The object does not exist, or belongs to another partner (the same answer)."""

    status = 404


class Conflict(CollectorError):
    status = 409


class Invalid(CollectorError):
    status = 422


class Unauthorized(CollectorError):
    status = 401


class PayloadTooLarge(CollectorError):
    status = 413


class PreconditionFailed(CollectorError):
    """An `If-Match` names a version that is no longer the current one."""

    status = 412


class Forbidden(CollectorError):
    """The caller is known but its role lacks the right (collector/authz.py)."""

    status = 403
