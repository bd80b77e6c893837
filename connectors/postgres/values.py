"""Masking one PostgreSQL value by its type, in text or binary format.

A value is masked the way its type allows, so the client can still parse what it gets:

- text-like values get inline replacements (``****-****-****-1111``);
- a number whose text form holds a finding becomes NULL, never non-numeric text;
- types that cannot spell a card, an e-mail or a secret (dates, uuids, booleans...) are not
  scanned at all;
- json/jsonb are parsed and their strings masked inline, numbers holding a finding become
  ``null``; bytea is scanned as UTF-8 where it decodes and keeps its output style;
- arrays, composites, ranges and multiranges are split, each element masked by its own type
  and put back together in the same format (a range or multirange with a finding is NULLed
  whole: a bound cannot be replaced by text);
- what cannot be read (unknown types, opaque formats, malformed values) is scanned as text
  when it is text and NULLed when it holds a finding; in binary it is NULLed whenever detectors
  are active: the one remaining fail-closed limit.

Each entry point returns :data:`UNCHANGED` (forward the original bytes), new bytes, or None
(send NULL). Nothing here raises for hostile input: malformed values are NULLed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Final

from gateway.masking import Masker

from .binary import (
    build_array,
    build_record,
    float_text,
    geometry_floats,
    number_text,
    parse_array,
    parse_multirange,
    parse_range,
    parse_record,
)
from .pgtypes import Kind, TypeDesc, TypeRegistry
from .textvalues import (
    ArrayItems,
    JsonNumber,
    JsonObject,
    dump_json,
    escape_bytea,
    format_array,
    format_record,
    load_json,
    parse_array_text,
    parse_multirange_text,
    parse_range_text,
    parse_record_text,
    unescape_bytea,
)

__all__ = [
    "UNCHANGED",
    "Unchanged",
    "ValueMasker",
    "dump_json",
    "mask_binary_value",
    "mask_text_value",
]


class Unchanged:
    """The type of :data:`UNCHANGED`: the value needs no masking, forward its bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()
Masked = bytes | None | Unchanged
_TextMasked = str | None | Unchanged

MASK: Final = "****"
MASK_BYTES: Final = b"****"
JSON_MASK: Final = b'"****"'
JSONB_MASK: Final = b'\x01"****"'
JSONB_VERSION: Final = 1
#: Containers inside containers (an array of composites holding ranges...). Deeper is NULLed.
MAX_DEPTH: Final = 16
#: json/jsonb values larger than this, or nested deeper, are not parsed: NULLed when a detector
#: finds anything in their raw text, forwarded otherwise.
MAX_JSON_CHARS: Final = 16 << 20
MAX_JSON_DEPTH: Final = 200
#: Exponents spelled out for scanning (4.111111111111111e+15 is a card number); past these the
#: text is scanned as it is.
_MAX_EXPONENT = 400
_MAX_EXPAND_CHARS = 1 << 16

_OPAQUE = TypeDesc(Kind.OPAQUE)
_NOT_SCANNED = (Kind.HARMLESS, Kind.BOOL)
#: Binary sizes of the fixed-layout types that are not scanned: a value of another size is not
#: what its type says (a hostile or broken target) and is NULLed rather than forwarded unread.
FIXED_SIZES: Final = {
    16: 1, 18: 1, 1082: 4, 1083: 8, 1114: 8, 1184: 8, 1186: 16, 1266: 12, 2950: 16, 829: 6,
    774: 8, 3220: 8, 28: 4, 29: 4, 5069: 8, 27: 6, 24: 4, 2202: 4, 2203: 4, 2204: 4, 2205: 4,
    2206: 4, 3734: 4, 3769: 4, 4089: 4, 4096: 4, 4191: 4, 2278: 0,
}  # fmt: skip
_EXPONENT_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]{1,4}")
_ZERO_FRACTION = re.compile(r"(-?[0-9]+)\.0+")
_MONEY_NOISE = re.compile(r"[^0-9.\-]")
# JSON escapes that can hide something from a scan of the raw text: \u0034 (a digit), \" (a
# quoted key inside a string), \/ (https:\/\/user:password@host). \n, \t and friends decode to
# characters no detector takes for part of a value, so they need no parse.
_JSON_HIDING_ESCAPE = re.compile(r"\\[^nrtbf]")


def mask_text_value(
    value: bytes, oid: int, registry: TypeRegistry, masker: Masker, *, whole: bool = False
) -> Masked:
    """Mask one text-format value of type ``oid``: UNCHANGED, new bytes, or None (NULL).

    ``whole``: the value must be hidden entirely (its column derives from a configured sensitive
    column): text-like values become ``****``, json ``"****"``, everything else NULL.
    """
    return ValueMasker(registry, masker).text(value, oid, whole=whole)


def mask_binary_value(
    value: bytes, oid: int, registry: TypeRegistry, masker: Masker, *, whole: bool = False
) -> Masked:
    """Mask one binary-format value of type ``oid``: UNCHANGED, new bytes, or None (NULL)."""
    return ValueMasker(registry, masker).binary(value, oid, whole=whole)


def whole_text(desc: TypeDesc) -> bytes | None:
    """What a text-format value that must be hidden entirely becomes."""
    if desc.kind is Kind.TEXT:
        return MASK_BYTES
    if desc.kind in (Kind.JSON, Kind.JSONB):
        return JSON_MASK
    return None


def whole_binary(desc: TypeDesc) -> bytes | None:
    """What a binary-format value that must be hidden entirely becomes."""
    if desc.kind is Kind.TEXT:
        return MASK_BYTES
    if desc.kind is Kind.JSON:
        return JSON_MASK
    if desc.kind is Kind.JSONB:
        return JSONB_MASK
    return None


def _whole(value: bytes, replacement: bytes | None) -> Masked:
    if replacement is not None and value == replacement:
        return UNCHANGED
    return replacement


class ValueMasker:
    """Masks values by type with one registry and one masker (what a result set keeps)."""

    __slots__ = ("_mask", "masker", "registry", "scanning")

    def __init__(self, registry: TypeRegistry, masker: Masker) -> None:
        self.registry = registry
        self.masker = masker
        self._mask: Callable[[str], str] = masker.mask_text
        #: Without detectors only whole-column masking can change anything.
        self.scanning = bool(masker.detectors)

    def describe(self, oid: int) -> TypeDesc:
        """The registry's description, opaque for an OID nobody described (fail closed)."""
        return self.registry.describe(oid) or _OPAQUE

    # -- entry points ---------------------------------------------------------------------------

    def text(self, value: bytes, oid: int, *, whole: bool = False) -> Masked:
        return self.text_desc(value, self.describe(oid), whole=whole)

    def binary(self, value: bytes, oid: int, *, whole: bool = False) -> Masked:
        return self.binary_desc(value, self.describe(oid), whole=whole)

    def text_desc(self, value: bytes, desc: TypeDesc, *, whole: bool = False) -> Masked:
        if whole:
            return _whole(value, whole_text(desc))
        if not self.scanning or desc.kind in _NOT_SCANNED:
            return UNCHANGED
        try:
            text = str(value, "utf-8")
        except UnicodeDecodeError:
            # Cannot be scanned: hidden whole (fail closed).
            return MASK_BYTES if desc.kind is Kind.TEXT else None
        out = self._text(text, desc, 0)
        if isinstance(out, str):
            return _encode(out)
        return out

    def text_str(self, text: str, desc: TypeDesc, *, whole: bool = False) -> str | None | Unchanged:
        """Like :meth:`text_desc` on a value already decoded (COPY fields)."""
        if whole:
            replacement = whole_text(desc)
            if replacement is None:
                return None
            masked = replacement.decode()
            return UNCHANGED if text == masked else masked
        if not self.scanning or desc.kind in _NOT_SCANNED:
            return UNCHANGED
        return self._text(text, desc, 0)

    def binary_desc(self, value: bytes, desc: TypeDesc, *, whole: bool = False) -> Masked:
        if whole:
            return _whole(value, whole_binary(desc))
        if not self.scanning:
            return UNCHANGED
        return self._binary(bytes(value), desc, 0)

    # -- findings ---------------------------------------------------------------------------------

    def _found(self, text: str) -> bool:
        return self._mask(text) is not text

    def _number_found(self, text: str) -> bool:
        """A number (or geometric value) whose text holds a finding. Exponents are spelled out
        and money's currency signs and separators dropped first, so that 4.111111111111111e+15
        or $4,111,111,111,111,111.00 are seen as the digits they are."""
        if self._found(text):
            return True
        if ("e" in text or "E" in text) and len(text) <= _MAX_EXPAND_CHARS:
            spelled = _EXPONENT_NUMBER.sub(_spell_out, text)
            if spelled != text and self._found(spelled):
                return True
        cleaned = _MONEY_NOISE.sub("", text) if ("," in text or "$" in text) else text
        if cleaned != text and self._found(cleaned):
            return True
        # A whole number with a zero fraction (a card kept as numeric(19,2) or money): the
        # detectors ignore digits glued to a decimal point, so its integer part is scanned.
        whole = _ZERO_FRACTION.fullmatch(cleaned)
        return whole is not None and self._found(whole.group(1))

    # -- text format ----------------------------------------------------------------------------

    def _text(self, text: str, desc: TypeDesc, depth: int) -> _TextMasked:
        kind = desc.kind
        if kind is Kind.TEXT:
            masked = self._mask(text)
            return UNCHANGED if masked is text else masked
        if kind in _NOT_SCANNED:
            return UNCHANGED
        if kind is Kind.NUMBER or kind is Kind.GEOMETRY:
            return None if self._number_found(text) else UNCHANGED
        if depth >= MAX_DEPTH:
            return None
        if kind is Kind.JSON or kind is Kind.JSONB:
            return self._json(text)
        if kind is Kind.BYTEA:
            return self._bytea_text(text)
        if kind is Kind.ARRAY:
            return self._array_text(text, desc, depth)
        if kind is Kind.COMPOSITE:
            return self._record_text(text, desc, depth)
        if kind is Kind.RANGE:
            return self._range_text(text, desc, depth)
        if kind is Kind.MULTIRANGE:
            ranges = parse_multirange_text(text)
            if ranges is None:
                return None
            range_desc = self.describe(desc.elem)
            for rng in ranges:
                if self._text(rng, range_desc, depth + 1) is not UNCHANGED:
                    return None
            return UNCHANGED
        # Enums, opaque types: the text can be scanned, not rewritten. Scanned as numbers are
        # (exponents spelled out): an opaque value may well hold one.
        return None if self._number_found(text) else UNCHANGED

    def _array_text(self, text: str, desc: TypeDesc, depth: int) -> _TextMasked:
        elem = self.describe(desc.elem) if desc.elem else _OPAQUE
        if elem.kind in _NOT_SCANNED:
            return UNCHANGED
        parsed = parse_array_text(text, desc.delim)
        if parsed is None:
            return None
        prefix, items = parsed
        changed, masked = self._array_items(items, elem, depth + 1)
        if not changed:
            return UNCHANGED
        return prefix + format_array(masked, desc.delim)

    def _array_items(
        self, items: ArrayItems, elem: TypeDesc, depth: int
    ) -> tuple[bool, ArrayItems]:
        changed = False
        out: ArrayItems = []
        for item in items:
            if isinstance(item, list):
                sub_changed, sub = self._array_items(item, elem, depth)
                changed = changed or sub_changed
                out.append(sub)
                continue
            if item is None:
                out.append(None)
                continue
            masked = self._text(item, elem, depth)
            if masked is UNCHANGED:
                out.append(item)
            else:
                changed = True
                out.append(masked if isinstance(masked, str) else None)
        return changed, out

    def _record_text(self, text: str, desc: TypeDesc, depth: int) -> _TextMasked:
        fields = parse_record_text(text)
        if fields is None:
            return None
        known = desc.fields if desc.fields is not None and len(desc.fields) == len(fields) else None
        changed = False
        out: list[str | None] = []
        for i, field in enumerate(fields):
            if field is None:
                out.append(None)
                continue
            if known is not None:
                masked = self._text(field, self.describe(known[i]), depth + 1)
            else:
                # Field types unknown (an anonymous record): a finding NULLs the field.
                masked = None if self._number_found(field) else UNCHANGED
            if masked is UNCHANGED:
                out.append(field)
            else:
                changed = True
                out.append(masked if isinstance(masked, str) else None)
        return format_record(out) if changed else UNCHANGED

    def _range_text(self, text: str, desc: TypeDesc, depth: int) -> _TextMasked:
        bounds = parse_range_text(text)
        if bounds is None:
            return None
        subtype = self.describe(desc.elem) if desc.elem else _OPAQUE
        for bound in bounds:
            if bound is not None and self._text(bound, subtype, depth + 1) is not UNCHANGED:
                return None
        return UNCHANGED

    def _bytea_text(self, text: str) -> _TextMasked:
        if text.startswith("\\x"):
            try:
                data = bytes.fromhex(text[2:])
            except ValueError:
                return None
            masked = self._octets(data)
            return masked if isinstance(masked, Unchanged) else "\\x" + masked.hex()
        unescaped = unescape_bytea(text)
        if unescaped is None:
            return None
        masked = self._octets(unescaped)
        return masked if isinstance(masked, Unchanged) else escape_bytea(masked)

    def _octets(self, data: bytes) -> bytes | Unchanged:
        """bytea content scanned as UTF-8 where it decodes; findings' bytes replaced."""
        # surrogateescape keeps every undecodable byte at its place, so offsets hold and the
        # bytes around a replacement come back exactly.
        text = data.decode("utf-8", "surrogateescape")
        masked = self._mask(text)
        if masked is text:
            return UNCHANGED
        try:
            return masked.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return MASK_BYTES

    # -- json -----------------------------------------------------------------------------------

    def _json(self, text: str) -> _TextMasked:
        raw = self._mask(text)
        # Escapes (\u0034...) and exponents (json keeps 4.111111111111111e15 as written) can
        # hide what the raw scan would see: only then must a clean-looking document be parsed.
        if raw is text and _JSON_HIDING_ESCAPE.search(text) is None and not _has_exponent(text):
            return UNCHANGED
        if len(text) > MAX_JSON_CHARS:
            return None
        try:
            tree = load_json(text)
            changed, masked_tree = self._json_node(tree, 0)
        except (ValueError, RecursionError):
            return None
        if changed:
            candidate = dump_json(masked_tree)
            again = self._mask(candidate)
            if again is candidate:
                return candidate
        elif raw is text:
            return UNCHANGED
        else:
            # Nothing inside any one string or number, but the raw text holds a finding that
            # needs context ("password": "..."): the detectors keep such replacements valid
            # JSON; anything else is NULLed.
            again = raw
        try:
            json.loads(again)
        except (ValueError, RecursionError):
            return None
        return again

    def _json_node(self, node: object, depth: int) -> tuple[bool, object]:
        if depth > MAX_JSON_DEPTH:
            raise ValueError("json nested too deeply to mask")
        if isinstance(node, JsonNumber):
            return (True, None) if self._number_found(node) else (False, node)
        if isinstance(node, str):
            masked = self._mask(node)
            return masked is not node, masked
        if isinstance(node, JsonObject):
            changed = False
            members = JsonObject()
            for key, value in node:
                new_key = self._mask(key)
                value_changed, new_value = self._json_node(value, depth + 1)
                changed = changed or value_changed or new_key is not key
                members.append((new_key, new_value))
            return changed, members if changed else node
        if isinstance(node, list):
            changed = False
            items = []
            for value in node:
                value_changed, new_value = self._json_node(value, depth + 1)
                changed = changed or value_changed
                items.append(new_value)
            return changed, items if changed else node
        return False, node  # true, false, null

    # -- binary format --------------------------------------------------------------------------

    def _binary(self, value: bytes, desc: TypeDesc, depth: int) -> Masked:
        kind = desc.kind
        if kind is Kind.TEXT:
            try:
                text = str(value, "utf-8")
            except UnicodeDecodeError:
                return MASK_BYTES
            masked = self._mask(text)
            return UNCHANGED if masked is text else _encode(masked)
        if kind in _NOT_SCANNED:
            size = FIXED_SIZES.get(desc.base)
            return None if size is not None and len(value) != size else UNCHANGED
        if kind is Kind.NUMBER:
            number = number_text(desc.base, value)
            return None if number is None or self._number_found(number) else UNCHANGED
        if depth >= MAX_DEPTH:
            return None
        if kind is Kind.JSON or kind is Kind.JSONB:
            return self._json_binary(value, kind is Kind.JSONB)
        if kind is Kind.BYTEA:
            return self._octets(value)
        if kind is Kind.GEOMETRY:
            floats = geometry_floats(desc.base, value)
            if floats is None or any(self._number_found(float_text(f)) for f in floats):
                return None
            return UNCHANGED
        if kind is Kind.ARRAY:
            return self._array_binary(value, desc, depth)
        if kind is Kind.COMPOSITE:
            return self._record_binary(value, desc, depth)
        if kind is Kind.RANGE:
            return self._range_binary(value, desc, depth)
        if kind is Kind.MULTIRANGE:
            ranges = parse_multirange(value)
            if ranges is None:
                return None
            range_desc = self.describe(desc.elem)
            if range_desc.kind is not Kind.RANGE:
                return None
            for rng in ranges:
                if self._range_binary(rng, range_desc, depth + 1) is not UNCHANGED:
                    return None
            return UNCHANGED
        if kind is Kind.ENUM:  # enum_send: the label's text
            try:
                label = str(value, "utf-8")
            except UnicodeDecodeError:
                return None
            return None if self._found(label) else UNCHANGED
        return None  # opaque: cannot be read, so it cannot be shown while detectors are on

    def _json_binary(self, value: bytes, jsonb: bool) -> Masked:
        if jsonb:
            if not value or value[0] != JSONB_VERSION:
                return None
            body = value[1:]
        else:
            body = value
        try:
            text = str(body, "utf-8")
        except UnicodeDecodeError:
            return None
        masked = self._json(text)
        if not isinstance(masked, str):
            return masked
        encoded = _encode(masked)
        if encoded is None:
            return None
        return b"\x01" + encoded if jsonb else encoded

    def _array_binary(self, value: bytes, desc: TypeDesc, depth: int) -> Masked:
        array = parse_array(value)
        if array is None or (desc.elem and array.elem_oid != desc.elem):
            return None  # malformed, or elements of another type than the column's
        elem = self.describe(array.elem_oid)
        changed = False
        out: list[bytes | None] = []
        for element in array.elements:
            if element is None:
                out.append(None)
                continue
            masked = self._binary(element, elem, depth + 1)
            if masked is UNCHANGED:
                out.append(element)
            else:
                changed = True
                out.append(masked if isinstance(masked, bytes) else None)
        return build_array(array, out) if changed else UNCHANGED

    def _record_binary(self, value: bytes, desc: TypeDesc, depth: int) -> Masked:
        fields = parse_record(value)
        if fields is None:
            return None
        if desc.fields is not None and tuple(oid for oid, _ in fields) != desc.fields:
            return None  # not the fields the catalog describes: cannot trust the types
        changed = False
        out: list[tuple[int, bytes | None]] = []
        for oid, field in fields:
            if field is None:
                out.append((oid, None))
                continue
            masked = self._binary(field, self.describe(oid), depth + 1)
            if masked is UNCHANGED:
                out.append((oid, field))
            else:
                changed = True
                out.append((oid, masked if isinstance(masked, bytes) else None))
        return build_record(out) if changed else UNCHANGED

    def _range_binary(self, value: bytes, desc: TypeDesc, depth: int) -> Masked:
        parsed = parse_range(value)
        if parsed is None:
            return None
        subtype = self.describe(desc.elem) if desc.elem else _OPAQUE
        for bound in parsed[1:]:
            if bound is not None and self._binary(bound, subtype, depth + 1) is not UNCHANGED:
                return None
        return UNCHANGED


# --- helpers -----------------------------------------------------------------------------------


def _encode(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a json escape: nothing to send safely
        return None


def _has_exponent(text: str) -> bool:
    return ("e" in text or "E" in text) and _EXPONENT_NUMBER.search(text) is not None


def _spell_out(match: re.Match[str]) -> str:
    try:
        number = Decimal(match.group())
    except InvalidOperation:
        return match.group()
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > _MAX_EXPONENT:
        return match.group()
    return format(number, "f")
