"""The agent's msgspec side of jobs, effective configs and ingest answers
(agent/runtime/contract.py) against the pydantic models' own methods: the same documents are
taken with the same content, and refused naming the same key."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from agent.runtime import contract
from agent.wire.ingest import IngestAnswer, IngestAnswerError
from agent.wire.jobs import Job, JobStatus
from agent.wire.profiles import EffectiveConfig, ProfileError

JOBS: list[Any] = [
    {"id": "j1", "kind": "probe", "spec": {"probe": "icmp", "targets": [" 192.0.2.1 "]}},
    {"id": "j2", "kind": "suite", "spec": {"suite": "readiness", "options": {"a": 1}},
     "state": "queued", "site": "s"},  # the collector's extra keys are ignored
    {"id": "j3", "kind": "probe", "spec": {"probe": "warp", "targets": ["a"]}},
    {"id": "j4", "kind": "probe", "spec": {"probe": "icmp", "targets": []}},
    {"id": "j5", "kind": "probe", "spec": {"probe": "icmp", "targets": ["a"], "x": 1}},
    {"id": "j6", "kind": "probe", "spec": {"probe": "call_report", "targets": ["a"]}},
    {"id": "j7", "kind": "suite", "spec": {"suite": "Readiness!"}},
    {"id": "j8", "kind": "probe", "spec": "icmp"},
    {"id": "j9", "kind": "probe", "schema_version": 9, "spec": {}},
    [1, 2],
]  # fmt: skip


def _key(message: str) -> str:
    """The field a message names (what precedes the first colon)."""
    return message.split(":")[0]


@pytest.mark.parametrize("doc", JOBS)
def test_jobs_are_read_and_refused_alike(doc: Any) -> None:
    try:
        want = Job.parse(doc, "this agent")
    except ValueError as exc:
        with pytest.raises(ValueError) as got:
            contract.parse_job(doc, "this agent")
        assert _key(str(got.value)) == _key(str(exc)), (str(got.value), str(exc))
        return
    job = contract.parse_job(doc, "this agent")
    assert (job.id, job.kind) == (want.id, want.kind)
    assert msgspec.to_builtins(job.spec) == want.spec.model_dump()


def test_a_status_is_cut_and_encoded_as_the_collector_reads_it() -> None:
    long = "x" * 5000
    mine = json.loads(contract.to_json(contract.job_status("done", message=long, progress=1.0),
                                       exclude_none=True))  # fmt: skip
    theirs = json.loads(JobStatus.of("done", message=long, progress=1.0)
                        .model_dump_json(exclude_none=True))  # fmt: skip
    assert mine == theirs and len(mine["message"]) == 4000
    JobStatus.model_validate(mine)


CONFIGS: list[Any] = [
    {"schema_version": 1, "version": "v1", "central": True, "layers": ["partner"],
     "modules": {"ping": {"probe": "icmp", "targets": ["$gateway"], "interval_s": 60}}},
    {"schema_version": 1, "version": "v2", "central": False},
    {"schema_version": 2, "version": "v", "central": True},
    {"schema_version": 1, "version": "v", "central": True,
     "modules": {"ping_b": {"probe": "icmp", "targets": ["a"], "interval_s": 0.5}}},
    {"schema_version": 1, "version": "v", "central": True,
     "modules": {"m": {"probe": "icmp", "targets": ["a"], "interval_s": 60, "on_loss": {}}}},
    {"schema_version": 1, "version": "", "central": True},
    {"schema_version": 1, "version": "v", "central": True, "extra": 1},
]  # fmt: skip


@pytest.mark.parametrize("doc", CONFIGS)
def test_effective_configs_are_read_and_refused_alike(doc: Any) -> None:
    try:
        want = EffectiveConfig.parse(doc)
    except ProfileError as exc:
        with pytest.raises(contract.ProfileError) as got:
            contract.parse_effective_config(doc)
        assert _key(str(got.value)) == _key(str(exc)), (str(got.value), str(exc))
        return
    got_cfg = contract.parse_effective_config(doc)
    assert msgspec.to_builtins(got_cfg) == want.model_dump(mode="json")


GOOD = {"stored": 1, "duplicates": 0, "rejected": 1, "items": [
    {"index": 0, "id": "a", "status": "stored"},
    {"index": 1, "id": "b", "status": "rejected", "error": "no"},
]}  # fmt: skip
ANSWERS: list[bytes] = [
    json.dumps(GOOD).encode(),
    json.dumps({**GOOD, "later": "ignored"}).encode(),
    json.dumps({**GOOD, "stored": "lots"}).encode(),
    json.dumps({**GOOD, "stored": True}).encode(),
    json.dumps({**GOOD, "rejected": -1}).encode(),
    json.dumps({**GOOD, "items": GOOD["items"][:1]}).encode(),  # type: ignore[index]
    json.dumps({**GOOD, "items": [GOOD["items"][0]] * 2}).encode(),  # type: ignore[index]
    json.dumps({**GOOD, "items": [{"index": 0, "status": "kept"}]}).encode(),
    b"[]",
    b"not json",
]


@pytest.mark.parametrize("body", ANSWERS)
def test_ingest_answers_are_read_and_refused_alike(body: bytes) -> None:
    sent = ["a", "b"]
    try:
        want = IngestAnswer.parse(body, sent)
    except IngestAnswerError as exc:
        with pytest.raises(contract.IngestAnswerError) as got:
            contract.parse_ingest_answer(body, sent)
        first = str(exc).split(";")[0]  # msgspec names the first problem only
        assert str(got.value) == first, (str(got.value), str(exc))
        return
    answer = contract.parse_ingest_answer(body, sent)
    mine = [(rid, contract.reason(i) if i.status == "rejected" else i.status)
            for rid, i in contract.ids_in(answer, sent)]  # fmt: skip
    theirs = [(rid, i.reason if i.status == "rejected" else i.status)
              for rid, i in want.ids_in(sent)]  # fmt: skip
    assert mine == theirs
