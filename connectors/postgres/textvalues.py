"""PostgreSQL's text forms: array_out, record_out, range_out, multirange_out, jsonb_out and
bytea's escape output.

Parsers take what the server prints (and what the matching *_in functions accept of it) and
return None for anything malformed, never raising; formatters write what the *_in functions
read back. Scalars inside stay text: values.py masks them by their own types.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Union

__all__ = [
    "ArrayItems",
    "JsonNumber",
    "JsonObject",
    "dump_json",
    "escape_bytea",
    "format_array",
    "format_record",
    "load_json",
    "parse_array_text",
    "parse_multirange_text",
    "parse_range_text",
    "parse_record_text",
    "unescape_bytea",
]

#: One level of an array literal: elements (None = NULL) or sub-arrays.
ArrayItems = list[Union[str, None, "ArrayItems"]]

MAX_ARRAY_DIMS = 6  # PostgreSQL's MAXDIM
_ARRAY_SPACE = " \t\n\r\v\f"  # array_isspace(): ASCII whitespace only
_DIMS = re.compile(r"(?:\[[+-]?[0-9]{1,10}(?::[+-]?[0-9]{1,10})?\]){1,6}[ \t\n\r\v\f]*=")
# Inside double quotes of an array element, a backslash escapes the next character.
_ARRAY_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*+)"', re.DOTALL)
_BACKSLASHED = re.compile(r"\\(.)", re.DOTALL)
# Records and ranges also take a doubled quote inside quotes for one quote.
_RECORD_QUOTED = re.compile(r'"((?:[^"\\]|\\.|"")*+)"', re.DOTALL)
_RECORD_UNESCAPE = re.compile(r'\\(.)|""', re.DOTALL)
_RECORD_NEEDS_QUOTE = re.compile(r'[",\\()\s]|^$')


@lru_cache(maxsize=8)
def _array_run(delim: str) -> re.Pattern[str]:
    return re.compile(r'[^"\\{}' + re.escape(delim) + r"]+")


@lru_cache(maxsize=8)
def _array_needs_quote(delim: str) -> re.Pattern[str]:
    return re.compile(r'[{}"\\ \t\n\r\v\f' + re.escape(delim) + r"]|^$|^[Nn][Uu][Ll][Ll]$")


def _record_unescape(content: str) -> str:
    return _RECORD_UNESCAPE.sub(lambda m: m.group(1) if m.group(1) is not None else '"', content)


# --- arrays ------------------------------------------------------------------------------------


def parse_array_text(text: str, delim: str = ",") -> tuple[str, ArrayItems] | None:
    """Split an array literal into its dimension prefix (``[0:1]=`` or "") and nested items."""
    pos = 0
    prefix = ""
    if text.startswith("["):
        dims = _DIMS.match(text)
        if dims is None:
            return None
        prefix = dims.group()
        pos = dims.end()
    parsed = _array_level(text, pos, delim, 1)
    if parsed is None:
        return None
    items, pos = parsed
    if text[pos:].strip(_ARRAY_SPACE):
        return None
    return prefix, items


def _skip_space(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in _ARRAY_SPACE:
        pos += 1
    return pos


def _array_level(text: str, pos: int, delim: str, depth: int) -> tuple[ArrayItems, int] | None:
    pos = _skip_space(text, pos)
    if pos >= len(text) or text[pos] != "{":
        return None
    pos = _skip_space(text, pos + 1)
    items: ArrayItems = []
    if pos < len(text) and text[pos] == "}":
        return items, pos + 1
    run = _array_run(delim)
    n = len(text)
    while True:
        pos = _skip_space(text, pos)
        if pos >= n:
            return None
        if text[pos] == "{":
            if depth >= MAX_ARRAY_DIMS:
                return None
            sub = _array_level(text, pos, delim, depth + 1)
            if sub is None:
                return None
            items.append(sub[0])
            pos = sub[1]
        else:
            element = _array_element(text, pos, delim, run)
            if element is None:
                return None
            value, pos = element
            items.append(value)
        pos = _skip_space(text, pos)
        if pos >= n:
            return None
        if text[pos] == delim:
            pos += 1
        elif text[pos] == "}":
            return items, pos + 1
        else:
            return None


def _array_element(
    text: str, pos: int, delim: str, run: re.Pattern[str]
) -> tuple[str | None, int] | None:
    parts: list[str] = []
    quoted = False
    trailing = 0  # unquoted whitespace at the end, which array_in drops
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == '"':
            match = _ARRAY_QUOTED.match(text, pos)
            if match is None:
                return None
            parts.append(_BACKSLASHED.sub(r"\1", match.group(1)))
            quoted = True
            trailing = 0
            pos = match.end()
        elif ch == "\\":
            if pos + 1 >= n:
                return None
            parts.append(text[pos + 1])
            quoted = True
            trailing = 0
            pos += 2
        elif ch == delim or ch == "}":
            break
        elif ch == "{":
            return None
        else:
            match = run.match(text, pos)
            if match is None:  # pragma: no cover - the run class excludes only handled chars
                return None
            chunk = match.group()
            parts.append(chunk)
            trailing = len(chunk) - len(chunk.rstrip(_ARRAY_SPACE))
            pos = match.end()
    value = "".join(parts)
    if trailing:
        value = value[:-trailing]
    if not quoted:
        if not value:
            return None  # array_in rejects an empty unquoted element
        if value.upper() == "NULL":
            return None, pos
    return value, pos


def format_array(items: ArrayItems, delim: str = ",") -> str:
    """The literal array_out prints for ``items`` (without a dimension prefix)."""
    needs_quote = _array_needs_quote(delim)
    parts: list[str] = []
    _format_level(items, delim, needs_quote, parts)
    return "".join(parts)


def _format_level(
    items: ArrayItems, delim: str, needs_quote: re.Pattern[str], parts: list[str]
) -> None:
    parts.append("{")
    for i, item in enumerate(items):
        if i:
            parts.append(delim)
        if isinstance(item, list):
            _format_level(item, delim, needs_quote, parts)
        elif item is None:
            parts.append("NULL")
        elif needs_quote.search(item):
            parts.append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(item)
    parts.append("}")


# --- records -------------------------------------------------------------------------------------


def _quoted_field(text: str, pos: int, stops: str) -> tuple[str | None, int] | None:
    """One record field or range bound starting at ``pos``, up to a character in ``stops``
    outside quotes. Nothing at all is NULL (or an infinite bound)."""
    parts: list[str] = []
    seen = False
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch in stops:
            break
        seen = True
        if ch == '"':
            match = _RECORD_QUOTED.match(text, pos)
            if match is None:
                return None
            parts.append(_record_unescape(match.group(1)))
            pos = match.end()
        elif ch == "\\":
            if pos + 1 >= n:
                return None
            parts.append(text[pos + 1])
            pos += 2
        else:
            end = pos + 1
            while end < n and text[end] not in stops and text[end] not in '"\\':
                end += 1
            parts.append(text[pos:end])
            pos = end
    if pos >= n:
        return None  # every field and bound is followed by a separator or a closing bracket
    return ("".join(parts) if seen else None), pos


def parse_record_text(text: str) -> list[str | None] | None:
    """The fields of a record literal ``(a,,"b c")``: None for NULL fields."""
    if not text.startswith("("):
        return None
    pos = 1
    fields: list[str | None] = []
    while True:
        parsed = _quoted_field(text, pos, ",)")
        if parsed is None:
            return None
        value, pos = parsed
        fields.append(value)
        if text[pos] == ")":
            break
        pos += 1
    if text[pos + 1 :].strip():
        return None
    return fields


def format_record(fields: list[str | None]) -> str:
    """The literal record_out prints for ``fields``."""
    parts = []
    for value in fields:
        if value is None:
            parts.append("")
        elif _RECORD_NEEDS_QUOTE.search(value):
            parts.append('"' + value.replace('"', '""').replace("\\", "\\\\") + '"')
        else:
            parts.append(value)
    return "(" + ",".join(parts) + ")"


# --- ranges --------------------------------------------------------------------------------------


def _range_at(text: str, pos: int) -> tuple[tuple[str | None, str | None], int] | None:
    n = len(text)
    pos = _skip_space(text, pos)
    if text[pos : pos + 5].lower() == "empty":
        return (None, None), pos + 5
    if pos >= n or text[pos] not in "[(":
        return None
    lower = _quoted_field(text, pos + 1, ",")
    if lower is None:
        return None
    upper = _quoted_field(text, lower[1] + 1, ")]")
    if upper is None:
        return None
    return (lower[0], upper[0]), upper[1] + 1


def parse_range_text(text: str) -> tuple[str | None, str | None] | None:
    """The bounds of a range literal (None: infinite, or an empty range)."""
    parsed = _range_at(text, 0)
    if parsed is None or text[parsed[1] :].strip():
        return None
    return parsed[0]


def parse_multirange_text(text: str) -> list[str] | None:
    """The ranges of a multirange literal ``{[1,3),[5,7)}``, each as its own range literal."""
    pos = _skip_space(text, 0)
    if pos >= len(text) or text[pos] != "{":
        return None
    pos = _skip_space(text, pos + 1)
    ranges: list[str] = []
    if pos < len(text) and text[pos] == "}":
        return ranges if not text[pos + 1 :].strip() else None
    while True:
        start = _skip_space(text, pos)
        parsed = _range_at(text, start)
        if parsed is None:
            return None
        pos = parsed[1]
        ranges.append(text[start:pos])
        pos = _skip_space(text, pos)
        if pos >= len(text):
            return None
        if text[pos] == ",":
            pos += 1
        elif text[pos] == "}":
            break
        else:
            return None
    if text[pos + 1 :].strip():
        return None
    return ranges


# --- json and bytea ------------------------------------------------------------------------------


class JsonNumber(str):
    """A json number kept as the text it was written as (re-serialised exactly)."""

    __slots__ = ()


class JsonObject(list[tuple[str, object]]):
    """A json object as its members in order, duplicate keys kept (json keeps them)."""

    __slots__ = ()


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def load_json(text: str) -> object:
    """Parse JSON keeping numbers as written and objects as ordered members (duplicates kept).
    Raises ValueError (or RecursionError, nested too deeply) for anything that is not JSON."""
    return json.loads(
        text,
        object_pairs_hook=JsonObject,
        parse_int=JsonNumber,
        parse_float=JsonNumber,
        parse_constant=_reject_constant,
    )


def dump_json(node: object) -> str:
    """JSON text in jsonb's output style: ``{"a": 1, "b": [1, 2]}``."""
    parts: list[str] = []
    _dump(node, parts)
    return "".join(parts)


def _dump(node: object, parts: list[str]) -> None:
    if node is None:
        parts.append("null")
    elif node is True:
        parts.append("true")
    elif node is False:
        parts.append("false")
    elif isinstance(node, JsonNumber):
        parts.append(str.__str__(node))
    elif isinstance(node, str):
        parts.append(json.dumps(node, ensure_ascii=False))
    elif isinstance(node, JsonObject):
        parts.append("{")
        for i, (key, value) in enumerate(node):
            if i:
                parts.append(", ")
            parts.append(json.dumps(key, ensure_ascii=False))
            parts.append(": ")
            _dump(value, parts)
        parts.append("}")
    elif isinstance(node, list):
        parts.append("[")
        for i, value in enumerate(node):
            if i:
                parts.append(", ")
            _dump(value, parts)
        parts.append("]")
    else:  # pragma: no cover - json.loads produces nothing else
        raise ValueError(f"not a JSON value: {type(node).__name__}")


_BYTEA_ESCAPE = re.compile(r"\\(\\|[0-7]{3})")
_BYTEA_OUT = tuple(
    "\\\\" if b == 0x5C else chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}" for b in range(256)
)


def unescape_bytea(text: str) -> bytes | None:
    """bytea's escape output format (bytea_output = 'escape') back to bytes; None if malformed."""
    parts = _BYTEA_ESCAPE.split(text)
    out = bytearray()
    for i, part in enumerate(parts):
        if i % 2:
            out.append(0x5C if part == "\\" else int(part, 8) & 0xFF)
        else:
            if "\\" in part:
                return None
            try:
                out += part.encode("latin-1")
            except UnicodeEncodeError:
                return None
    return bytes(out)


def escape_bytea(data: bytes) -> str:
    return "".join([_BYTEA_OUT[b] for b in data])
