"""What every detector speaks (``Finding``, ``Detector``) and the byte-level "shape" pre-check
the digit detectors share. See detectors.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Finding:
    """A span ``text[start:end]`` to be replaced by ``replacement``, found by ``detector``."""

    start: int
    end: int
    replacement: str
    detector: str

    def __post_init__(self) -> None:
        # A malformed finding would make the masker cut the text wrongly; refuse it at the source.
        if not 0 <= self.start < self.end:
            raise ValueError(f"finding span [{self.start}, {self.end}) is empty or negative")


@runtime_checkable
class Detector(Protocol):
    """Anything with a ``name`` and a ``scan`` method; plugins return these from
    ``wardgate_detectors``.

    ``scan`` must be cheap on text holding nothing sensitive, must not keep state between calls
    and must return findings whose spans lie inside ``text`` (they may overlap: the masker merges).

    A detector may also define an ``int`` attribute ``min_length``: the masker then never calls
    ``scan`` on shorter text (it is optional, so it is not part of this protocol's checks).
    """

    name: str

    def scan(self, text: str) -> list[Finding]: ...


# --- shared helpers ----------------------------------------------------------------------------

# The card, SSN and IBAN pre-checks look at the "shape" of a value: its UTF-8 bytes with every
# ASCII digit mapped to "0" and every ASCII letter to "a" (bytes.translate runs in C at about a
# nanosecond per byte). Then "000-00-0000" in shape is an exact pre-check for an SSN, "aa00" for
# an IBAN head, and thirteen "0" in a row, once spaces and dashes are deleted, for a card. Dates,
# UUIDs and amounts, the common values that hold many digits, fail these without any regex.
_SHAPE_TABLE = bytes.maketrans(
    b"123456789ABCDEFGHIJKLMNOPQRSTUVWXYZbcdefghijklmnopqrstuvwxyz",
    b"000000000" + b"a" * 51,
)
_CARD_SHAPE = b"0" * 13
_SSN_SHAPE = b"000-00-0000"
_IBAN_SHAPE = b"aa00"

# The three detectors see the same value one after another: a one-entry memo keyed by identity
# computes the shape once. It is one tuple, so readers never see a half-updated entry.
_shape_memo: tuple[str, bytes] = ("", b"")


def _shape(text: str) -> bytes:
    """The shape of ``text``; see _SHAPE_TABLE."""
    global _shape_memo
    memo = _shape_memo
    if memo[0] is text:
        return memo[1]
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # lone surrogates, e.g. from a JSON "\ud800" escape
        raw = text.encode("utf-8", "surrogatepass")
    shape = raw.translate(_SHAPE_TABLE)
    _shape_memo = (text, shape)
    return shape


# Note for the pre-checks below: bytes.find, not "in": bytes.__contains__ first tries the
# argument as an int and swallows a TypeError, which costs more than the search itself.
