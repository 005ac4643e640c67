"""On-demand jobs on the wire: a job as the collector hands it to an agent (its spec: one
probe against targets, or a named suite), and the status the agent posts back. Versioned
like results: `schema_version` says which fields mean what, and a side that does not know
the version refuses the message with the versions it knows.

`Job.parse()` and `parse_spec()` raise `ValueError` with one line naming each bad field
(`spec.targets: List should have at least 1 item ...`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.wire.errors import format_validation_error
from agent.wire.measurements import PROBE_KINDS, REPORT_KINDS

JOB_SCHEMA_VERSION = 1
SUPPORTED_JOB_SCHEMA_VERSIONS = frozenset({1})
MAX_TARGETS = 256
MAX_MESSAGE_CHARS = 4000

JobKind = Literal["probe", "suite"]
JobState = Literal["running", "done", "failed"]
TargetText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)]


def check_version(version: Any, who: str = "") -> int:
    """`version` if it is one this side knows; else ValueError naming it and the known ones."""
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or version not in SUPPORTED_JOB_SCHEMA_VERSIONS
    ):
        known = ", ".join(str(v) for v in sorted(SUPPORTED_JOB_SCHEMA_VERSIONS))
        by = f" by {who}" if who else ""
        raise ValueError(f"schema_version {version!r} is not supported{by} (known: {known})")
    return int(version)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProbeJobSpec(_Wire):
    """Run one probe against each target once; `options` are that probe's options."""

    probe: str = Field(min_length=1, max_length=64)
    targets: list[TargetText] = Field(min_length=1, max_length=MAX_TARGETS)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("probe")
    @classmethod
    def _known_probe(cls, v: str) -> str:
        if v in REPORT_KINDS:
            raise ValueError(f"{v!r} results come from phones' reports; no probe runs them")
        if v not in PROBE_KINDS:
            known = ", ".join(k for k in PROBE_KINDS if k not in REPORT_KINDS)
            raise ValueError(f"unknown probe {v!r} (known: {known})")
        return v


class SuiteJobSpec(_Wire):
    """Run the agent's suite `suite` (e.g. "readiness") with its `options`.

    `open_ticket` is the collector's: a failed run opens a ticket (the agent ignores it).
    """

    suite: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    options: dict[str, Any] = Field(default_factory=dict)
    open_ticket: bool = False


JobSpec = ProbeJobSpec | SuiteJobSpec
SPEC_MODELS: dict[str, type[ProbeJobSpec] | type[SuiteJobSpec]] = {
    "probe": ProbeJobSpec,
    "suite": SuiteJobSpec,
}


def parse_spec(kind: str, spec: Any) -> JobSpec:
    """The spec of a job of `kind`; ValueError naming each bad field (`spec.targets: ...`)."""
    model = SPEC_MODELS.get(kind)
    if model is None:
        raise ValueError(f"kind: unknown job kind {kind!r} (known: {', '.join(SPEC_MODELS)})")
    if not isinstance(spec, Mapping):
        raise ValueError(f"spec: a {kind} job's spec must be a mapping")
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        raise ValueError(
            format_validation_error(exc, strip_value_error=True, prefix="spec.")
        ) from None


class _Envelope(_Wire):
    id: str = Field(min_length=1, max_length=64)
    kind: JobKind


class Job(BaseModel):
    """A job as the collector hands it to an agent. The collector's job record carries more
    (site, state, progress, timestamps), which an agent does not need and ignores."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = JOB_SCHEMA_VERSION
    id: str = Field(min_length=1, max_length=64)
    kind: JobKind
    spec: JobSpec

    @model_validator(mode="after")
    def _spec_of_kind(self) -> Job:
        if not isinstance(self.spec, SPEC_MODELS[self.kind]):
            raise ValueError(f"spec: not the spec of a {self.kind} job")
        return self

    @classmethod
    def parse(cls, data: Any, who: str = "") -> Job:
        """Validate a job from the wire: the version first (other fields may differ in other
        versions), then the envelope, then the spec of its kind. ValueError names the field."""
        if not isinstance(data, Mapping):
            raise ValueError("a job must be a JSON object")
        version = check_version(data.get("schema_version", 1), who)
        try:
            env = _Envelope.model_validate({k: data[k] for k in ("id", "kind") if k in data})
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc, strip_value_error=True)) from None
        spec = parse_spec(env.kind, data.get("spec"))
        return cls(schema_version=version, id=env.id, kind=env.kind, spec=spec)


class JobStatus(_Wire):
    """What the agent posts while a job runs and when it ends. `report` (when done) is the
    job's outcome: a probe job's result summary, a suite's own report (the readiness suite's
    under "readiness", a `ReadinessReport`)."""

    schema_version: int = JOB_SCHEMA_VERSION
    state: JobState
    progress: float | None = Field(default=None, ge=0, le=1)
    message: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    report: dict[str, Any] | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        return check_version(v)

    @classmethod
    def of(
        cls, state: JobState, *, progress: float | None = None, message: str | None = None,
        report: dict[str, Any] | None = None,
    ) -> JobStatus:  # fmt: skip
        """A status to post; a message longer than the wire allows is cut (and says so)."""
        cut = " ... (cut short)"
        if message is not None and len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - len(cut)] + cut
        return cls(state=state, progress=progress, message=message, report=report)
