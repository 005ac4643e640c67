"""A schemathesis run over every operation of the collector's OpenAPI schema, against a
running collector, with the credentials a caller can hold; failures are collected (not
shrunk) so one run reports every finding with a reproduction.

Deterministic: hypothesis is derandomized and the number of examples per run is fixed, so
the same tree generates the same requests (only the ids of the objects created differ).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# The long poll answers after `wait` s (at most 60): the run asks for no real waiting.
MAX_POLL_WAIT_S = 0.2


@dataclass(frozen=True)
class Run:
    """One pass over an operation: who calls, what kind of input, how many examples."""

    name: str
    key: str | None  # the bearer credential sent (None: no Authorization header)
    mode: GenerationMode
    real_ids: bool  # path/query/body ids replaced by objects that exist
    examples: int
    foreign: bool = False  # the objects belong to another partner: no 2xx may come back
    # After generation: "nul" appends U+0000 to every string (PostgreSQL text refuses it),
    # "null" sets every field of the body to null (columns that are NOT NULL).
    mutate: str | None = None


@dataclass
class Finding:
    operation: str
    run: str
    status: int | None
    title: str
    method: str
    url: str
    body: str
    why: str = ""

    def line(self) -> str:
        what = f"{self.title} | {self.run} | {self.method} {self.url} -> {self.status}"
        return f"{what} | body={self.body}" + (f" | {self.why}" if self.why else "")


@dataclass
class Tally:
    """What a run generated and found."""

    cases: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    no_invalid_input: list[str] = field(default_factory=list)

    def distinct(self) -> list[Finding]:
        """One finding per (operation, run, title, status): the first reproduction of each."""
        seen: dict[tuple[str, str, str, int | None], Finding] = {}
        for f in self.findings:
            seen.setdefault((f.operation, f.run, f.title, f.status), f)
        return list(seen.values())


def _short(value: Any, limit: int = 240) -> str:
    if value is None or type(value).__name__ == "NotSet":
        return "-"
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


def _substitute(case: Any, ids: dict[str, str]) -> None:
    """Point the generated request at objects that exist (path, query and top-level body)."""
    for name in list(case.path_parameters or {}):
        if name in ids:
            case.path_parameters[name] = ids[name]
    if case.query:
        for name in list(case.query):
            if name in ids:
                case.query[name] = ids[name]
    if isinstance(case.body, dict):
        for name in list(case.body):
            if name in ids:
                case.body[name] = ids[name]


def _with_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value + "\x00"
    if isinstance(value, list):
        return [_with_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: _with_nul(v) for k, v in value.items()}
    return value


def _mutate(case: Any, how: str) -> None:
    if how == "nul":
        for container in (case.path_parameters, case.query):
            for name in list(container or {}):
                container[name] = _with_nul(container[name])
        if isinstance(case.body, dict | list):
            case.body = _with_nul(case.body)
    elif how == "null" and isinstance(case.body, dict):
        case.body = dict.fromkeys(case.body)


def _bound_poll(case: Any) -> None:
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool):
        if not math.isfinite(wait) or wait > MAX_POLL_WAIT_S:
            case.query["wait"] = MAX_POLL_WAIT_S


def fuzz_operation(
    operation: Any, run: Run, base_url: str, ids: dict[str, str], tally: Tally
) -> None:
    """Generate `run.examples` requests for one operation, send each to the collector and
    check the answer; every failure is recorded in `tally`, nothing raises."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {run.key}"} if run.key is not None else {}
    label = f"{operation.method.upper()} {operation.path}"
    strategy = operation.as_strategy(generation_mode=run.mode)

    @settings(
        max_examples=run.examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(case: Any) -> None:
        if run.real_ids:
            _substitute(case, ids)
        if run.mutate:
            _mutate(case, run.mutate)
        if operation.path == "/api/v1/agent/jobs":
            _bound_poll(case)
        tally.cases += 1
        tally.by_operation[label] += 1
        url = f"{base_url}{case.formatted_path}"
        body = _short(case.body)

        def found(status: int | None, title: str, why: str = "") -> None:
            tally.findings.append(
                Finding(label, run.name, status, title, case.method, url, body, why)
            )

        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=60)
        except requests.RequestException as exc:
            found(None, f"no answer: {type(exc).__name__}")
            return
        tally.by_status[response.status_code] += 1
        url = response.request.url or url
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                why = " ".join(str(getattr(failure, "message", "")).split())[:300]
                found(response.status_code, getattr(failure, "title", repr(failure)), why)
        if run.foreign and 200 <= response.status_code < 300:
            if "{" in operation.path:
                found(response.status_code, "another partner's object answered 2xx")
            leaked = [name for name, value in ids.items() if value in response.text]
            if leaked:
                found(response.status_code, "another partner's ids in a 2xx answer", str(leaked))

    try:
        one()
    except Unsatisfiable:
        # No invalid input exists for an operation without parameters or body.
        assert run.mode is GenerationMode.NEGATIVE, f"{label}: {run.name}: nothing generated"
        tally.no_invalid_input.append(label)
    finally:
        session.close()


def oversized_body(
    operation: Any, key: str, base_url: str, ids: dict[str, str], limit: int, tally: Tally
) -> None:
    """One request of a method with a body whose JSON body is one byte over the route's
    limit: it must be refused with a documented 413, whatever the route."""
    label = f"{operation.method.upper()} {operation.path}"
    headers = {"Authorization": f"Bearer {key}"}
    path = operation.path

    @settings(
        max_examples=1,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(path_parameters={k: v for k, v in ids.items() if k in path}))
    def one(case: Any) -> None:
        case.body = {"padding": "x" * (limit + 1 - len('{"padding":""}'))}
        case.media_type = "application/json"
        tally.cases += 1
        tally.by_operation[label] += 1
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        tally.by_status[response.status_code] += 1
        url = response.request.url or ""

        def found(title: str) -> None:
            tally.findings.append(
                Finding(
                    label,
                    "owner key, body over the limit",
                    response.status_code,
                    title,
                    case.method,
                    url,
                    f"{limit + 1} bytes",
                )
            )

        if response.status_code != 413:
            found(f"a body of {limit + 1} bytes (limit {limit}) was not refused")
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                found(getattr(failure, "title", repr(failure)))

    one()


def throttle_check(ops: list[Any], base_url: str, key: str, tally: Tally) -> None:
    """Against a collector with its default throttles: made-up keys from one address until
    it is throttled, then a valid key on every GET operation; every answer (401, 429 and
    whatever the valid key gets) must be documented."""
    session = requests.Session()
    bad = {"Authorization": "Bearer qs_" + "1" * 40}
    customers = next(
        op for op in ops if (op.method.upper(), op.path) == ("GET", "/api/v1/customers")
    )
    statuses: list[int] = []
    for _ in range(100):
        statuses.append(
            _checked(customers, base_url, session, bad, "made-up key until throttled", tally)
        )
        if statuses[-1] == 429:
            break
    if 429 not in statuses:
        tally.findings.append(
            Finding(
                "GET /api/v1/customers",
                "made-up key until throttled",
                statuses[-1],
                "100 failed authentications from one address were not throttled",
                "GET",
                base_url + "/api/v1/customers",
                "-",
            )
        )
    good = {"Authorization": f"Bearer {key}"}
    for op in ops:
        if op.method.upper() == "GET" and "{" not in op.path:
            _checked(op, base_url, session, good, "throttled address, valid key", tally)
    session.close()


def _checked(
    op: Any, base_url: str, session: Any, headers: dict[str, str], run: str, tally: Tally
) -> int:
    """One request of `op` without parameters, its answer checked against the schema."""
    case = op.Case()
    response = case.call(base_url=base_url, session=session, headers=headers, timeout=60)
    label = f"{op.method.upper()} {op.path}"
    tally.cases += 1
    tally.by_operation[label] += 1
    tally.by_status[response.status_code] += 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        for failure in group.exceptions:
            tally.findings.append(
                Finding(
                    label,
                    run,
                    response.status_code,
                    getattr(failure, "title", ""),
                    case.method,
                    response.request.url or "",
                    "-",
                )
            )
    return int(response.status_code)


def load_schema(app: Any) -> Any:
    """The schema the app serves, taken from `app.openapi()` (whether or not /openapi.json
    is published)."""
    return schemathesis.openapi.from_dict(app.openapi())


def operations(schema: Any) -> list[Any]:
    """Every operation of the schema; deletions last (they remove what the others use)."""
    ops = [r.ok() for r in schema.get_all_operations()]
    return sorted(ops, key=lambda op: (op.method.lower() == "delete", op.path, op.method))
