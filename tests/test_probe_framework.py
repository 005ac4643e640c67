"""The probe runner owns deadline, timing, success and the error reason; targets parse strictly."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, ConfigDict

from agent.errors import ConfigError, ResolveError
from agent.probes import ProbeContext, Target, get_probe, register, run_many, run_probe


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep_s: float = 0.0
    fail: str = ""


class _M(BaseModel):
    value_ms: float


@register("tf_sleep", _Opts, timeout_s=0.3, measurement=_M)
async def _sleepy(target: Target, opts: _Opts, ctx: ProbeContext) -> _M:
    await asyncio.sleep(opts.sleep_s)
    if opts.fail == "resolve":
        raise ResolveError(f"host name {target.host!r} does not resolve")
    if opts.fail == "bug":
        raise KeyError("oops")
    return _M(value_ms=opts.sleep_s * 1000)


class _Ratio(BaseModel):
    ratio: float
    ok: float


@register("tf_inf", _Opts, measurement=_Ratio)
async def _infinite(target: Target, opts: _Opts, ctx: ProbeContext) -> _Ratio:
    return _Ratio(ratio=float("inf"), ok=2.5)


async def test_figure_that_could_not_be_computed_ships_as_null() -> None:
    """JSON has no infinity: the runner writes null for it (as pydantic's JSON does)."""
    r = await run_probe("tf_inf", "h")
    assert r.success and r.measurement == {"ratio": None, "ok": 2.5}


async def test_success_is_timed() -> None:
    r = await run_probe("tf_sleep", "h", {"sleep_s": 0.05})
    assert r.success and r.error is None
    assert r.measurement == {"value_ms": 50.0}
    assert 45 <= r.duration_ms < 1000


async def test_deadline_is_enforced_by_the_runner() -> None:
    r = await run_probe("tf_sleep", "h:80", {"sleep_s": 5})
    assert not r.success
    assert r.error is not None and r.error.category == "timeout"
    assert r.error.message == "tf_sleep to h:80 did not finish within 0.3 s"
    assert r.duration_ms < 1000


async def test_probe_error_becomes_a_readable_failure() -> None:
    r = await run_probe("tf_sleep", "nowhere", {"fail": "resolve"})
    assert r.error is not None
    assert (r.error.error_class, r.error.category) == ("ResolveError", "dns")
    assert r.error.message == "host name 'nowhere' does not resolve"


async def test_a_bug_in_a_probe_is_caught_and_named() -> None:
    r = await run_probe("tf_sleep", "h", {"fail": "bug"})
    assert not r.success
    assert r.error is not None and r.error.category == "internal"
    assert r.error.message == "KeyError: 'oops'"


async def test_bad_options_and_unknown_probe_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="tf_sleep options: bogus: unknown key"):
        await run_probe("tf_sleep", "h", {"bogus": 1})
    with pytest.raises(ConfigError, match="unknown probe 'nope'"):
        get_probe("nope")


async def test_codec_options_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"ptime_ms: .*30 ms cannot carry one Opus frame"):
        await run_probe("sip_call", "127.0.0.1:5", {"codecs": ["OPUS"], "ptime_ms": 30})
    with pytest.raises(ConfigError, match=r"codecs\.0: .*'PCMU', 'PCMA', 'G722' or 'OPUS'"):
        await run_probe("sip_call", "127.0.0.1:5", {"codecs": ["ILBC"]})
    with pytest.raises(ConfigError, match=r"codec: .*unknown codec 'ILBC' \(known: .*G722.*OPUS"):
        await run_probe("udp", "127.0.0.1:5", {"codec": "ILBC"})


async def test_run_many_bounds_concurrency() -> None:
    t0 = asyncio.get_running_loop().time()
    res = await run_many("tf_sleep", ["a", "b", "c", "d"], {"sleep_s": 0.1}, concurrency=2)
    elapsed = asyncio.get_running_loop().time() - t0
    assert [r.target for r in res] == ["a", "b", "c", "d"]
    assert 0.19 <= elapsed < 0.6


@pytest.mark.parametrize(
    ("text", "host", "port", "uri"),
    [
        ("example.com", "example.com", None, None),
        ("192.0.2.1:862", "192.0.2.1", 862, None),
        ("[2001:db8::1]:5060", "2001:db8::1", 5060, None),
        ("2001:db8::1", "2001:db8::1", None, None),
        (
            "sip:alice@pbx.example.com:5080;transport=tcp",
            "pbx.example.com",
            None,
            "sip:alice@pbx.example.com:5080;transport=tcp",
        ),
        ("sips:[2001:db8::2]", "2001:db8::2", None, "sips:[2001:db8::2]"),
    ],
)
def test_target_parse(text: str, host: str, port: int | None, uri: str | None) -> None:
    t = Target.parse(text)
    assert (t.host, t.port, t.uri) == (host, port, uri)
    assert str(t) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "target is empty"),
        ("host:99999", "port '99999' is not a number from 1 to 65535"),
        ("host:http", "port 'http' is not a number"),
        ("[::1", "missing ']'"),
        (":80", "host is empty"),
    ],
)
def test_target_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        Target.parse(text)
