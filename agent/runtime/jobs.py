"""On-demand jobs: long-poll the collector, run each job at once, report how it went.

A job is the wire model `agent.wire.jobs.Job` (read as `agent.runtime.contract.Job`); one
that does not validate (an unknown schema version, a malformed spec)
is reported failed with the validation message.
A `probe` job (`{"probe", "targets", "options"}`) runs one probe against its targets.
A `suite` job (`{"suite", "options"}`) runs a function registered by name:

    @register_suite("readiness")
    async def readiness(options: dict, ctx: SuiteContext) -> dict: ...

`ctx.run_probe(...)` goes through the agent's scheduler (concurrency bound, lock classes),
spools every result tagged with the job id, and returns the results; `ctx.progress(...)`
reports progress. The dict returned becomes the job's `report`. Suite modules are listed in
SUITE_MODULES and imported on first use. Results are in the spool before a job says `done`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.errors import ConfigError, ProbeError
from agent.runtime.client import AuthError, CollectorClient, CollectorError
from agent.runtime.config import SiteConfig
from agent.runtime.contract import Job, job_status, parse_job
from agent.runtime.scheduler import Scheduler
from agent.runtime.shipper import backoff_delay
from agent.wire.lite import ProbeJobSpec, ProbeResult

log = logging.getLogger(__name__)

# suite name -> module that registers it (imported on first use).
SUITE_MODULES: dict[str, str] = {"readiness": "agent.runtime.readiness_job"}


class JobError(Exception):
    """A job cannot run as specified; the message is posted as the job's failure reason."""


@dataclass
class SuiteContext:
    job_id: str
    site: SiteConfig
    run_probe: Callable[..., Awaitable[list[ProbeResult]]]
    progress: Callable[[float, str], Awaitable[None]]


SuiteFn = Callable[[dict[str, Any], SuiteContext], Awaitable[dict[str, Any]]]
_SUITES: dict[str, SuiteFn] = {}


def register_suite(name: str) -> Callable[[SuiteFn], SuiteFn]:
    def deco(fn: SuiteFn) -> SuiteFn:
        _SUITES[name] = fn
        return fn

    return deco


def get_suite(name: str) -> SuiteFn:
    if name not in _SUITES and name in SUITE_MODULES:
        importlib.import_module(SUITE_MODULES[name])
    if name not in _SUITES:
        known = ", ".join(sorted(set(SUITE_MODULES) | set(_SUITES))) or "none installed"
        raise JobError(f"unknown suite {name!r} (known: {known})")
    return _SUITES[name]


def summarize(results: list[ProbeResult]) -> dict[str, Any]:
    return {
        "results": len(results),
        "failed": sum(1 for r in results if not r.success),
        "result_ids": [str(r.id) for r in results],
        "errors": sorted({r.error.message for r in results if r.error is not None})[:10],
    }


class JobRunner:
    def __init__(
        self,
        client: CollectorClient,
        scheduler: Scheduler,
        site: SiteConfig,
        *,
        wait_s: float = 60.0,
        on_results: Callable[[], None] = lambda: None,
        rng: random.Random | None = None,
        spool_depth: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.client = client
        self.scheduler = scheduler
        self.site = site
        self.wait_s = wait_s
        self.on_results = on_results
        self.spool_depth = spool_depth
        self.rng = rng or random.Random()
        self.done = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Long-poll until cancelled; every job received starts at once."""
        failures = 0
        try:
            while True:
                try:
                    jobs = await self.client.poll_jobs(self.wait_s, self.spool_depth())
                    failures = 0
                except CollectorError as exc:
                    failures += 1
                    if failures in (1, 5) or failures % 50 == 0:
                        log.warning("job poll failed (%d in a row): %s", failures, exc)
                    delay = (
                        300.0
                        if isinstance(exc, AuthError)
                        else backoff_delay(failures - 1, 1.0, 60.0, self.rng)
                    )
                    await asyncio.sleep(delay)
                    continue
                except Exception:  # a bug must not end the poll (nor cancel running jobs)
                    failures += 1
                    log.exception("job poll crashed (%d in a row)", failures)
                    await asyncio.sleep(backoff_delay(failures - 1, 1.0, 60.0, self.rng))
                    continue
                for job in jobs:
                    t = asyncio.create_task(self.execute(job), name=f"job:{job.get('id')}")
                    self._tasks.add(t)
                    t.add_done_callback(self._job_ended)
        finally:
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _job_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s ended with an error", task.get_name(), exc_info=task.exception())

    async def execute(self, job: dict[str, Any]) -> None:
        job_id = job.get("id")
        if not isinstance(job_id, str) or not job_id:
            log.error("job without an id ignored: %r", job)
            return
        try:
            parsed = parse_job(job, "this agent")
        except ValueError as exc:
            self.failed += 1
            log.warning("job %s is malformed: %s", job_id, exc)
            await self._status(job_id, "failed", message=f"malformed job: {exc}")
            return
        await self._status(job_id, "running", progress=0.0, message="started")
        try:
            report = await self.dispatch(parsed)
        except asyncio.CancelledError:
            await self._status(job_id, "failed", message="the agent stopped while the job ran")
            raise
        except (JobError, ProbeError) as exc:
            self.failed += 1
            await self._status(job_id, "failed", message=str(exc))
            return
        except Exception as exc:  # a bug must fail the job, not the agent
            log.exception("job %s crashed", job_id)
            self.failed += 1
            await self._status(
                job_id, "failed", message=f"internal error: {type(exc).__name__}: {exc}"
            )
            return
        self.done += 1
        self.on_results()
        await self._status(job_id, "done", progress=1.0, message="finished", report=report)

    async def dispatch(self, job: Job) -> dict[str, Any]:
        spec, job_id = job.spec, job.id
        if isinstance(spec, ProbeJobSpec):
            try:
                results = await self.scheduler.run_targets(
                    spec.probe, spec.targets, spec.options, job_id=job_id
                )
            except ConfigError as exc:
                raise JobError(f"probe job: {exc.message}") from None
            return summarize(results)
        fn = get_suite(spec.suite)
        collected: list[ProbeResult] = []

        async def run_probe(
            probe: str, targets: list[str], options: dict[str, Any] | None = None, **kw: Any
        ) -> list[ProbeResult]:
            res = await self.scheduler.run_targets(
                probe, targets, options or {}, job_id=job_id, **kw
            )
            collected.extend(res)
            self.on_results()
            return res

        async def progress(fraction: float, message: str) -> None:
            await self._status(
                job_id, "running", progress=max(0.0, min(1.0, fraction)), message=message
            )

        ctx = SuiteContext(job_id, self.site, run_probe, progress)
        report = await fn(dict(spec.options), ctx)
        return {**summarize(collected), **report}

    async def _status(
        self, job_id: str, state: str, *, progress: float | None = None,
        message: str | None = None, report: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        status = job_status(state, progress=progress, message=message, report=report)
        try:
            await self.client.job_status(job_id, status)
        except CollectorError as exc:
            log.warning("could not report job %s as %s: %s", job_id, state, exc)
