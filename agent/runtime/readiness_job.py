"""The agent's "readiness" suite job: the readiness test run on demand from the collector.

Options are `ReadinessOptions` (JSON); `responder` and `sip_server` default to the site's
config. Every probe of the suite goes through the agent's scheduler (lock classes; a
capacity step's streams admitted as one) and spool (tagged with the job id); the job's
report carries the full readiness report under "readiness".
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent.probes import Target
from agent.readiness.capacity import START_SPREAD_S
from agent.readiness.suite import run_readiness
from agent.runtime.jobs import JobError, SuiteContext, register_suite
from agent.wire.errors import format_validation_error
from agent.wire.lite import LOAD_TEST_TAG, ProbeResult
from agent.wire.readiness import ReadinessOptions


def job_options(options: dict[str, Any], ctx: SuiteContext) -> ReadinessOptions:
    """Validate the job's options, filling responder and SIP server from the site."""
    opts = dict(options)
    if not opts.get("responder") and ctx.site.responder:
        opts["responder"] = Target.parse(ctx.site.responder).host
    if not opts.get("responder"):
        raise JobError("readiness: no responder given and the site config names none")
    if "sip_server" not in opts and ctx.site.sip_server:
        opts["sip_server"] = ctx.site.sip_server
    try:
        return ReadinessOptions.model_validate(opts)
    except ValidationError as exc:
        raise JobError(f"readiness options: {format_validation_error(exc)}") from None


@register_suite("readiness")
async def readiness_suite(options: dict[str, Any], ctx: SuiteContext) -> dict[str, Any]:
    opts = job_options(options, ctx)

    async def call_probe(name: str, target: str, probe_opts: dict[str, Any]) -> ProbeResult:
        return (await ctx.run_probe(name, [target], probe_opts))[0]

    async def call_streams(
        name: str, target: str, probe_opts: dict[str, Any], n: int
    ) -> list[ProbeResult]:
        # One capacity step: N streams admitted by the scheduler as one measurement.
        # A deliberate overload: stored by the collector, kept out of its rules and latest.
        return await ctx.run_probe(
            name, [target] * n, probe_opts, together=True, spread_s=START_SPREAD_S,
            tags={LOAD_TEST_TAG: "capacity"},
        )  # fmt: skip

    report = await run_readiness(opts, call_probe, ctx.progress, call_streams)
    return {"readiness": report.model_dump(mode="json")}
