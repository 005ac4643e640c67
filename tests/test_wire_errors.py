"""The shared error wording: validation errors naming their fields, probe error categories."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent import errors
from agent.wire.errors import CATEGORY_MESSAGES, category_message, format_validation_error


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1)


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    inner: _Inner

    @field_validator("name")
    @classmethod
    def _no_x(cls, v: str) -> str:
        if v == "x":
            raise ValueError("name must not be x")
        return v


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate(data)
    return info.value


def test_every_problem_is_named_by_its_field_path() -> None:
    exc = _error({"name": "x", "inner": {"count": 0, "colour": "red"}})
    assert format_validation_error(exc) == (
        "name: Value error, name must not be x; "
        "inner.count: Input should be greater than or equal to 1; inner.colour: unknown key"
    )


def test_options_each_caller_relies_on() -> None:
    exc = _error({"name": "x", "inner": {"count": 0, "colour": "red"}})
    assert format_validation_error(exc, strip_value_error=True, unknown="unknown field") == (
        "name: name must not be x; "
        "inner.count: Input should be greater than or equal to 1; inner.colour: unknown field"
    )
    assert format_validation_error(exc, first_only=True) == "name: Value error, name must not be x"


def test_a_problem_without_a_field_path() -> None:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate("not a mapping")
    assert format_validation_error(info.value).startswith("(root): Input should be")
    assert format_validation_error(info.value, root=None).startswith("Input should be")


def test_every_probe_error_category_has_a_sentence_for_people() -> None:
    classes = [errors.ProbeError, *errors.ProbeError.__subclasses__()]
    categories = {c.category for c in classes} | {"internal"}  # "internal": the runner's
    assert categories <= set(CATEGORY_MESSAGES)
    for category, sentence in CATEGORY_MESSAGES.items():
        assert sentence[0].isupper() and sentence.endswith("."), category
    assert errors.CATEGORY_MESSAGES is CATEGORY_MESSAGES
    assert category_message("dns").startswith("A name did not resolve")
    assert category_message("no-such-category") == CATEGORY_MESSAGES["probe"]
