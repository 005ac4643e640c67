"""The agent's side of the wire contract on its running path, with the msgspec Structs of
agent/wire/lite.py (no pydantic): the collector's answer to a batch of results, the
effective config, jobs and job statuses. Each does what the pydantic model's own method
does (`IngestAnswer.parse`, `EffectiveConfig.parse`, `Job.parse`, `JobStatus.of` in
agent/wire), and tests/agent/test_contract_lite.py holds the two to the same answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from agent.wire.lite import (
    JOB_SCHEMA_VERSION,
    PROFILE_SCHEMA_VERSION,
    SUPPORTED_JOB_SCHEMA_VERSIONS,
    EffectiveConfig,
    IngestAnswer,
    IngestItem,
    JobStatus,
    ModuleConfig,
    ProbeJobSpec,
    SuiteJobSpec,
)
from agent.wire.structs import StructError, validate

MAX_ERROR_CHARS = 4000  # an item's reason is kept and logged; longer ones are cut
MAX_MESSAGE_CHARS = 4000


class IngestAnswerError(ValueError):
    """The collector's answer to a batch is not JSON, not the model, or does not answer
    the batch that was sent."""


class ProfileError(ValueError):
    """The effective config is invalid; the message names the key."""


def reason(item: IngestItem) -> str:
    """Why the item was refused, as a line for the log and the rejected table."""
    return (item.error or "rejected (no reason given)")[:MAX_ERROR_CHARS]


def parse_ingest_answer(body: bytes, sent_ids: list[str]) -> IngestAnswer:
    """The answer to a batch whose items had `sent_ids` (see `wire.ingest.IngestAnswer`)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IngestAnswerError(f"answer is not JSON: {body[:80]!r}") from None
    if not isinstance(data, dict):
        raise IngestAnswerError(f"answer is not a JSON object but {type(data).__name__}")
    try:
        answer = validate(data, IngestAnswer, strict=True)
    except StructError as exc:
        raise IngestAnswerError(f"answer is not an ingest outcome: {exc}") from None
    ids_in(answer, sent_ids)  # raises when it does not answer this batch
    return answer


def ids_in(answer: IngestAnswer, sent_ids: list[str]) -> list[tuple[str, IngestItem]]:
    """(spooled id, outcome) of each item sent; IngestAnswerError unless every item sent is
    answered exactly once."""
    if len(answer.items) != len(sent_ids):
        raise IngestAnswerError(
            f"answer lists {len(answer.items)} items for a batch of {len(sent_ids)}"
        )
    position = {rid: n for n, rid in enumerate(sent_ids)}
    out: list[tuple[str, IngestItem]] = []
    seen: set[int] = set()
    for item in answer.items:
        n = item.index if item.index is not None else position.get(str(item.id))
        if n is None or n >= len(sent_ids):
            raise IngestAnswerError(f"answer names an item that was not sent: {item.id!r}")
        if isinstance(item.id, str) and item.id != sent_ids[n]:
            raise IngestAnswerError(f"answer gives item {n} of the batch the id {item.id!r}")
        if n in seen:
            raise IngestAnswerError(f"answer names item {n} of the batch twice")
        seen.add(n)
        out.append((sent_ids[n], item))
    return out


def parse_modules(data: Any, prefix: str = "modules.") -> dict[str, ModuleConfig]:
    """A `modules:` mapping as ModuleConfigs, each checked on its own so that a problem is
    named by the module (`modules.ping.interval_s: ...`); StructError otherwise."""
    if not isinstance(data, Mapping):
        raise StructError(f"{prefix.rstrip('.')}: Input should be a valid dictionary")
    out: dict[str, ModuleConfig] = {}
    for name, mod in data.items():
        if not isinstance(name, str):
            raise StructError(f"{prefix}{name}: Input should be a valid string")
        out[name] = validate(mod, ModuleConfig, prefix=f"{prefix}{name}.")
    return out


def parse_effective_config(data: Any) -> EffectiveConfig:
    """Validate `GET /api/v1/agent/config`'s answer; ProfileError names the bad key or the
    unknown version."""
    if isinstance(data, dict) and data.get("schema_version") != PROFILE_SCHEMA_VERSION:
        raise ProfileError(
            f"schema_version: {data.get('schema_version')!r} is not a config version this "
            f"agent knows ({PROFILE_SCHEMA_VERSION})"
        )
    try:
        if isinstance(data, dict) and "modules" in data:
            modules = parse_modules(data["modules"])
            cfg = validate({**data, "modules": {}}, EffectiveConfig)
            if len(modules) > 64:
                raise StructError("modules: Dictionary should have at most 64 items")
            cfg.modules = modules
            return cfg
        return validate(data, EffectiveConfig)
    except StructError as exc:
        raise ProfileError(str(exc)) from None


@dataclass
class Job:
    """A job as the collector hands it to an agent (see `wire.jobs.Job`)."""

    schema_version: int
    id: str
    kind: str
    spec: ProbeJobSpec | SuiteJobSpec


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


SPECS: dict[str, type[ProbeJobSpec] | type[SuiteJobSpec]] = {
    "probe": ProbeJobSpec,
    "suite": SuiteJobSpec,
}


def parse_job(data: Any, who: str = "") -> Job:
    """Validate a job from the wire: the version first, then the envelope, then the spec of
    its kind. ValueError names the field (`spec.targets: ...`)."""
    if not isinstance(data, Mapping):
        raise ValueError("a job must be a JSON object")
    version = check_version(data.get("schema_version", 1), who)
    job_id, kind = data.get("id"), data.get("kind")
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= 64:
        raise ValueError("id: String should have 1 to 64 characters")
    model = SPECS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ValueError(f"kind: Input should be 'probe' or 'suite', not {kind!r}")
    spec = data.get("spec")
    if not isinstance(spec, Mapping):
        raise ValueError(f"spec: a {kind} job's spec must be a mapping")
    try:
        parsed = validate(spec, model, prefix="spec.", strip_value_error=True)
    except StructError as exc:
        raise ValueError(str(exc)) from None
    return Job(schema_version=version, id=job_id, kind=str(kind), spec=parsed)


def job_status(
    state: str, *, progress: float | None = None, message: str | None = None,
    report: dict[str, Any] | None = None,
) -> JobStatus:  # fmt: skip
    """A status to post; a message longer than the wire allows is cut (and says so)."""
    cut = " ... (cut short)"
    if message is not None and len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - len(cut)] + cut
    return JobStatus(
        schema_version=JOB_SCHEMA_VERSION,
        state=state,  # type: ignore[arg-type]
        progress=progress,
        message=message,
        report=report,
    )


def to_json(model: msgspec.Struct, *, exclude_none: bool = False) -> bytes:
    """A Struct as the JSON body to send (without its None fields when `exclude_none`)."""
    data = msgspec.to_builtins(model)
    if exclude_none:
        data = {k: v for k, v in data.items() if v is not None}
    return msgspec.json.encode(data)
