"""Result sets flowing back to the agent: masked row by row, and kept (capped) for the recording.

Unchanged rows are forwarded as the bytes they came in; only a row with something to hide is
rebuilt. Each value is masked by its column's type, in text or binary format (see values.py):
text inline, numbers and unreadable values NULLed when they hold a finding, containers element
by element. A clean text row costs a few detector pre-checks per text value and nothing for
numbers-free harmless columns (dates, uuids, booleans).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.errors import ProtocolError
from gateway.masking import Masker, RowMasker

from .backend import FieldDescription, data_row, decode_backend
from .pgtypes import Kind, TypeDesc, TypeRegistry
from .values import MASK_BYTES, UNCHANGED, ValueMasker

#: Shared by result sets whose caller has no registry of its own: builtin types only, so every
#: user type is opaque (fail closed).
BUILTIN_TYPES = TypeRegistry()
_OPAQUE = TypeDesc(Kind.OPAQUE)
_NOT_SCANNED = (Kind.HARMLESS, Kind.BOOL)


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


_NO_GLOBS = Masker(())  # a masker whose RowMasker hides no column by its name
_ROW_MASKERS: dict[tuple[Masker, tuple[str, ...]], RowMasker] = {}


def _recorded(value: bytes | None, binary: bool) -> Any:
    if value is None:
        return None
    if binary:
        return bytes(value)
    return str(value, "utf-8", "replace")


class ResultSet:
    """One result: a RowDescription (or what a Bind/Describe told us), then rows, then a tag.

    ``registry`` describes the target database's types (builtin only when omitted: user types
    are then opaque). ``column_masks`` hides the flagged positions whole whatever their names
    (a column derived from a configured sensitive column).
    """

    __slots__ = (
        "_needs_scan",
        "_plan",
        "_values",
        "any_binary",
        "binary",
        "cap",
        "column_masks",
        "masked_rows",
        "masker",
        "names",
        "nulled_binary",
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
        *,
        registry: TypeRegistry | None = None,
        column_masks: Sequence[bool] | None = None,
        by_name: bool = True,
    ) -> None:
        self.masker = masker
        self.cap = cap
        self.rows: list[list[Any]] = []
        self.row_count = 0
        self.masked_rows = 0
        self.nulled_values = 0
        self.nulled_binary = 0
        self.column_masks: tuple[bool, ...] = tuple(column_masks or ())
        self._values = ValueMasker(registry or BUILTIN_TYPES, masker)
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
        # By name only where lineage says nothing (column_masks then carries what it says).
        self.row_masker: RowMasker | None = (
            _row_masker(masker, self.names) if self.names is not None and by_name
            else _row_masker(_NO_GLOBS, self.names) if self.names is not None else None
        )
        self._plan: tuple[tuple[int, bool, bool, TypeDesc, bool], ...] = ()
        self._needs_scan = False
        self._make_plan()

    def _make_plan(self) -> None:
        """The columns a row's masking must look at: (index, binary, hide whole, type, hot),
        ``hot`` for text scanned in place. Text-format values of unscanned types (dates, uuids,
        booleans) are left out: they cost nothing per row."""
        masked = self.row_masker.masked_columns if self.row_masker is not None else ()
        plan = []
        for i, oid in enumerate(self.types):
            whole = (i < len(masked) and masked[i]) or (
                i < len(self.column_masks) and self.column_masks[i]
            )
            binary = i < len(self.binary) and self.binary[i]
            desc = self._values.describe(oid)
            if desc.kind in _NOT_SCANNED and not whole and not binary:
                continue
            plan.append((i, binary, whole, desc, desc.kind is Kind.TEXT and not whole))
        self._plan = tuple(plan)
        self._needs_scan = bool(plan) and (
            bool(self.masker.detectors) or any(p[2] for p in plan)
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
        if self.names is None or len(values) != len(self.names):
            if self.names is not None:
                raise ProtocolError(
                    f"the target sent a row of {len(values)} values for {len(self.names)} columns",
                    sqlstate="08P01",
                )
            # No description seen for this result (a client that never described it): names
            # and types unknown, so every value is opaque text: a finding NULLs it.
            self.names = tuple("?" for _ in values)
            self.types = (0,) * len(values)
            self.binary = (False,) * len(values)
            self.row_masker = _row_masker(self.masker, self.names)
            self._make_plan()
        new = self._mask(values) if self._needs_scan else None
        out_values = values if new is None else new
        if new is not None:
            self.masked_rows += 1
        if keep:
            self.rows.append(
                [_recorded(v, b) for v, b in zip(out_values, self.binary, strict=False)]
            )
        return raw if new is None else data_row(out_values)

    def _mask(self, values: Sequence[bytes | None]) -> list[bytes | None] | None:
        mask_text = self.masker.mask_text
        typed = self._values
        out: list[bytes | None] | None = None
        for i, binary, whole, desc, hot in self._plan:
            raw = values[i]
            if raw is None:
                continue
            new: bytes | None
            if hot:
                # The hot path, as the text-only masker had it: text (binary text is the same
                # bytes) scanned in place, forwarded untouched when clean.
                try:
                    text = str(raw, "utf-8")
                except UnicodeDecodeError:
                    new = MASK_BYTES  # cannot be scanned: hidden whole (fail closed)
                else:
                    masked = mask_text(text)
                    if masked is text:
                        continue
                    new = masked.encode("utf-8", "replace")
            else:
                result = (
                    typed.binary_desc(raw, desc, whole=whole)
                    if binary
                    else typed.text_desc(raw, desc, whole=whole)
                )
                if result is UNCHANGED:
                    continue
                new = result  # type: ignore[assignment]
                if new is None:
                    self.nulled_values += 1
                    if binary:
                        self.nulled_binary += 1
            if out is None:
                out = list(values)
            out[i] = new
        return out

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
            "nulled_values": self.nulled_values,
            "nulled_binary_values": self.nulled_binary,
            "tag": tag,
        }
