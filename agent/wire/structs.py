"""Validation with msgspec Structs (agent/wire/lite.py, the agent's config): a failure told
as one line naming the field, in the words pydantic uses for the same problem
(`interval_s: Input should be greater than or equal to 1`, `bogus: unknown key`), so a bad
config reads the same whichever library checked it.

A Struct's `__post_init__` check raises ValueError with its own sentence (told as pydantic
tells a validator's: `Value error, ...`); a sentence that starts with `@field: ` is about
that field of the Struct, and the field joins the path."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, TypeVar

import msgspec

from agent.wire.errors import VALUE_ERROR_PREFIX

T = TypeVar("T")

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_BOUNDS = {">=": "greater than or equal to", ">": "greater than",
           "<=": "less than or equal to", "<": "less than"}  # fmt: skip
_TYPES = {"int": "a valid integer", "float": "a valid number", "bool": "a valid boolean",
          "str": "a valid string", "object": "a valid dictionary", "array": "a valid list",
          "null": "None"}  # fmt: skip
_SIZED = {"str": ("String", "character"), "array": ("List", "item"),
          "object": ("Dictionary", "item")}  # fmt: skip


class StructError(ValueError):
    """A document that does not fit its Struct; the message names each bad key."""


def _number(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else text


def _words(msg: str) -> tuple[str | None, str]:
    """(a key to add to the path, the message in pydantic's words) of a msgspec message."""
    if m := re.fullmatch(r"Object contains unknown field `(.+)`", msg):
        return m.group(1), "unknown key"
    if m := re.fullmatch(r"Object missing required field `(.+)`", msg):
        return m.group(1), "Field required"
    if m := re.fullmatch(r"Expected `(\w+)` (>=|>|<=|<) (\S+)", msg):
        return None, f"Input should be {_BOUNDS[m.group(2)]} {_number(m.group(3))}"
    if m := re.fullmatch(r"Expected `(\w+)` of length (>=|<=) (\d+)", msg):
        what, unit = _SIZED.get(m.group(1), ("Value", "item"))
        n = int(m.group(3))
        least = "at least" if m.group(2) == ">=" else "at most"
        return None, f"{what} should have {least} {n} {unit}{'' if n == 1 else 's'}"
    if m := re.fullmatch(r"Expected `str` matching regex '(.*)'", msg, re.S):
        return None, f"String should match pattern '{m.group(1)}'"
    if m := re.fullmatch(r"Expected `([^`]+)`, got `(\w+)`", msg):
        wanted = [t for t in m.group(1).split(" | ") if t != "null"] or ["null"]
        words = " or ".join(_TYPES.get(t, t) for t in wanted)
        return None, f"Input should be {words}"
    if m := re.fullmatch(r"Invalid enum value (.+)", msg):
        return None, f"Input should be one of the allowed values, not {m.group(1)}"
    if m := re.fullmatch(r"@(\w+): (.*)", msg, re.S):  # a check about one field
        return m.group(1), VALUE_ERROR_PREFIX + m.group(2)
    return None, VALUE_ERROR_PREFIX + msg  # a __post_init__ check's own sentence


def _at(data: Any, parts: list[str]) -> Any:
    """The value at `parts` in `data` (None when the path does not lead anywhere)."""
    for p in parts:
        if isinstance(data, dict):
            data = data.get(p)
        elif isinstance(data, list) and p.isdigit() and int(p) < len(data):
            data = data[int(p)]
        else:
            return None
    return data


def _choices(kind: Any, parts: list[str]) -> str | None:
    """The values a Literal field at `parts` of the type `kind` allows, as pydantic lists
    them (`'a', 'b' or 'c'`); None when the path is not a Literal."""
    t: Any = kind
    for p in [*parts, None]:
        while True:  # Annotated[X, ...] -> X; X | None -> X
            origin, args = typing.get_origin(t), typing.get_args(t)
            if origin is typing.Annotated:
                t = args[0]
            elif origin in (typing.Union, types.UnionType):
                t = next((x for x in args if x is not type(None)), None)
            else:
                break
        if p is None:
            break
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            fields = msgspec.structs.fields(t)
            t = next((f.type for f in fields if f.encode_name == p), None)
        elif origin in (list, dict):
            t = args[-1]
        else:
            return None
    if typing.get_origin(t) is not typing.Literal:
        return None
    vals = [repr(v) for v in typing.get_args(t)]
    return vals[0] if len(vals) == 1 else f"{', '.join(vals[:-1])} or {vals[-1]}"


def describe(
    exc: msgspec.ValidationError, *, prefix: str = "", root: str | None = "(root)",
    strip_value_error: bool = False, data: Any = None, kind: Any = None,
) -> str:  # fmt: skip
    """`exc` as `field.path: message` (see `format_validation_error` for the pydantic side);
    `prefix` goes before the path, a problem at the top is named by `root`. With the `data`
    that failed, a length problem also says the length found, and with its type `kind` a
    refused choice lists the values allowed, as pydantic does."""
    m = _AT.match(str(exc))
    assert m is not None
    key, msg = _words(m.group("msg"))
    if strip_value_error:
        msg = msg.removeprefix(VALUE_ERROR_PREFIX)
    raw = (m.group("path") or "").replace("[...]", "")
    parts = [p for p in re.split(r"\.|\[(\d+)\]", raw) if p]
    if msg.startswith("Input should be one of the allowed values") and kind is not None:
        allowed = _choices(kind, parts)
        msg = f"Input should be {allowed}" if allowed else msg
    found = _at(data, parts) if data is not None else None
    if msg.startswith(("List should", "Dictionary should")) and isinstance(found, list | dict):
        msg += f" after validation, not {len(found)}"
    if key is not None:
        parts.append(key)
    loc = prefix + ".".join(parts) if parts else prefix.rstrip(".")
    if loc:
        return f"{loc}: {msg}"
    return f"{root}: {msg}" if root is not None else msg


def validate(data: Any, kind: type[T], *, prefix: str = "", strict: bool = False,
             strip_value_error: bool = False) -> T:  # fmt: skip
    """`data` as a `kind` (a Struct, or a type of them); StructError names each bad key.
    Not `strict`: numbers and booleans may come as YAML's or a form's strings, as pydantic's
    lax mode takes them."""
    try:
        return msgspec.convert(data, kind, strict=strict)
    except msgspec.ValidationError as exc:
        raise StructError(
            describe(exc, prefix=prefix, strip_value_error=strip_value_error, data=data, kind=kind)
        ) from None
