"""The stored form of measurements: every JSON value comes back exactly (floats bit for bit,
-0.0, nulls inside packed arrays, integers that stay integers, key order), the real voice
stream is several times smaller than its JSON, and damaged bytes raise CompactError only."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.compact import MIN_PACKED, CompactError, decode, encode

MIX = json.loads((Path(__file__).parents[1] / "data" / "results_default_mix.json").read_text())

floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | floats | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=60,
)
sample_lists = st.lists(
    st.none() | floats | st.integers(-(10**9), 10**9).map(lambda n: n / 1000),
    min_size=MIN_PACKED,
    max_size=200,
)


def _same(a: object, b: object) -> bool:
    return orjson.dumps(a) == orjson.dumps(b)


@settings(max_examples=300)
@given(json_values)
def test_any_json_value_round_trips(value):
    assert _same(decode(encode(value)), value)


@settings(max_examples=300)
@given(sample_lists)
def test_per_packet_arrays_round_trip_exactly(values):
    doc = {"rtt_samples_ms": values, "nested": [{"x": values}]}
    back = decode(encode(doc))
    assert _same(back, doc)
    for a, b in zip(back["rtt_samples_ms"], values, strict=True):
        assert (a is None and b is None) or math.copysign(1, a) == math.copysign(1, b)


def test_integer_lists_stay_integers_and_the_voice_stream_shrinks():
    doc = {"codes": list(range(20)), "flags": [True] * 10, "mixed": [1.5] * 9 + [2]}
    assert _same(decode(encode(doc)), doc)
    voice = next(r for r in MIX if r["probe"] == "udp")["measurement"]
    assert len(voice["rtt_samples_ms"]) == 1500
    stored = encode(voice)
    assert decode(stored) == voice
    assert len(stored) * 4 < len(orjson.dumps(voice))


@given(st.binary(max_size=300))
def test_damaged_bytes_raise_compact_error_only(data):
    for blob in (data, b"\x01" + data, b"\x01" + zlib.compress(data)):
        try:
            decode(blob)
        except CompactError:
            pass


def test_unknown_format_is_named():
    with pytest.raises(CompactError, match="format b'\\\\x07', expected 1"):
        decode(b"\x07abc")
