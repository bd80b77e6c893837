"""Apply detectors to values: :class:`Masker` for one text, :class:`RowMasker` for result rows.

Connectors call these on everything that flows back to a client. The design goal is that the
common case, a value with nothing sensitive in it, costs a few detector pre-checks and nothing
else: ``mask_text`` returns the very object it was given (callers test with ``is``), and
``RowMasker`` returns ``None`` for a row it did not change, so a connector forwards the original
bytes untouched (rebuilding only the messages that changed, as the style guide asks).

Failure is closed: a detector that raises, or returns a finding outside the text, gets the whole
value replaced by ``****``; an undecodable text value is replaced by ``****``; an unscannable binary
value is NULLed.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from gateway.errors import ProtocolError
from gateway.masking.detectors import Detector, Finding

__all__ = ["MASK", "Masker", "RowMasker"]

#: What a column-masked value (and a value masked whole because scanning failed) becomes.
MASK = "****"

_log = logging.getLogger(__name__)


class Masker:
    """Masks sensitive parts of text with a set of detectors, and whole columns by name.

    ``column_globs`` are case-insensitive shell globs (``*password*``, ``*ssn*``) matched against
    result column names.
    """

    __slots__ = ("_column_re", "_detectors", "_failed", "_scans", "column_globs")

    def __init__(self, detectors: Sequence[Detector], column_globs: Sequence[str] = ()) -> None:
        self._detectors: tuple[Detector, ...] = tuple(detectors)
        # Bound methods looked up once: mask_text is the hottest loop in the gateway. Sorted by
        # the optional ``min_length`` so the loop stops at the first detector the text is too
        # short for: a cell like "42" or "Alice" costs no detector call at all. (Order does not
        # change results: ties between findings are broken by detector name.)
        self._scans: tuple[tuple[int, Callable[[str], list[Finding]]], ...] = tuple(
            (_min_length(d), d.scan) for d in sorted(self._detectors, key=_min_length)
        )
        self.column_globs: tuple[str, ...] = tuple(column_globs)
        # One compiled alternation instead of a loop of fnmatch calls per column.
        self._column_re: re.Pattern[str] | None = (
            re.compile(
                "|".join(f"(?:{fnmatch.translate(g)})" for g in self.column_globs), re.IGNORECASE
            )
            if self.column_globs
            else None
        )
        self._failed: set[str] = set()

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self._detectors

    def column_is_masked(self, column_name: str) -> bool:
        """True when ``column_name`` matches one of the column globs (case-insensitive)."""
        return self._column_re is not None and self._column_re.match(column_name) is not None

    def for_columns(self, names: Sequence[str]) -> RowMasker:
        """A row masker for a result whose columns are ``names``, in order."""
        return RowMasker(self, names)

    def mask_text(self, text: str) -> str:
        """``text`` with every finding replaced; the same object when nothing was found.

        Overlapping findings are merged: the one that starts first (the longest, on a tie; then
        by detector name) gives the replacement, and the replaced span is stretched to cover every
        finding that overlaps it, so no part of any finding survives.
        """
        findings: list[Finding] | None = None
        size = len(text)
        for min_length, scan in self._scans:
            if size < min_length:
                break
            try:
                found = scan(text)
            except Exception:  # noqa: BLE001 - any failure of a (plugin) detector fails closed
                return self._scan_failed(scan)
            if found:
                if findings is None:
                    findings = list(found)
                else:
                    findings.extend(found)
        if findings is None:
            return text
        try:
            return _apply(text, findings)
        except (AttributeError, TypeError, ValueError):
            return self._scan_failed(None)

    def _scan_failed(self, scan: Callable[[str], list[Finding]] | None) -> str:
        """Fail closed: the value is masked whole. Logged once per detector, not per value."""
        where = next(
            (f"detector {d.name!r}" for d in self._detectors if d.scan == scan),
            "merging findings (a detector returned a malformed finding)",
        )
        if where not in self._failed:
            self._failed.add(where)
            _log.error(
                "masking failed in %s; affected values are masked whole", where, exc_info=True
            )
        return MASK


def _min_length(detector: Detector) -> int:
    """The detector's optional ``min_length``; 0 (always scan) when absent or not a sane int."""
    value = getattr(detector, "min_length", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _apply(text: str, findings: list[Finding]) -> str:
    """Replace merged findings in ``text``; ``text`` itself if every replacement is a no-op."""
    size = len(text)
    # Ties (same span from two detectors) are broken by detector name so the output does not
    # depend on the order detectors were configured in.
    findings.sort(key=lambda f: (f.start, -f.end, f.detector))
    parts: list[str] = []
    pos = 0
    changed = False
    i = 0
    count = len(findings)
    while i < count:
        winner = findings[i]
        start, end = winner.start, winner.end
        if start < 0 or end > size or start >= end or not isinstance(winner.replacement, str):
            raise ValueError(f"detector {winner.detector!r} returned a finding outside the text")
        i += 1
        while i < count and findings[i].start < end:
            end = max(end, findings[i].end)
            i += 1
        if end > size:
            raise ValueError("a finding ends outside the text")
        if not changed and winner.replacement != text[start:end]:
            changed = True
        parts.append(text[pos:start])
        parts.append(winner.replacement)
        pos = end
    if not changed:
        # Already-masked text (e.g. "password=****") must stay the same object: callers rely on
        # identity to skip re-encoding.
        return text
    parts.append(text[pos:])
    return "".join(parts)


@lru_cache(maxsize=32)
def _mask_bytes(encoding: str) -> bytes:
    # "****" in the row's own encoding: b"****" would be wrong for UTF-16 and friends.
    return MASK.encode(encoding)


class RowMasker:
    """Masks the values of result rows whose column names are known.

    Built by :meth:`Masker.for_columns` once per result set (a RowDescription, a MySQL column
    definition list), then called per row.
    """

    __slots__ = ("_masker", "masked_columns", "names")

    def __init__(self, masker: Masker, names: Sequence[str]) -> None:
        self._masker = masker
        self.names: tuple[str, ...] = tuple(names)
        #: Index-aligned: True where the column name matches a column glob.
        self.masked_columns: tuple[bool, ...] = tuple(masker.column_is_masked(n) for n in names)

    @property
    def binary_null_columns(self) -> tuple[int, ...]:
        """Indexes of the columns that are NULLed whatever their content in binary format."""
        return tuple(i for i, masked in enumerate(self.masked_columns) if masked)

    def _check_width(self, values: Sequence[object]) -> None:
        # A row wider or narrower than its description is a hostile or broken backend: a value
        # without a column name cannot be column-masked, so refuse the row (HOSTILE C.16).
        if len(values) != len(self.masked_columns):
            raise ProtocolError(
                f"row has {len(values)} values but the result describes "
                f"{len(self.masked_columns)} columns"
            )

    def mask_text_values(
        self, values: Sequence[bytes | None], *, encoding: str = "utf-8"
    ) -> list[bytes | None] | None:
        """Mask one row of text-format values; ``None`` when nothing changed.

        Column-masked values become ``****`` (NULL stays NULL). Other values are decoded with
        ``encoding`` and scanned; a value that does not decode is replaced by ``****`` because
        it cannot be scanned (fail closed).
        """
        self._check_width(values)
        mask_text = self._masker.mask_text
        masked_columns = self.masked_columns
        out: list[bytes | None] | None = None
        for i, raw in enumerate(values):
            if raw is None:
                continue
            new: bytes
            if masked_columns[i]:
                new = _mask_bytes(encoding)
                if raw == new:
                    continue
            else:
                try:
                    # str(buffer, encoding) also accepts memoryview/bytearray slices of a frame.
                    text = str(raw, encoding)
                except UnicodeDecodeError:
                    new = _mask_bytes(encoding)
                else:
                    masked = mask_text(text)
                    if masked is text:
                        continue
                    # "replace": a plugin's replacement the encoding cannot hold must not raise.
                    new = masked.encode(encoding, "replace")
            if out is None:
                out = list(values)
            out[i] = new
        return out

    def mask_binary_values(
        self, values: Sequence[bytes | None], scan_columns: Sequence[bool]
    ) -> list[bytes | None] | None:
        """Mask one row of binary-format values by NULLing; ``None`` when nothing changed.

        Binary values cannot be masked in place (a masked card is no longer an int8), so a value
        is replaced by NULL when its column is column-masked, or when ``scan_columns[i]`` is True
        and the value either is not valid UTF-8 or holds a finding. The caller decides per type
        which columns to scan: text-like types (text, varchar, json, bytea holding text) should
        be; a numeric type should be converted to text and passed to ``Masker.mask_text``, or
        treated as masked.
        """
        self._check_width(values)
        if len(scan_columns) != len(values):
            raise ValueError(f"scan_columns has {len(scan_columns)} flags for {len(values)} values")
        mask_text = self._masker.mask_text
        out: list[bytes | None] | None = None
        for i, raw in enumerate(values):
            if raw is None:
                continue
            if not self.masked_columns[i]:
                if not scan_columns[i]:
                    continue
                try:
                    text = str(raw, "utf-8")
                except UnicodeDecodeError:
                    pass  # unscannable: NULL it
                else:
                    if mask_text(text) is text:
                        continue
            if out is None:
                out = list(values)
            out[i] = None
        return out
