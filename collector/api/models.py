"""Request bodies of the HTTP API (validated; unknown fields rejected; every text, list and
mapping bounded, so a 422 names the field that is too long and the OpenAPI schema shows the
bound)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.wire.jobs import JOB_SCHEMA_VERSION, JobKind, JobStatus


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def json_bytes_at_most(limit: int) -> AfterValidator:
    """A mapping whose JSON form is at most `limit` bytes (the message says how large)."""

    def check(value: Any) -> Any:
        try:
            size = len(orjson.dumps(value))
        except (TypeError, orjson.JSONEncodeError):
            raise ValueError("must be plain JSON (finite numbers, 64-bit integers)") from None
        if size > limit:
            raise ValueError(f"is {size} bytes as JSON, the limit is {limit}")
        return value

    return AfterValidator(check)


Id = Annotated[str, Field(min_length=1, max_length=64)]
NOTES_CHARS = 10_000
MESSAGE_CHARS = 10_000
ShortText = Annotated[str, Field(max_length=200)]
CALL_INFO_VALUE_CHARS = 4000


def _call_info_values(value: dict[str, Any]) -> dict[str, Any]:
    for k, v in value.items():
        if not isinstance(v, str | int | float | bool | None):
            raise ValueError(f"{k!r}: a value is a text, a number, true/false or null")
        if isinstance(v, str) and len(v) > CALL_INFO_VALUE_CHARS:
            raise ValueError(f"{k!r}: {len(v)} characters, the limit is {CALL_INFO_VALUE_CHARS}")
    return value


CallInfoDict = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=64)], Any],
    Field(
        max_length=32,
        description="at most 32 keys of 64 characters, each value a text of at most "
        f"{CALL_INFO_VALUE_CHARS} characters, a number, true/false or null; 16 KiB as JSON",
    ),
    AfterValidator(_call_info_values),
    json_bytes_at_most(16 * 1024),
]


class EnrollIn(_In):
    token: str = Field(min_length=1, max_length=200)
    hostname: str = Field(min_length=1, max_length=255)
    version: str = Field(default="", max_length=64)


class CustomerIn(_In):
    name: str = Field(min_length=1, max_length=200)
    notes: str = Field(default="", max_length=NOTES_CHARS)


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be left out, not null (the column has no empty value)")
    return value


class CustomerPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    notes: str | None = Field(default=None, max_length=NOTES_CHARS)

    _present = field_validator("name", "notes")(_not_null)


class Contact(BaseModel):
    """A person to call about the site. Fields beyond these four are kept (at most 8, each
    a key of 64 and a text of 500 characters)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(default="", max_length=200)
    role: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=64)
    email: str = Field(default="", max_length=254)

    @model_validator(mode="after")
    def _bounded_extra(self) -> Contact:
        extra = self.model_extra or {}
        if len(extra) > 8:
            raise ValueError(f"{len(extra)} extra fields, the limit is 8")
        for k, v in extra.items():
            if len(k) > 64 or not isinstance(v, str | int | float | bool | None):
                raise ValueError(f"extra field {k[:64]!r}: a key of 64 characters, plain value")
            if isinstance(v, str) and len(v) > 500:
                raise ValueError(f"extra field {k!r}: at most 500 characters")
        return self


class SiteFields(_In):
    address: str | None = Field(default=None, max_length=500)
    contracted_down_bps: int | None = Field(default=None, ge=0, le=10**12)
    contracted_up_bps: int | None = Field(default=None, ge=0, le=10**12)
    firewall_make: ShortText | None = None
    firewall_model: ShortText | None = None
    sip_server: str | None = Field(default=None, max_length=255)
    sip_domain: str | None = Field(default=None, max_length=255)
    contacts: list[Contact] | None = Field(default=None, max_length=20)
    call_info: CallInfoDict | None = None


class SiteIn(SiteFields):
    customer_id: Id
    name: str = Field(min_length=1, max_length=200)


class SitePatch(SiteFields):
    """Fields sent are changed; a field left out is kept. Only the contracted speeds may be
    cleared with null."""

    customer_id: Id | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)

    _present = field_validator(
        "customer_id", "name", "address", "firewall_make", "firewall_model", "sip_server",
        "sip_domain", "contacts", "call_info",
    )(_not_null)  # fmt: skip


class TokenIn(_In):
    ttl_s: float | None = Field(default=None, gt=0, le=30 * 86400)


class JobIn(_In):
    """A job to queue. Its `spec` is checked against the wire model of its `kind`
    (agent.wire.jobs) when the job is created, with a message naming the bad field."""

    schema_version: int = JOB_SCHEMA_VERSION
    kind: JobKind
    spec: Annotated[
        dict[str, Any],
        Field(description="at most 32 KiB as JSON"),
        json_bytes_at_most(32 * 1024),
    ]


class JobStatusIn(JobStatus):
    """The wire model `agent.wire.jobs.JobStatus`, as an agent posts it."""


class OverridesIn(_In):
    site_id: Id | None = None
    overrides: Annotated[
        dict[
            Annotated[str, Field(min_length=1, max_length=64)],
            Annotated[dict[str, Any], Field(max_length=32)],
        ],
        Field(max_length=256, description="at most 256 rules; 32 KiB as JSON"),
        json_bytes_at_most(32 * 1024),
    ]


class ProfileIn(_In):
    """A probe profile layer (agent.wire.profiles.Profile); each module is checked against
    the agent's model when the profile is stored, with a message naming the key."""

    modules: Annotated[
        dict[
            Annotated[str, Field(min_length=1, max_length=64)],
            Annotated[dict[str, Any], Field(max_length=16)],
        ],
        Field(max_length=64, description="at most 64 modules; 64 KiB as JSON"),
        json_bytes_at_most(64 * 1024),
    ] = Field(default_factory=dict)


class NoteIn(_In):
    """An ack or resolve note; who did it comes from the credential, not the body."""

    message: str = Field(default="", max_length=MESSAGE_CHARS)


class CommentIn(_In):
    """A comment; who wrote it comes from the credential, not the body."""

    message: str = Field(min_length=1, max_length=MESSAGE_CHARS)
