"""Request bodies of the HTTP API (validated; unknown fields rejected)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.wire.jobs import JOB_SCHEMA_VERSION, JobKind, JobStatus


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrollIn(_In):
    token: str = Field(min_length=1, max_length=200)
    hostname: str = Field(min_length=1, max_length=255)
    version: str = Field(default="", max_length=64)


class CustomerIn(_In):
    name: str = Field(min_length=1, max_length=200)
    notes: str = ""


class CustomerPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    notes: str | None = None


class Contact(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = ""
    role: str = ""
    phone: str = ""
    email: str = ""


class SiteFields(_In):
    address: str | None = None
    contracted_down_bps: int | None = Field(default=None, ge=0)
    contracted_up_bps: int | None = Field(default=None, ge=0)
    firewall_make: str | None = None
    firewall_model: str | None = None
    sip_server: str | None = None
    sip_domain: str | None = None
    contacts: list[Contact] | None = None
    call_info: dict[str, Any] | None = None


class SiteIn(SiteFields):
    customer_id: str
    name: str = Field(min_length=1, max_length=200)


class SitePatch(SiteFields):
    customer_id: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)


class TokenIn(_In):
    ttl_s: float | None = Field(default=None, gt=0, le=30 * 86400)


class JobIn(_In):
    """A job to queue. Its `spec` is checked against the wire model of its `kind`
    (agent.wire.jobs) when the job is created, with a message naming the bad field."""

    schema_version: int = JOB_SCHEMA_VERSION
    kind: JobKind
    spec: dict[str, Any]


class JobStatusIn(JobStatus):
    """The wire model `agent.wire.jobs.JobStatus`, as an agent posts it."""


class OverridesIn(_In):
    site_id: str | None = None
    overrides: dict[str, dict[str, Any]]


class NoteIn(_In):
    """An ack or resolve note; who did it comes from the credential, not the body."""

    message: str = ""


class CommentIn(_In):
    """A comment; who wrote it comes from the credential, not the body."""

    message: str = Field(min_length=1)
