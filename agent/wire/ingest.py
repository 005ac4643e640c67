"""The collector's answer to a batch of results (`POST /api/v1/results`), as the agent reads it.

`IngestAnswer.parse(body, sent)` validates the JSON answer to a batch of `sent` items with
strict types (a count is an integer, never `"lots"`; a status is one of three words) and
checks that it answers every item of the batch once; anything else raises
`IngestAnswerError` naming what is wrong. The collector writes this shape
(`collector/ingest.py`, `IngestOutcome.as_dict`); extra keys it may add later are ignored.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from agent.wire.errors import format_validation_error

ItemStatus = Literal["stored", "duplicate", "rejected"]
MAX_ERROR_CHARS = 4000  # an item's reason is kept and logged; longer ones are cut


class IngestAnswerError(ValueError):
    """The collector's answer to a batch is not JSON, not the model, or does not answer
    the batch that was sent."""


class IngestItem(BaseModel):
    """The outcome of one item: its position in the batch, its id as sent, and the reason
    when `rejected`."""

    model_config = ConfigDict(extra="ignore", strict=True)

    index: int | None = Field(default=None, ge=0)
    id: JsonValue = None
    status: ItemStatus
    error: str | None = None

    @property
    def reason(self) -> str:
        """Why the item was refused, as a line for the log and the rejected table."""
        return (self.error or "rejected (no reason given)")[:MAX_ERROR_CHARS]


class IngestAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    stored: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    rejected: int = Field(ge=0)
    items: list[IngestItem]

    @classmethod
    def parse(cls, body: bytes, sent_ids: list[str]) -> IngestAnswer:
        """The answer to a batch whose items had `sent_ids`, in order; each answered item is
        matched by `index` (or by `id` when it has none) to exactly one item sent."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise IngestAnswerError(f"answer is not JSON: {body[:80]!r}") from None
        if not isinstance(data, dict):
            raise IngestAnswerError(f"answer is not a JSON object but {type(data).__name__}")
        try:
            answer = cls.model_validate(data)
        except ValidationError as exc:
            raise IngestAnswerError(
                "answer is not an ingest outcome: " + format_validation_error(exc, root=None)
            ) from None
        answer.ids_in(sent_ids)  # raises when it does not answer this batch
        return answer

    def ids_in(self, sent_ids: list[str]) -> list[tuple[str, IngestItem]]:
        """(spooled id, outcome) of each item sent; IngestAnswerError unless every item sent
        is answered exactly once."""
        if len(self.items) != len(sent_ids):
            raise IngestAnswerError(
                f"answer lists {len(self.items)} items for a batch of {len(sent_ids)}"
            )
        position = {rid: n for n, rid in enumerate(sent_ids)}
        out: list[tuple[str, IngestItem]] = []
        seen: set[int] = set()
        for item in self.items:
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
