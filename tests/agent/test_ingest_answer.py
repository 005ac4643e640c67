"""The ingest answer as the agent reads it (agent/wire/ingest.py): the collector's own
answer parses; every other shape is refused with a message naming what is wrong; no byte
sequence raises anything but IngestAnswerError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.wire.ingest import IngestAnswer, IngestAnswerError

SENT = ["a", "b"]


def body(items: list[dict[str, object]], **counts: object) -> bytes:
    doc = {"stored": 1, "duplicates": 0, "rejected": 1, **counts, "items": items}
    return json.dumps(doc).encode()


GOOD = [
    {"index": 0, "id": "a", "status": "stored", "error": None},
    {"index": 1, "id": "b", "status": "rejected", "error": "schema_version 9 is not supported"},
]


def test_the_collectors_answer_parses_and_matches_the_batch() -> None:
    answer = IngestAnswer.parse(body(GOOD, extra="ignored"), SENT)
    pairs = [(rid, i.status, i.reason) for rid, i in answer.ids_in(SENT)]
    assert pairs == [
        ("a", "stored", "rejected (no reason given)"),
        ("b", "rejected", "schema_version 9 is not supported"),
    ]
    # without indexes, items are matched by id; a non-string id (as sent) is allowed
    by_id = [{"id": "b", "status": "duplicate"}, {"id": "a", "status": "stored"}]
    assert [r for r, _ in IngestAnswer.parse(body(by_id), SENT).ids_in(SENT)] == ["b", "a"]
    odd = [{"index": 0, "id": 5, "status": "rejected", "error": "id: not a UUID"}]
    assert IngestAnswer.parse(body(odd), ["5"]).items[0].id == 5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>bad gateway</html>", "answer is not JSON: b'<html>bad gateway</html>'"),
        (b'{"stored": "lots"}', "answer is not an ingest outcome: stored: Input should be a "
         "valid integer; duplicates: Field required; rejected: Field required; items: Field "
         "required"),
        (body(GOOD, stored=True), "answer is not an ingest outcome: stored: Input should be a "
         "valid integer"),
        (body(GOOD, rejected=-1), "answer is not an ingest outcome: rejected: Input should be "
         "greater than or equal to 0"),
        (b"[1, 2]", "answer is not a JSON object but list"),
        (body([{**GOOD[0], "status": "maybe"}, GOOD[1]]), "answer is not an ingest outcome: "
         "items.0.status: Input should be 'stored', 'duplicate' or 'rejected'"),
        (body(GOOD[:1]), "answer lists 1 items for a batch of 2"),
        (body([GOOD[0], {"id": "a", "status": "stored"}]),
         "answer names item 0 of the batch twice"),
        (body([GOOD[0], {**GOOD[1], "index": 7}]), "answer names an item that was not sent: 'b'"),
        (body([GOOD[0], {"id": "zz", "status": "stored"}]),
         "answer names an item that was not sent: 'zz'"),
        (body([GOOD[0], {**GOOD[1], "id": "a"}]), "answer gives item 1 of the batch the id 'a'"),
        (b"[" * 50_000 + b"]" * 50_000, f"answer is not JSON: {b'[' * 80!r}"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_the_model_is_refused_naming_why(raw: bytes, message: str) -> None:
    with pytest.raises(IngestAnswerError) as exc:
        IngestAnswer.parse(raw, SENT)
    assert str(exc.value) == message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_parse_or_raise_only_the_answer_error(raw: bytes) -> None:
    try:
        IngestAnswer.parse(raw, SENT)
    except IngestAnswerError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "stored": json_values, "duplicates": json_values, "rejected": json_values,
            "items": st.lists(
                st.fixed_dictionaries({}, optional={
                    "index": json_values | st.integers(-2, 3),
                    "id": json_values | st.sampled_from(SENT),
                    "status": json_values | st.sampled_from(["stored", "duplicate", "rejected"]),
                    "error": json_values,
                }),
                max_size=4,
            ),
        },
    )
)  # fmt: skip
def test_any_json_shape_parses_or_raises_only_the_answer_error(doc: dict[str, object]) -> None:
    try:
        answer = IngestAnswer.parse(json.dumps(doc).encode(), SENT)
    except IngestAnswerError:
        return
    assert sorted(rid for rid, _ in answer.ids_in(SENT)) == SENT  # parsed: answers the batch
