"""Card numbers: issuer ranges, lengths, Luhn, and the context that says a digit run is
something else. See docs/masking.md, "credit_card"."""

from __future__ import annotations

import re
from collections import deque

from gateway.masking.findings import _CARD_SHAPE, Finding, _shape

# Luhn over the ASCII bytes: every second digit from the right is doubled (translate maps its
# byte to the byte of the doubled digit's digit sum) and sum() of a bytes object runs in C, so
# the check has no Python-level loop.
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_ok(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check."""
    raw = digits.encode()
    return (sum(raw[-1::-2]) + sum(raw[-2::-2].translate(_LUHN_DOUBLED)) - 48 * len(raw)) % 10 == 0


# --- credit cards ------------------------------------------------------------------------------

_LEN_13_19 = (13, 14, 15, 16, 17, 18, 19)
_LEN_14_19 = (14, 15, 16, 17, 18, 19)
_LEN_16_19 = (16, 17, 18, 19)

#: (network, first IIN, last IIN, lengths it issues). "2221"-"2720" covers every number whose
#: first four digits lie in that range. These are the ranges the networks publish for ISO/IEC
#: 7812 numbers; docs/masking.md lists the same rows with the reason for each choice. A number
#: no row admits is not a card, whatever its checksum: that is what keeps ids, amounts and
#: timestamps that happen to pass Luhn (one in ten) from being masked.
CARD_NETWORKS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    ("Visa", "4", "4", (13, 16, 19)),
    ("Mastercard", "51", "55", (16,)),
    ("Mastercard", "2221", "2720", (16,)),
    ("American Express", "34", "34", (15,)),
    ("American Express", "37", "37", (15,)),
    ("Discover", "6011", "6011", _LEN_16_19),
    ("Discover", "622126", "622925", _LEN_16_19),
    ("Discover", "644", "649", _LEN_16_19),
    ("Discover", "65", "65", _LEN_16_19),
    ("UnionPay", "62", "62", _LEN_16_19),
    ("JCB", "3528", "3589", _LEN_16_19),
    ("Diners Club", "300", "305", _LEN_14_19),
    ("Diners Club", "3095", "3095", _LEN_14_19),
    ("Diners Club", "36", "36", _LEN_14_19),
    ("Diners Club", "38", "39", _LEN_14_19),
    ("Maestro", "5018", "5018", _LEN_13_19),
    ("Maestro", "5020", "5020", _LEN_13_19),
    ("Maestro", "5038", "5038", _LEN_13_19),
    ("Maestro", "5893", "5893", _LEN_13_19),
    ("Maestro", "6304", "6304", _LEN_13_19),
    ("Maestro", "67", "67", _LEN_13_19),
    ("Mir", "2200", "2204", _LEN_16_19),
    ("RuPay", "60", "60", (16,)),
    ("RuPay", "508", "508", (16,)),
    ("RuPay", "81", "82", (16,)),
    ("Hipercard", "606282", "606282", (16, 19)),
    ("Maestro", "60", "60", _LEN_16_19),
    ("Elo", "504175", "504175", (16,)),
    ("Elo", "506699", "506778", (16,)),
    ("Elo", "509000", "509999", (16,)),
    ("Elo", "636297", "636297", (16,)),
    ("Elo", "636368", "636368", (16,)),
    ("Verve", "506099", "506198", (16, 18, 19)),
    ("Verve", "507865", "507964", (16, 18, 19)),
    ("Dankort", "5019", "5019", (16,)),
    ("BORICA", "2205", "2205", (16,)),
    ("Uzcard", "8600", "8600", (16,)),
    ("Humo", "9860", "9860", (16,)),
    ("Napas", "9704", "9704", (16, 19)),
    ("Troy", "9792", "9792", (16,)),
)


def _index_networks() -> dict[str, tuple[tuple[str, str, str, frozenset[int]], ...]]:
    """CARD_NETWORKS keyed by the first two digits, ranges widened to six digits."""
    index: dict[str, list[tuple[str, str, str, frozenset[int]]]] = {}
    for network, first, last, lengths in CARD_NETWORKS:
        row = (network, first.ljust(6, "0"), last.ljust(6, "9"), frozenset(lengths))
        for head in range(int(first.ljust(2, "0")[:2]), int(last.ljust(2, "9")[:2]) + 1):
            index.setdefault(f"{head:02d}", []).append(row)
    return {head: tuple(rows) for head, rows in index.items()}


_NETWORKS_BY_HEAD = _index_networks()


def card_network(digits: str) -> str | None:
    """The network whose IIN range and lengths admit ``digits`` (13-19 ASCII digits), or None.

    Only the range and the length are checked, not the Luhn digit.
    """
    rows = _NETWORKS_BY_HEAD.get(digits[:2])
    if rows is not None:
        # Six-digit strings compare as the numbers they spell: no int() needed.
        iin = digits[:6]
        size = len(digits)
        for network, low, high, lengths in rows:
            if low <= iin <= high and size in lengths:
                return network
    return None


def _gtin13_ok(digits: str) -> bool:
    """True when 13 ASCII digits carry a valid EAN-13/GTIN-13 check digit (weights 1, 3, 1 ...)."""
    raw = digits.encode()
    return (sum(raw[0::2]) + 3 * sum(raw[1::2]) - 48 * (7 + 3 * 6)) % 10 == 0


# A maximal stretch of ASCII digits, spaces and dashes, starting with a digit and at least 13
# characters long: a superset of every written card, split into digit groups in Python. A single
# character class repeated possessively runs in the regex engine's fast C loop and never
# backtracks (a pattern spelling out "digit, optional separator" twelve times costs ~100 ns per
# repetition, as much as all the rest of a scan). The pattern starts with a character class, so
# the search skips other characters at memchr-like speed, and a match never starts mid-stretch:
# finditer resumes after the previous stretch.
_CARD_STRETCH = re.compile(r"[0-9][0-9 -]{12,}+")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_MAX_WINDOW_GROUPS = 5  # 4-4-4-4-3
_ASCII_DIGITS = frozenset("0123456789")
_HEX_LETTERS = frozenset("abcdefABCDEF")
_HEX_CHARS = _ASCII_DIGITS | _HEX_LETTERS
_HEX_TOKEN = 20  # longer than any card: a hash, an ObjectId, a dashless UUID
_E164_DIGITS = 15  # the longest international phone number
# What joins the digits of one number: a decimal point, an exponent marker, an exponent's sign.
_MARKS_BEFORE = frozenset(".eE+-")
_MARKS_AFTER = frozenset(".eE")


class CreditCardDetector:
    """Payment card numbers: Luhn-valid numbers of a length some network issues in its IIN range.

    A candidate is written as cards are written: one run of 13-19 digits that touches no other
    digit, or 4-digit groups joined by single spaces or dashes in the groupings printed on cards
    (4-4-4-4 and 4-4-4-1..4 or 4-4-4-4-1..3 for 13-19 digits, 4-6-5 for American Express, 4-6-4
    for Diners Club). A digit group is never split, so a 13-19 digit window of a longer number is
    not a card. Then the number must lie in a range of :data:`CARD_NETWORKS` with one of the
    lengths that network issues, must not be one digit repeated, and must pass Luhn. Finally its
    context must not say it is another kind of number:

    - digits glued to a decimal point or an exponent marker that has a digit on its other side
      are part of a decimal number (``1.0000000000000000``, ``0.4111111111111111``,
      ``4111111111111111.5``, ``4.111111111111111e+15``, ``1E+4111111111111111``): a card is
      never written with a decimal point or an exponent;
    - up to 15 digits right after ``+`` are an E.164 phone number (``+4915112345678``);
    - digits glued to hex letters in a token of 20 or more hex characters belong to a hash or
      an identifier (``e3b0c44298fc1c149afbf4c8996fb924...``);
    - a 13-digit number (a length Visa and Maestro no longer issue) that carries a valid EAN-13
      check digit is a product barcode.

    Every window that passes is reported; the masker merges overlapping ones, so an ambiguous
    run is masked in full rather than guessed at. Replacement: ``****-****-****-1111``.
    """

    name = "credit_card"
    min_length = 13  # 13 digits

    def scan(self, text: str) -> list[Finding]:
        if len(text) < 13 or _shape(text).translate(None, b" -").find(_CARD_SHAPE) < 0:
            return []
        found: list[Finding] = []
        for stretch in _CARD_STRETCH.finditer(text):
            chars = stretch.group()
            if chars.isdigit():  # no separator: the common shape, and the only one of ids
                if len(chars) <= 19:
                    self._check(text, stretch.start(), stretch.end(), chars, found)
            else:
                self._scan_groups(text, stretch.start(), stretch.end(), found)
        return found

    def _scan_groups(self, text: str, start: int, end: int, found: list[Finding]) -> None:
        """Check the windows of the digit groups in ``text[start:end]``.

        Groups form a run while they are joined by exactly one space or dash. A window spans at
        most 5 groups, so a sliding buffer of 5 keeps memory bounded on a hostile stretch such
        as ten million "1 " pairs.
        """
        upcoming: deque[tuple[int, int]] = deque(maxlen=_MAX_WINDOW_GROUPS)
        previous_end = -1
        for group in _DIGIT_GROUP.finditer(text, start, end):
            span = group.span()
            if span[0] - previous_end != 1:  # two separators in a row end the run
                while upcoming:
                    self._windows_from(text, upcoming, found)
                    upcoming.popleft()
            elif len(upcoming) == _MAX_WINDOW_GROUPS:
                self._windows_from(text, upcoming, found)
            upcoming.append(span)  # drops upcoming[0] when full
            previous_end = span[1]
        while upcoming:
            self._windows_from(text, upcoming, found)
            upcoming.popleft()

    def _windows_from(
        self, text: str, groups: deque[tuple[int, int]], found: list[Finding]
    ) -> None:
        """Check every candidate window that starts at ``groups[0]``."""
        start, end = groups[0]
        size = end - start
        if 13 <= size <= 19:
            self._check(text, start, end, text[start:end], found)
            return
        if size != 4 or len(groups) < 3:
            return
        sizes = [e - s for s, e in groups]
        if sizes[1] == 6:
            if sizes[2] in (4, 5):  # 4-6-4, 4-6-5
                self._check_groups(text, [groups[0], groups[1], groups[2]], found)
            return
        if len(groups) < 4 or sizes[1] != 4 or sizes[2] != 4:
            return
        if 1 <= sizes[3] <= 4:  # 4-4-4-1 ... 4-4-4-4
            self._check_groups(text, [groups[0], groups[1], groups[2], groups[3]], found)
        if sizes[3] == 4 and len(groups) == 5 and 1 <= sizes[4] <= 3:  # 4-4-4-4-1 ... -3
            self._check_groups(text, list(groups), found)

    def _check_groups(self, text: str, window: list[tuple[int, int]], found: list[Finding]) -> None:
        digits = "".join(text[s:e] for s, e in window)
        self._check(text, window[0][0], window[-1][1], digits, found)

    def _check(self, text: str, start: int, end: int, digits: str, found: list[Finding]) -> None:
        # Cheapest and most selective first: most candidates are in no network's range.
        if card_network(digits) is None or digits.count(digits[0]) == len(digits):
            return
        if len(digits) == 13 and _gtin13_ok(digits):
            return
        if not luhn_ok(digits) or _other_number_around(text, start, end, len(digits)):
            return
        found.append(Finding(start, end, f"****-****-****-{digits[-4:]}", self.name))


def _other_number_around(text: str, start: int, end: int, digit_count: int) -> bool:
    """True when the context of ``text[start:end]`` says it is part of another kind of number."""
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    # A decimal point or an exponent marker with a digit on its other side: "1.0000000000000000",
    # "4111111111111111.5", "1e-4111111111111111", "4111111111111111E+3". (An exponent's sign
    # may sit between; the sign of a plain number, "-4111...", is no such mark.)
    if before in _MARKS_BEFORE and _digit_before_mark(text, start - 1):
        return True
    if after in _MARKS_AFTER and _digit_after_mark(text, end):
        return True
    if before == "+" and digit_count <= _E164_DIGITS:
        return True
    if before in _HEX_LETTERS or after in _HEX_LETTERS:
        # Only whether the token reaches _HEX_TOKEN matters, so look no further than that: a
        # hostile megabyte of hex around many candidates stays linear.
        left = start
        while left > 0 and start - left < _HEX_TOKEN and text[left - 1] in _HEX_CHARS:
            left -= 1
        right = end
        while right < len(text) and right - end < _HEX_TOKEN and text[right] in _HEX_CHARS:
            right += 1
        return right - left >= _HEX_TOKEN
    return False


def _digit_before_mark(text: str, mark: int) -> bool:
    """Does a digit precede the mark at ``mark`` (".", "e", or the sign of an exponent)?"""
    if text[mark] in "+-":
        mark -= 1
        if mark < 0 or text[mark] not in "eE":
            return False
    return mark > 0 and text[mark - 1] in _ASCII_DIGITS


def _digit_after_mark(text: str, mark: int) -> bool:
    """Does a digit follow the mark at ``mark`` ("." or "e"; an "e" may take a sign first)?"""
    pos = mark + 1
    if text[mark] != "." and pos < len(text) and text[pos] in "+-":
        pos += 1
    return pos < len(text) and text[pos] in _ASCII_DIGITS
