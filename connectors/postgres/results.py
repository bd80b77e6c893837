"""Result sets flowing back to the agent: masked row by row, and kept (capped) for the recording.

Unchanged rows are forwarded as the bytes they came in; only a row with something to hide is
rebuilt. Text values are masked in place with the documented replacement; binary values are
NULLed when they must be hidden (see ``binary.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.errors import ProtocolError
from gateway.masking import Masker, RowMasker

from .backend import FieldDescription, data_row, decode_backend
from .binary import HARMLESS, NUMERIC, TEXT_LIKE, number_text


def _row_masker(masker: Masker, names: tuple[str, ...]) -> RowMasker:
    """RowMaskers are pure functions of (masker, names): reuse them across the many results of
    the same query shape instead of matching every column name against every glob again."""
    key = (masker, names)  # the masker itself is the key (identity hash), never a reused id()
    found = _ROW_MASKERS.get(key)
    if found is None:
        found = masker.for_columns(names)
        if len(_ROW_MASKERS) >= 4096:
            _ROW_MASKERS.clear()
        _ROW_MASKERS[key] = found
    return found


_ROW_MASKERS: dict[tuple[Masker, tuple[str, ...]], RowMasker] = {}


def _recorded(value: bytes | None, binary: bool) -> Any:
    if value is None:
        return None
    if binary:
        return bytes(value)
    return str(value, "utf-8", "replace")


class ResultSet:
    """One result: a RowDescription (or what a Bind/Describe told us), then rows, then a tag."""

    __slots__ = (
        "_needs_scan",
        "any_binary",
        "binary",
        "cap",
        "masked_rows",
        "masker",
        "names",
        "nulled_values",
        "row_count",
        "row_masker",
        "rows",
        "types",
    )

    def __init__(
        self,
        masker: Masker,
        fields: Sequence[FieldDescription] | None,
        result_formats: Sequence[int] | None,
        cap: int,
    ) -> None:
        self.masker = masker
        self.cap = cap
        self.rows: list[list[Any]] = []
        self.row_count = 0
        self.masked_rows = 0
        self.nulled_values = 0
        if fields is None:
            self.names: tuple[str, ...] | None = None
            self.types: tuple[int, ...] = ()
            self.binary: tuple[bool, ...] = ()
        else:
            self.names = tuple(f.name for f in fields)
            self.types = tuple(f.type_oid for f in fields)
            if result_formats is None:  # simple query / Describe portal: the description is right
                self.binary = tuple(f.format == 1 for f in fields)
            elif not result_formats:
                self.binary = (False,) * len(fields)
            elif len(result_formats) == 1:
                self.binary = (result_formats[0] == 1,) * len(fields)
            else:
                self.binary = tuple(f == 1 for f in result_formats)
        self.any_binary = any(self.binary)
        self.row_masker: RowMasker | None = (
            _row_masker(masker, self.names) if self.names is not None else None
        )
        self._needs_scan = bool(masker.detectors) or (
            self.row_masker is not None and any(self.row_masker.masked_columns)
        )

    @property
    def columns(self) -> list[str]:
        return list(self.names or ())

    def mask_row(self, body: bytes, raw: bytes) -> bytes:
        """The bytes to send for one DataRow ('D') message."""
        self.row_count += 1
        keep = len(self.rows) < self.cap
        if not self._needs_scan and not keep:
            return raw
        values = decode_backend(b"D", body, raw).values  # type: ignore[attr-defined]
        if self.row_masker is None or len(values) != len(self.row_masker.names):
            if self.names is not None:
                raise ProtocolError(
                    f"the target sent a row of {len(values)} values for {len(self.names)} columns",
                    sqlstate="08P01",
                )
            # No description seen for this result (a client that never described it): names
            # unknown, so scan every value as text and NULL whatever cannot be scanned.
            self.names = tuple("?" for _ in values)
            self.types = (0,) * len(values)
            self.binary = (False,) * len(values)
            self.row_masker = _row_masker(self.masker, self.names)
        new = self._mask(values)
        out_values = values if new is None else new
        if new is not None:
            self.masked_rows += 1
        if keep:
            self.rows.append(
                [_recorded(v, b) for v, b in zip(out_values, self.binary, strict=False)]
            )
        return raw if new is None else data_row(out_values)

    def _mask(self, values: Sequence[bytes | None]) -> list[bytes | None] | None:
        assert self.row_masker is not None
        if not self.any_binary:
            return self.row_masker.mask_text_values(values)
        # Mixed formats: text columns masked in place, binary ones NULLed when they must hide.
        text_values = [None if b else v for v, b in zip(values, self.binary, strict=True)]
        masked = self.row_masker.mask_text_values(text_values)
        out: list[bytes | None] | None = None
        if masked is not None:
            out = list(values)
            for i, b in enumerate(self.binary):
                if not b:
                    out[i] = masked[i]
        for i, b in enumerate(self.binary):
            if not b or values[i] is None:
                continue
            if self._binary_must_hide(i, values[i]):  # type: ignore[arg-type]
                if out is None:
                    out = list(values)
                out[i] = None
                self.nulled_values += 1
        return out

    def _binary_must_hide(self, index: int, value: bytes) -> bool:
        assert self.row_masker is not None
        if self.row_masker.masked_columns[index]:
            return True
        if not self.masker.detectors:
            return False
        oid = self.types[index] if index < len(self.types) else 0
        if oid in HARMLESS:
            return False
        if oid in NUMERIC:
            text = number_text(oid, value)
        elif oid in TEXT_LIKE:
            try:
                text = str(value[1:] if oid == 3802 else value, "utf-8")
            except UnicodeDecodeError:
                return True
        else:
            return True  # opaque (arrays, composites, user types): cannot be scanned
        if text is None:
            return True
        return self.masker.mask_text(text) is not text

    def add_copy_line(self, line: str, *, masked: bool) -> None:
        """Account for one COPY ... TO STDOUT line (already masked) sent to the client."""
        self.row_count += 1
        if masked:
            self.masked_rows += 1
        if len(self.rows) < self.cap:
            self.rows.append([line.rstrip("\n")])

    def summary(self, tag: str | None) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "row_count": self.row_count,
            "rows_recorded": len(self.rows),
            "row_cap": self.cap,
            "masked_rows": self.masked_rows,
            "nulled_binary_values": self.nulled_values,
            "tag": tag,
        }
