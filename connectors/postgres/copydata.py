"""Masking ``COPY ... TO STDOUT`` output: text, CSV and binary, field by field by column type.

The server sends COPY output as CopyData messages. For text and CSV, copyto.c sends one row per
message (CopySendEndOfRow), the header line as a message of its own. For binary it sends the
file header together with the first tuple (or with the trailer when there are no rows), then
one tuple per message, then the trailer (int16 -1) alone. The binary masker does not rely on
that: it reads the stream with a bounded buffer, whatever way it is split.

Fields are masked with the rules of values.py: text inline, numbers NULLed on a finding, whole
columns hidden. Unchanged rows are forwarded as the bytes they came in; a changed field is
re-escaped (text) or re-quoted (CSV) as COPY itself would, the other fields keep their bytes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from gateway.errors import ProtocolError
from gateway.masking import Masker

from .binary import append_fields
from .pgtypes import Kind, TypeDesc, TypeRegistry
from .values import UNCHANGED, ValueMasker

__all__ = [
    "BINARY_SIGNATURE",
    "BinaryCopyMasker",
    "CopyOptions",
    "TextCopyMasker",
    "UnsupportedCopy",
]

BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
#: What a binary COPY stream may hold back between messages: one CopyData's worth (the codec's
#: default maximum message size). The server never splits a tuple, so it never comes close.
DEFAULT_MAX_BUFFER = 16 * 1024 * 1024

# PostgreSQL encoding names (as COPY's ENCODING option takes them) -> Python codecs.
_ENCODINGS = {
    "UTF8": "utf-8", "UNICODE": "utf-8", "SQL_ASCII": "ascii",
    "LATIN1": "iso8859-1", "LATIN2": "iso8859-2", "LATIN3": "iso8859-3", "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9", "LATIN6": "iso8859-10", "LATIN7": "iso8859-13",
    "LATIN8": "iso8859-14", "LATIN9": "iso8859-15", "LATIN10": "iso8859-16",
    "WIN1250": "cp1250", "WIN1251": "cp1251", "WIN1252": "cp1252", "WIN1253": "cp1253",
    "WIN1254": "cp1254", "WIN1255": "cp1255", "WIN1256": "cp1256", "WIN1257": "cp1257",
    "WIN1258": "cp1258", "KOI8R": "koi8-r", "KOI8U": "koi8-u",
}  # fmt: skip
#: Kinds whose raw text shows every finding its decoded value holds (no escapes, no encodings,
#: no exponents inside): a clean row of only these needs no field splitting.
_PLAIN_KINDS = (Kind.TEXT, Kind.HARMLESS, Kind.BOOL, Kind.ENUM, Kind.OPAQUE)
_PLAIN_NUMBERS = (20, 21, 23, 26, 1700)  # integers and numeric: never an exponent or a "$"
#: Delimiters that no detector takes for part of a value (a space or a dash would join fields).
_SAFE_DELIMITERS = "\t,|;"


class UnsupportedCopy(ProtocolError):
    """A COPY whose output cannot be masked (an encoding or option we cannot read): refuse it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sqlstate="0A000")


@dataclass(frozen=True, slots=True)
class CopyOptions:
    """What shapes COPY TO output, from the statement's options (PostgreSQL's defaults)."""

    format: Literal["text", "csv", "binary"] = "text"
    delimiter: str = "\t"
    null: str = "\\N"
    quote: str = '"'
    escape: str = '"'
    header: bool = False
    #: Python codec of the output; None = the connection's client encoding (UTF-8).
    encoding: str | None = None

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1 or len(self.quote) != 1 or len(self.escape) != 1:
            raise UnsupportedCopy("COPY delimiter, quote and escape must be single characters")
        if self.delimiter in "\r\n" or self.delimiter == "\\" and self.format == "text":
            raise UnsupportedCopy(f"COPY delimiter {self.delimiter!r} cannot be masked")

    @classmethod
    def from_statement(cls, node: Mapping[str, Any]) -> CopyOptions:
        """Options of a ``CopyStmt`` node as ``pglast.parser.parse_sql_json`` gives it (the
        ``{"CopyStmt": {...}}`` wrapper or its content)."""
        stmt = node.get("CopyStmt", node)
        values: dict[str, Any] = {}
        for item in stmt.get("options") or ():
            elem = item.get("DefElem", {}) if isinstance(item, Mapping) else {}
            name = str(elem.get("defname", "")).lower()
            values[name] = _option_value(elem.get("arg"))
        fmt = str(values.get("format") or "text").lower()
        if fmt not in ("text", "csv", "binary"):
            raise UnsupportedCopy(f"COPY format {fmt!r} is not known")
        csv = fmt == "csv"
        quote = _char(values.get("quote"), '"')
        header = values.get("header", False)
        encoding: str | None = None
        if values.get("encoding") is not None:
            name = str(values["encoding"]).upper().replace("-", "").replace("_", "")
            name = {"SQLASCII": "SQL_ASCII"}.get(name, name)
            encoding = _ENCODINGS.get(name)
            if encoding is None:
                raise UnsupportedCopy(f"COPY output in encoding {values['encoding']!r} cannot be masked")
        return cls(
            format=fmt,  # type: ignore[arg-type]
            delimiter=_char(values.get("delimiter"), "," if csv else "\t"),
            null=str(values["null"]) if values.get("null") is not None else ("" if csv else "\\N"),
            quote=quote,
            escape=_char(values.get("escape"), quote),
            header=_truthy(header),
            encoding=encoding,
        )


def _option_value(arg: Any) -> Any:
    if arg is None:
        return True  # HEADER, CSV alone: the option is on
    if not isinstance(arg, Mapping):
        return arg
    if "String" in arg:
        return arg["String"].get("sval", "")
    if "Boolean" in arg:
        return bool(arg["Boolean"].get("boolval", False))
    if "Integer" in arg:
        return int(arg["Integer"].get("ival", 0))
    if "A_Star" in arg:
        return "*"
    if "List" in arg:
        return [_option_value(i) for i in arg["List"].get("items", ())]
    return arg


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        # "match" only applies to COPY FROM; for output it means a header is written.
        return value.lower() in ("true", "on", "1", "yes", "match")
    return bool(value)


def _char(value: Any, default: str) -> str:
    return default if value is None else str(value)


def _columns(
    column_types: Sequence[int], column_masks: Sequence[bool] | None, values: ValueMasker
) -> tuple[tuple[TypeDesc, ...], tuple[bool, ...]]:
    masks = tuple(column_masks or ())
    descs = tuple(values.describe(oid) for oid in column_types)
    whole = tuple(i < len(masks) and bool(masks[i]) for i in range(len(descs)))
    return descs, whole


# --- text and CSV -------------------------------------------------------------------------------

_TEXT_UNESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)
_TEXT_CONTROL = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_TEXT_ESCAPES = {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                 "\t": "\\t", "\v": "\\v"}  # fmt: skip


def _text_unescape_one(match: re.Match[str]) -> str:
    octal, hexa, other = match.groups()
    if octal is not None:
        return chr(int(octal, 8) & 0xFF)
    if hexa is not None:
        return chr(int(hexa, 16))
    return _TEXT_CONTROL.get(other, other)


@lru_cache(maxsize=16)
def _text_splitter(delim: str) -> re.Pattern[str]:
    # A backslash escapes the next character, so a delimiter right after one is data.
    return re.compile(r"\\.|" + re.escape(delim), re.DOTALL)


class TextCopyMasker:
    """Masks COPY TO output in text or CSV format, one CopyData payload (one row) at a time."""

    __slots__ = (
        "_descs",
        "_header_pending",
        "_prefilter",
        "_values",
        "_whole",
        "encoding",
        "masked_rows",
        "options",
        "rows",
    )

    def __init__(
        self,
        options: CopyOptions,
        column_types: Sequence[int],
        column_masks: Sequence[bool] | None,
        registry: TypeRegistry,
        masker: Masker,
    ) -> None:
        if options.format == "binary":
            raise ValueError("binary COPY output is masked by BinaryCopyMasker")
        self.options = options
        self.encoding = options.encoding or "utf-8"
        self._values = ValueMasker(registry, masker)
        self._descs, self._whole = _columns(column_types, column_masks, self._values)
        self._header_pending = options.header
        self._prefilter = (
            not any(self._whole)
            and options.delimiter in _SAFE_DELIMITERS
            and all(
                d.kind in _PLAIN_KINDS or (d.kind is Kind.NUMBER and d.base in _PLAIN_NUMBERS)
                for d in self._descs
            )
        )
        self.rows = 0
        self.masked_rows = 0

    @property
    def needs_scan(self) -> bool:
        return self._values.scanning or any(self._whole)

    def mask(self, payload: bytes) -> bytes:
        """The payload to send for one CopyData message: ``payload`` itself when unchanged."""
        if self._header_pending:
            self._header_pending = False
            return payload
        self.rows += 1
        if not self.needs_scan:
            return payload
        try:
            text = str(payload, self.encoding)
        except UnicodeDecodeError as exc:
            raise ProtocolError(
                f"the target sent COPY data that is not {self.encoding}: {exc}"
            ) from exc
        marker = "\\" if self.options.format == "text" else self.options.quote
        if self._prefilter and marker not in text and self._values.masker.mask_text(text) is text:
            return payload
        masked = self._mask_rows(text)
        if masked is None:
            return payload
        self.masked_rows += 1
        return masked.encode(self.encoding, "replace")

    def _mask_rows(self, text: str) -> str | None:
        out: list[str] = []
        changed = False
        pos = 0
        csv = self.options.format == "csv"
        while pos < len(text):
            fields, pos, eol = self._split_csv(text, pos) if csv else self._split_text(text, pos)
            if len(fields) != len(self._descs):
                raise ProtocolError(
                    f"the target sent a COPY row of {len(fields)} fields for "
                    f"{len(self._descs)} columns"
                )
            row_changed, row = self._mask_fields(fields, csv)
            changed = changed or row_changed
            out.append(self.options.delimiter.join(row))
            out.append(eol)
        return "".join(out) if changed else None

    # A field as split: (raw text as sent, decoded value or None for NULL, was quoted).
    _Field = tuple[str, str | None, bool]

    def _split_text(self, text: str, pos: int) -> tuple[list[_Field], int, str]:
        end = text.find("\n", pos)
        if end < 0:
            end, eol_end = len(text), len(text)
        else:
            eol_end = end + 1
            if end > pos and text[end - 1] == "\r":
                end -= 1
        line = text[pos:end]
        eol = text[end:eol_end]
        raws: list[str] = []
        start = 0
        delim = self.options.delimiter
        for match in _text_splitter(delim).finditer(line):
            if match.group() == delim:
                raws.append(line[start : match.start()])
                start = match.end()
        raws.append(line[start:])
        null = self.options.null
        fields = [
            (raw, None if raw == null else _TEXT_UNESCAPE.sub(_text_unescape_one, raw), False)
            for raw in raws
        ]
        return fields, eol_end, eol

    def _split_csv(self, text: str, pos: int) -> tuple[list[_Field], int, str]:
        opts = self.options
        delim, quote, escape = opts.delimiter, opts.quote, opts.escape
        fields: list[TextCopyMasker._Field] = []
        n = len(text)
        while True:
            start = pos
            parts: list[str] = []
            quoted = False
            while pos < n:
                ch = text[pos]
                if ch == delim or ch == "\n" or (ch == "\r" and text[pos + 1 : pos + 2] == "\n"):
                    break
                if ch == quote:
                    quoted = True
                    pos += 1
                    while pos < n:
                        ch = text[pos]
                        if ch == escape and pos + 1 < n and text[pos + 1] in (escape, quote):
                            parts.append(text[pos + 1])
                            pos += 2
                            continue
                        if ch == quote:
                            pos += 1
                            break
                        parts.append(ch)
                        pos += 1
                    else:
                        raise ProtocolError("the target sent a CSV COPY row with an open quote")
                    continue
                parts.append(ch)
                pos += 1
            raw = text[start:pos]
            value = "".join(parts)
            fields.append((raw, None if not quoted and value == opts.null else value, quoted))
            if pos < n and text[pos] == delim:
                pos += 1
                continue
            eol_end = pos + (2 if text[pos : pos + 1] == "\r" else 1 if pos < n else 0)
            return fields, eol_end, text[pos:eol_end]

    def _mask_fields(self, fields: list[_Field], csv: bool) -> tuple[bool, list[str]]:
        changed = False
        out: list[str] = []
        single = len(fields) == 1
        for i, (raw, value, quoted) in enumerate(fields):
            whole = self._whole[i]
            if value is None and not whole:
                out.append(raw)
                continue
            if value is None:
                out.append(raw)  # NULL stays NULL when hidden whole
                continue
            masked = self._values.text_str(value, self._descs[i], whole=whole)
            if masked is UNCHANGED:
                out.append(raw)
                continue
            changed = True
            if masked is None:
                out.append(self.options.null)
            elif csv:
                out.append(self._csv_field(masked, quoted, single))  # type: ignore[arg-type]
            else:
                out.append(self._text_field(masked))  # type: ignore[arg-type]
        return changed, out

    def _text_field(self, value: str) -> str:
        """CopyAttributeOutText: backslash escapes for control characters and the delimiter."""
        delim = self.options.delimiter
        out = []
        for ch in value:
            escaped = _TEXT_ESCAPES.get(ch)
            if escaped is not None:
                out.append(escaped)
            elif ch == delim:
                out.append("\\" + ch)
            else:
                out.append(ch)
        return "".join(out)

    def _csv_field(self, value: str, was_quoted: bool, single: bool) -> str:
        """CopyAttributeOutCSV; a field that was quoted stays quoted (FORCE_QUOTE)."""
        opts = self.options
        quote_it = (
            was_quoted
            or value == opts.null
            or (single and value == "\\.")
            or any(c in value for c in (opts.delimiter, opts.quote, "\n", "\r"))
        )
        if not quote_it:
            return value
        body = "".join(opts.escape + c if c in (opts.quote, opts.escape) else c for c in value)
        return opts.quote + body + opts.quote


# --- binary -------------------------------------------------------------------------------------

_HEADER = struct.Struct("!11sii")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")


class BinaryCopyMasker:
    """Masks a binary COPY TO stream: give it each CopyData payload, send what it returns.

    Returns ``payload`` itself when the message is complete and unchanged; otherwise the masked
    bytes of every tuple completed so far (possibly b"": send no CopyData for this message).
    Call :meth:`finish` at CopyDone: a stream cut short raises :class:`ProtocolError`.
    """

    __slots__ = (
        "_buf",
        "_descs",
        "_max_buffer",
        "_need",
        "_state",
        "_values",
        "_whole",
        "masked_rows",
        "rows",
    )

    def __init__(
        self,
        column_types: Sequence[int],
        column_masks: Sequence[bool] | None,
        registry: TypeRegistry,
        masker: Masker,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self._values = ValueMasker(registry, masker)
        self._descs, self._whole = _columns(column_types, column_masks, self._values)
        self._buf = bytearray()
        self._need = 0  # bytes the held-back unit needs before parsing is worth another try
        self._state: Literal["header", "tuples", "done"] = "header"
        self._max_buffer = max_buffer
        self.rows = 0
        self.masked_rows = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, payload: bytes) -> bytes:
        if self._buf:
            self._buf += payload
            if len(self._buf) < self._need:
                self._check_size()
                return b""
            data: bytes = bytes(self._buf)
            self._buf.clear()
            held = True
        else:
            data = payload
            held = False
        parts: list[bytes] = []
        changed = False
        pos = 0
        while pos < len(data):
            unit = self._unit(data, pos)
            if unit is None:
                break
            end, masked = unit
            if masked is None:
                parts.append(data[pos:end])
            else:
                parts.append(masked)
                changed = True
            pos = end
        if pos < len(data):
            self._buf += data[pos:]
            self._check_size()
        if not held and not changed and pos == len(data):
            return payload
        return b"".join(parts)

    def finish(self) -> None:
        if self._state != "done" or self._buf:
            raise ProtocolError("the target ended a binary COPY mid-stream (no trailer)")

    def _check_size(self) -> None:
        if len(self._buf) > self._max_buffer:
            raise ProtocolError(
                f"binary COPY unit larger than {self._max_buffer} bytes across messages"
            )

    def _unit(self, data: bytes, pos: int) -> tuple[int, bytes | None] | None:
        """One header, tuple or trailer at ``pos``: (end, masked bytes or None if unchanged),
        or None when incomplete (``_need`` says how much it needs)."""
        if self._state == "done":
            raise ProtocolError("the target sent binary COPY data after the trailer")
        if self._state == "header":
            return self._header(data, pos)
        if pos + 2 > len(data):
            self._need = 2
            return None
        (count,) = _I16.unpack_from(data, pos)
        if count == -1:
            self._state = "done"
            return pos + 2, None
        if count != len(self._descs):
            raise ProtocolError(
                f"the target sent a binary COPY tuple of {count} fields for "
                f"{len(self._descs)} columns"
            )
        cursor = pos + 2
        fields: list[bytes | None] = []
        for _ in range(count):
            if cursor + 4 > len(data):
                self._need = cursor + 4 - pos
                return None
            (size,) = _I32.unpack_from(data, cursor)
            cursor += 4
            if size == -1:
                fields.append(None)
                continue
            if size < 0:
                raise ProtocolError(f"binary COPY field length {size}")
            if cursor + size > len(data):
                self._need = cursor + size - pos
                return None
            fields.append(data[cursor : cursor + size])
            cursor += size
        self._need = 0
        self.rows += 1
        return cursor, self._mask_tuple(fields)

    def _header(self, data: bytes, pos: int) -> tuple[int, bytes | None] | None:
        if pos + _HEADER.size > len(data):
            self._need = _HEADER.size
            return None
        signature, flags, ext = _HEADER.unpack_from(data, pos)
        if signature != BINARY_SIGNATURE:
            raise ProtocolError("binary COPY data without the PGCOPY signature")
        if flags & ~0xFFFF:  # bit 16 (OIDs, before PostgreSQL 12) and unknown critical bits
            raise UnsupportedCopy(f"binary COPY header flags {flags:#x} cannot be masked")
        if not 0 <= ext <= self._max_buffer:
            raise ProtocolError(f"binary COPY header extension of {ext} bytes")
        end = pos + _HEADER.size + ext
        if end > len(data):
            self._need = _HEADER.size + ext
            return None
        self._need = 0
        self._state = "tuples"
        return end, None

    def _mask_tuple(self, fields: list[bytes | None]) -> bytes | None:
        values = self._values
        changed = False
        out = list(fields)
        for i, field in enumerate(fields):
            if field is None:
                continue
            masked = values.binary_desc(field, self._descs[i], whole=self._whole[i])
            if masked is UNCHANGED:
                continue
            changed = True
            out[i] = masked if isinstance(masked, bytes) else None
        if not changed:
            return None
        self.masked_rows += 1
        parts = [_I16.pack(len(out))]
        append_fields(parts, out)
        return b"".join(parts)
