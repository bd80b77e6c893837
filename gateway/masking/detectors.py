"""The built-in masking detectors and the two types every detector speaks: ``Finding`` and ``Detector``.

A detector looks at one decoded value and returns where the sensitive parts are and what to put in
their place. It never rewrites the text itself: the :class:`~gateway.masking.masker.Masker` merges
the findings of all detectors, so two detectors that both match one span cannot produce garbage.

Every detector is called on every value that flows back to a client, and almost all values hold
nothing sensitive. So each ``scan`` starts with a pre-check that costs a few hundred nanoseconds
(one-character ``in`` tests, which run at memchr speed, and a byte-level "shape" of the value
shared by the digit detectors) and only then runs a regex.
The regexes are written so that none of them can backtrack catastrophically: quantifiers are
bounded or possessive, and the two patterns that could rescan a long run from every start position
(email, JWT) are driven by hand so that every character is looked at a bounded number of times.

Replacements are plain ASCII (see docs/masking.md) so they survive every client encoding.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "CARD_NETWORKS",
    "CreditCardDetector",
    "Detector",
    "EmailDetector",
    "Finding",
    "IbanDetector",
    "SecretsDetector",
    "UsSsnDetector",
    "builtin_detectors",
    "card_network",
]


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


# --- US social security numbers ---------------------------------------------------------------

# AAA-GG-SSSS with dashes only. Shapes around it that say it is part of something else are
# refused: a digit or a digit and a dash on either side ("1-123-45-6789-0" is one longer dashed
# number), a digit and a decimal point on either side ("123-45-6789.25" is arithmetic), and a
# leading "+" (an international phone number). The lookbehinds come after the first digit so the
# pattern starts with a character class (fast skip, see _CARD_STRETCH). Never-issued numbers
# (area 000, 666, 9xx, group 00, serial 0000) are filtered in Python.
_SSN = re.compile(
    r"[0-9](?<![0-9]{2})(?<![0-9][-.][0-9])(?<!\+[0-9])"
    r"([0-9]{2})-([0-9]{2})-([0-9]{4})(?![0-9])(?![-.][0-9])"
)


class UsSsnDetector:
    """US social security numbers in the dashed form ``AAA-GG-SSSS``.

    Numbers the SSA never issues are skipped: area 000, 666 and 900-999 (the 9xx areas are
    ITINs and test numbers), group 00 and serial 0000; so is the shape inside a longer dashed
    number or digit run, glued to a decimal number, or after a "+" (see _SSN). The unseparated
    9-digit form is deliberately not matched: any 9-digit number (order ids, amounts in cents,
    phone numbers without punctuation) would be masked. Mask SSN columns by name (``*ssn*``)
    instead. Replacement: ``***-**-6789``.
    """

    name = "us_ssn"
    min_length = 11  # "123-45-6789"

    def scan(self, text: str) -> list[Finding]:
        if len(text) < 11 or _shape(text).find(_SSN_SHAPE) < 0:
            return []
        found: list[Finding] = []
        for m in _SSN.finditer(text):
            area = text[m.start() : m.start() + 3]
            if (
                area in ("000", "666")
                or area[0] == "9"
                or m.group(2) == "00"
                or m.group(3) == "0000"
            ):
                continue
            found.append(Finding(m.start(), m.end(), f"***-**-{m.group(3)}", self.name))
        return found


# --- email addresses ---------------------------------------------------------------------------

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# Labels are at most 63 characters; the TLD is letters (or an IDNA "xn--" label). Each label ends
# at a dot that the label class cannot contain, so the repetition has one parse and backtracking
# is bounded by the number of labels.
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})(?![A-Za-z0-9-])"
)


# A literal pattern is searched for in C faster than `"%40" in text` on this path.
_ENCODED_AT = re.compile("%40")
# File-name extensions that are not top-level domains (a unit test checks each one against the
# IANA list): "icon@2x.png" and "backup@2024.tar" are file names, and no address can end in a
# TLD that does not exist, so skipping them can never hide an address.
_FILE_EXTENSIONS = frozenset({
    "avif", "bak", "bat", "bmp", "cfg", "cmd", "conf", "css", "csv", "dat", "db", "dll", "dmg",
    "doc", "docx", "eps", "exe", "gif", "gz", "heic", "htm", "html", "ico", "img", "ini", "iso",
    "jar", "jpeg", "jpg", "js", "json", "jsp", "jsx", "lock", "log", "mjs", "mkv", "odt", "otf",
    "pdf", "php", "png", "ppt", "pptx", "psd", "rar", "rtf", "scss", "sql", "sqlite", "svg",
    "tar", "tgz", "tif", "tiff", "tmp", "toml", "ts", "tsv", "tsx", "ttf", "txt", "wav", "webp",
    "whl", "xls", "xlsx", "xml", "xz", "yaml", "yml",
})  # fmt: skip


class EmailDetector:
    """Email addresses ``local@domain.tld`` (ASCII local parts), also percent-encoded as
    ``local%40domain.tld`` in URLs and form bodies.

    Driven from each ``@`` (and each ``%40``) rather than by one regex: a regex for
    ``local@domain`` would rescan a long local part from every start position (quadratic on
    "aaaa...a@"). Here the domain is matched forward from the ``@`` and the local part is walked
    backward to the previous non-local character, never into the previous address, so each
    character is visited a bounded number of times.
    Not addresses: a local part without a letter or digit (``LIKE '%@example.com'``), and a
    "domain" ending in a file-name extension that is no TLD (``icon@2x.png``); an address
    followed by such an extension (``bob@example.com.png``) is masked without it.
    A local part directly preceded by ``scheme://user:`` is a URL password, masked whole by the
    ``secrets`` detector; it is skipped here so the email hint cannot reveal its first letter.
    Replacement: ``j***@example.com`` (first character of the local part, domain kept; ``%40``
    stays ``%40``).
    """

    name = "email"
    min_length = 6  # "a@b.co"

    def scan(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        if "@" in text:
            self._addresses(text, "@", found)
        if "%" in text and _ENCODED_AT.search(text) is not None:
            self._addresses(text, "%40", found)
        return found

    def _addresses(self, text: str, at_sign: str, found: list[Finding]) -> None:
        width = len(at_sign)
        floor = 0  # "%40" is made of local-part characters: never walk back into an address
        at = text.find(at_sign)
        while at >= 0:
            match = _DOMAIN.match(text, at + width)
            domain = None if match is None else _address_domain(match.group())
            if match is None or domain is None:
                at = text.find(at_sign, at + width)
                continue
            start = at
            while start > floor and text[start - 1] in _LOCAL_CHARS:
                start -= 1
            end = at + width + len(domain)
            if _has_alnum(text, start, at) and not _is_url_userinfo(text, start):
                replacement = f"{text[start]}***{at_sign}{domain}"
                found.append(Finding(start, end, replacement, self.name))
            floor = end
            at = text.find(at_sign, end)


def _address_domain(domain: str) -> str | None:
    """``domain`` without a trailing file-name extension; None when what is left is no domain."""
    head, _, tld = domain.rpartition(".")
    if tld.lower() not in _FILE_EXTENSIONS:
        return domain
    # "bob@example.com.png" is a file named after an address: the address is still in it.
    _, dot, tld = head.rpartition(".")
    tld = tld.lower()
    if dot and (len(tld) >= 2 and tld.isalpha() or tld.startswith("xn--")):
        return head if tld not in _FILE_EXTENSIONS else None
    return None


def _has_alnum(text: str, start: int, end: int) -> bool:
    return any(c.isascii() and c.isalnum() for c in text[start:end])


def _is_url_userinfo(text: str, local_start: int) -> bool:
    """True when ``text[local_start:]`` is the password of ``scheme://user:password@host``."""
    if local_start == 0 or text[local_start - 1] != ":":
        return False
    # The user part is short; look back a bounded distance for "://" with no space in between.
    window_start = max(0, local_start - 256)
    scheme_end = text.rfind("://", window_start, local_start - 1)
    if scheme_end < 0:
        return False
    between = text[scheme_end + 3 : local_start - 1]
    return not any(c.isspace() or c in "/@" for c in between)


# --- IBAN --------------------------------------------------------------------------------------

# Country code -> IBAN length, from the SWIFT IBAN registry. Checking the length per country makes
# a random alphanumeric word pass for an IBAN far more rarely than mod-97 alone (1 in 97) would.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# Two letters and two check digits at the start of a word. Anchored on the first check digit so
# the search skips letters in the engine's fast loop (prose is mostly letters); the lookbehinds
# then check the two letters and the word start. head.start() is the digit, 2 past the IBAN start.
_IBAN_HEAD = re.compile(r"[0-9](?<=[A-Za-z]{2}[0-9])(?<![A-Za-z0-9][A-Za-z]{2}[0-9])[0-9]")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]*+")
# One space-separated group of the printed form ("GB82 WEST 1234 ..."), ending a word.
_IBAN_GROUP = re.compile(r" ([A-Za-z0-9]{1,4})(?![A-Za-z0-9])")


def iban_ok(iban: str) -> bool:
    """Mod-97 check of a compact IBAN (ISO 7064): move the head to the end, letters to numbers.

    Check digits are ``98 - (n mod 97)``, so 00, 01 and 99 never occur, even where the
    remainder would come out right.
    """
    if not "02" <= iban[2:4] <= "98":
        return False
    rearranged = (iban[4:] + iban[:4]).upper()
    # int(c, 36) maps 0-9 to themselves and A-Z to 10-35, exactly the IBAN letter encoding.
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


class IbanDetector:
    """International bank account numbers, compact or printed in groups of four.

    The country code must be in the IBAN registry, the length must be that country's, the check
    digits must be 02-98 and the mod-97 check must hold. Letters may be in either case.
    Replacement: ``GB****5432``.
    """

    name = "iban"
    min_length = 15  # Norway's IBANs

    def scan(self, text: str) -> list[Finding]:
        if len(text) < 15 or _shape(text).find(_IBAN_SHAPE) < 0:
            return []
        found: list[Finding] = []
        pos = 0
        while (head := _IBAN_HEAD.search(text, pos)) is not None:
            pos = head.end()
            start = head.start() - 2
            country = text[start : start + 2].upper()
            length = IBAN_LENGTHS.get(country)
            if length is None:
                continue
            end = self._compact_end(text, start, head.end(), length)
            if end is None:
                continue
            compact = text[start:end].replace(" ", "")
            if iban_ok(compact):
                found.append(Finding(start, end, f"{country}****{compact[-4:].upper()}", self.name))
                pos = end
        return found

    @staticmethod
    def _compact_end(text: str, start: int, head_end: int, length: int) -> int | None:
        """Where an IBAN of ``length`` characters starting at ``start`` ends, or None."""
        rest = _ALNUM_RUN.match(text, head_end)
        rest_end = rest.end() if rest is not None else head_end  # "*+" always matches
        if rest_end > head_end:
            # Compact form: the whole word must be exactly the IBAN.
            return rest_end if rest_end - start == length else None
        # Printed form: groups of four, the last possibly shorter, until the length is reached.
        total = 4
        pos = head_end
        while total < length:
            group = _IBAN_GROUP.match(text, pos)
            if group is None:
                return None
            size = len(group.group(1))
            total += size
            if size < 4 and total != length:
                return None
            pos = group.end()
        return pos if total == length else None


# --- secrets -----------------------------------------------------------------------------------

_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
# header.payload.signature; both JSON parts start with '{"', base64url "eyJ". Possessive runs: a
# failed match never retries shorter runs.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]++\.eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+")
_B64URL_RUN = re.compile(r"[A-Za-z0-9_-]*+")
# Fixed-shape vendor tokens. Bounded possessive bodies plus a trailing boundary: a longer run is
# not a token, and the check fails at once instead of backtracking through the body.
_GITHUB_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}+|github_pat_[A-Za-z0-9_]{22,244}+)"
    r"(?![A-Za-z0-9_])"
)
_STRIPE_KEY = re.compile(r"(?<![A-Za-z0-9])[sr]k_(?:live|test)_[A-Za-z0-9]{10,247}+(?![A-Za-z0-9])")
# The newer patterns start with their literal prefix and check the word start in a lookbehind
# after it: a pattern that starts with a literal is searched for in C faster than a substring
# test would be. A regex call still costs ~200 ns however short the text, so each is gated on
# the length and on one rare letter of its prefix (memchr): UUIDs, timestamps and numbers,
# which hold dashes, skip them all.
_SLACK_TOKEN = re.compile(r"x(?<![A-Za-z0-9]x)(?:ox[abeposr]|app)-[A-Za-z0-9-]{10,250}+")
_GOOGLE_API_KEY = re.compile(r"AIza(?<![A-Za-z0-9_-]AIza)[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])")
_NPM_TOKEN = re.compile(r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])")
# glpat- (personal, project and group access tokens), gldt- (deploy), glrt- (runner); newer
# tokens carry dot-separated routing parts.
_GITLAB_TOKEN = re.compile(
    r"gl(?<![A-Za-z0-9_-]gl)(?:pat|dt|rt)-[A-Za-z0-9_-]{20,250}+(?:\.[A-Za-z0-9_-]{1,64}+){0,3}+"
)
_LLM_API_KEY = re.compile(
    r"sk-(?<![A-Za-z0-9_-]sk-)(?:(?:(ant)|proj|svcacct|admin)-[A-Za-z0-9_-]{32,250}+"
    r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?![A-Za-z0-9_-]))"
)
# The tokens with a prefix ending in "_": one search for "_" with the prefixes as lookbehinds
# stays in the regex engine's C loop, where a substring test per prefix costs ~1 ns per
# character each. (A regex call costs ~200 ns however short the text, so the families keyed on
# other characters use one-character tests and length gates instead.)
_UNDERSCORE_TOKEN_MARK = re.compile(r"_(?:(?<=gh[pousr]_)|(?<=github_)|(?<=[sr]k_)|(?<=npm_))")
# scheme://user:password@host -> the password. Matched from just after each "://"; the user part
# cannot contain "/" so one attempt never runs past the next "://". Angle brackets are excluded
# so this detector's own "<secret:...>" replacements are never taken for userinfo.
_URL_USERINFO = re.compile(r"[^\s/:@<>]{0,256}+:([^\s/@<>]{1,1024}+)@")
# key=value / key: value / "key": "value". Only the value is masked. Driven from each "=" or ":"
# (found at memchr speed): the key is searched in a short window ending at the separator (with
# endpos, \Z matches at the window's end), so prose is never scanned by a case-insensitive
# alternation at every position. Bare values stop at whitespace and at the delimiters of query
# strings, env files and markup. "<secret:" is this detector's own replacement, not a key.
_KEY_BEFORE = re.compile(
    r"(?<!<)(?:password|passwd|secret|token|api[_-]?key|apikey|(?:secret|private|access)[_-]?key"
    r"|authorization)([\"']?)[ \t]{0,8}\Z",
    re.IGNORECASE,
)
_KEY_WINDOW = 32  # the longest key ("authorization", 13) + a quote + 8 blanks, with room
_VALUE_AFTER = re.compile(
    r"[ \t]{0,8}(?:(?:bearer|basic|token)[ \t]{1,8})?"
    r"(?:\"((?:[^\"\\\r\n]|\\.)++)|'((?:[^'\\\r\n]|\\.)++)|([^\s\"',;&<>]++))",
    re.IGNORECASE,
)
_CHARS_PER_WINDOW_CHECK = 64
# Bare values that are no secret: literals ("secret: false", "{'token': None}") and the bind
# placeholders of SQL text ("WHERE password = $1", "= ?", "= %s", "= %(pw)s", "= :pw").
_LITERALS = frozenset(("null", "true", "false", "none"))
_PLACEHOLDER = re.compile(
    r"\$[0-9]{1,5}|\?|%s|%\([A-Za-z_][A-Za-z0-9_]{0,62}\)s|:[A-Za-z_][A-Za-z0-9_]{0,62}"
)
_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
# SQL's own password syntax: PASSWORD 'pw' (PostgreSQL CREATE/ALTER ROLE, user mapping options)
# and IDENTIFIED [WITH plugin] BY 'pw' (MySQL, Oracle). Driven from each "'" after a blank that
# follows a "d", a "y" or another blank: a literal search with a fixed lookbehind stays in C,
# whereas any pattern that starts with the keyword scans the whole text at ~6 ns a character.
# The keyword is then checked in a short window before the quote, as for key/value pairs.
_SQL_SECRET_QUOTE = re.compile(r"'(?<=[DdYy \t\r\n][ \t\r\n]')")
_SQL_SECRET_KEYWORD = re.compile(
    r"(?<![A-Za-z0-9_])(?:password|identified(?:[ \t\r\n]+with[ \t\r\n]+[A-Za-z0-9_]{1,64})?"
    r"[ \t\r\n]+by)[ \t\r\n]{1,8}\Z",
    re.IGNORECASE,
)
_SQL_KEYWORD_WINDOW = 96  # "identified with" + a 64-character plugin name + "by"
# The body of a standard SQL string: '' is an escaped quote; possessive, so no backtracking.
_SQL_STRING_BODY = re.compile(r"(?:[^']|'')*+")


class SecretsDetector:
    """Credentials: cloud keys, private keys, tokens and ``password=...`` pairs.

    Kinds and replacements: AWS access key ids (``AKIA``/``ASIA`` + 16) -> ``<secret:aws_access_key>``;
    PEM private key blocks -> ``<secret:private_key>`` (a BEGIN line with no END masks to the end
    of the value: the key may continue in the next chunk); JWTs -> ``<secret:jwt>``; GitHub tokens
    -> ``<secret:github_token>``; GitLab tokens -> ``<secret:gitlab_token>``; Slack tokens ->
    ``<secret:slack_token>``; Stripe secret and restricted keys -> ``<secret:stripe_key>``; Google
    API keys -> ``<secret:google_api_key>``; npm tokens -> ``<secret:npm_token>``; Anthropic and
    OpenAI API keys -> ``<secret:anthropic_key>`` / ``<secret:openai_key>``. Key/value pairs
    (``password=``, ``secret:``, ``"api_key": "..."``, ``Authorization: Bearer ...``), SQL's
    ``PASSWORD '...'`` / ``IDENTIFIED BY '...'`` and URL passwords keep the key and mask the
    value as ``****``. Bare values that are literals (``true``, ``null``, ``None``) or SQL bind
    placeholders (``$1``, ``?``, ``%s``, ``:name``) are no secret, and a key word that is part of
    a path (``/run/secrets/token:/x``) is no key.
    """

    name = "secrets"
    min_length = 7  # "token=x"

    def scan(self, text: str) -> list[Finding]:
        size = len(text)
        if size < 7:
            return []
        found: list[Finding] = []
        # A one-character "in" runs at memchr speed; a longer needle costs ~1 ns per character.
        # So each family is gated on a character it must contain before its own substring test.
        if "A" in text:
            if "AKIA" in text or "ASIA" in text:
                self._simple(_AWS_KEY_ID, text, "<secret:aws_access_key>", found)
            if size >= 39 and "z" in text:  # "AIza" + 35
                self._simple(_GOOGLE_API_KEY, text, "<secret:google_api_key>", found)
        if "-" in text:
            if "-----BEGIN" in text:
                self._pem(text, found)
            if size >= 25 and "g" in text:  # "gldt-" + 20
                self._simple(_GITLAB_TOKEN, text, "<secret:gitlab_token>", found)
            if size >= 39 and "k" in text:  # "sk-ant-" + 32
                self._llm_keys(text, found)
        if "J" in text and "eyJ" in text:
            self._jwt(text, found)
        if "_" in text and _UNDERSCORE_TOKEN_MARK.search(text) is not None:
            self._simple(_GITHUB_TOKEN, text, "<secret:github_token>", found)
            self._simple(_STRIPE_KEY, text, "<secret:stripe_key>", found)
            self._simple(_NPM_TOKEN, text, "<secret:npm_token>", found)
        if size >= 15 and "x" in text:  # "xoxb-" + 10
            self._simple(_SLACK_TOKEN, text, "<secret:slack_token>", found)
        if "/" in text and "://" in text:
            self._url_passwords(text, found)
        if "=" in text or ":" in text:
            self._key_values(text, found)
        if size >= 12 and "'" in text:  # "PASSWORD 'x'"
            self._sql_passwords(text, found)
        return found

    def _simple(
        self, pattern: re.Pattern[str], text: str, label: str, found: list[Finding]
    ) -> None:
        found.extend(Finding(m.start(), m.end(), label, self.name) for m in pattern.finditer(text))

    def _llm_keys(self, text: str, found: list[Finding]) -> None:
        for m in _LLM_API_KEY.finditer(text):
            label = "<secret:anthropic_key>" if m.group(1) else "<secret:openai_key>"
            found.append(Finding(m.start(), m.end(), label, self.name))

    def _pem(self, text: str, found: list[Finding]) -> None:
        pos = 0
        while (begin := _PEM_BEGIN.search(text, pos)) is not None:
            end = _PEM_END.search(text, begin.end())
            stop = end.end() if end is not None else len(text)
            found.append(Finding(begin.start(), stop, "<secret:private_key>", self.name))
            pos = stop

    def _jwt(self, text: str, found: list[Finding]) -> None:
        pos = text.find("eyJ")
        while pos >= 0:
            token = _JWT.match(text, pos)
            if token is not None:
                found.append(Finding(pos, token.end(), "<secret:jwt>", self.name))
                resume = token.end()
            else:
                # Every "eyJ" later in this run would fail for the same reason (what follows the
                # run), so skip the run: without this, "eyJeyJeyJ..." is quadratic.
                run = _B64URL_RUN.match(text, pos)
                resume = run.end() if run is not None else pos + 3
            pos = text.find("eyJ", resume)

    def _url_passwords(self, text: str, found: list[Finding]) -> None:
        pos = text.find("://")
        while pos >= 0:
            userinfo = _URL_USERINFO.match(text, pos + 3)
            if userinfo is not None:
                found.append(Finding(userinfo.start(1), userinfo.end(1), "****", self.name))
            pos = text.find("://", pos + 3)

    def _key_values(self, text: str, found: list[Finding]) -> None:
        # Dense separators (JSON, logs): one pass over the lowered text for any key word is
        # cheaper than looking at the window before each separator (~5 ns per character against
        # ~300 ns per window).
        dense = (text.count("=") + text.count(":")) * _CHARS_PER_WINDOW_CHECK > len(text)
        if dense and not _has_key_word(text.lower()):
            return
        resume = 0  # separators inside a value already masked are not keys
        for sep in _separators(text):
            if sep < resume:
                continue
            window_start = max(0, sep - _KEY_WINDOW)
            # Lower the window itself: str.lower() can change lengths ("İ" becomes two code
            # points), so offsets into the lowered whole text would drift.
            window = text[window_start:sep].lower()
            if not _has_key_word(window):
                continue
            key = _KEY_BEFORE.search(text, window_start, sep)
            if key is None or _is_path_segment(text, key.start(), window_start):
                continue
            value = _VALUE_AFTER.match(text, sep + 1)
            if value is None:
                continue
            finding = self._value_finding(key.group(1), value)
            if finding is not None:
                found.append(finding)
                resume = finding.end

    def _value_finding(self, key_quote: str, value: re.Match[str]) -> Finding | None:
        if value.group(3) is None:
            group = 1 if value.group(1) is not None else 2
            return Finding(value.start(group), value.end(group), "****", self.name)
        start, end = value.span(3)
        bare = value.group(3)
        if key_quote:
            # A quoted key with a bare value is JSON (or a Python repr): the value ends at the
            # closing bracket, and the mask is quoted so the document stays parseable.
            cut = min((i for i in (bare.find("}"), bare.find("]")) if i >= 0), default=len(bare))
            bare = bare[:cut]
            end = start + cut
        if not bare or bare.lower() in _LITERALS or _PLACEHOLDER.fullmatch(bare) is not None:
            return None
        return Finding(start, end, f"{key_quote}****{key_quote}", self.name)

    def _sql_passwords(self, text: str, found: list[Finding]) -> None:
        for quote in _SQL_SECRET_QUOTE.finditer(text):
            opening = quote.start()
            if (
                _SQL_SECRET_KEYWORD.search(text, max(0, opening - _SQL_KEYWORD_WINDOW), opening)
                is None
            ):
                continue
            body = _SQL_STRING_BODY.match(text, opening + 1)
            end = body.end() if body is not None else opening + 1  # "*+" always matches
            # An unterminated literal (a query text cut at track_activity_query_size) is
            # masked to the end of the value.
            if end > opening + 1:
                found.append(Finding(opening + 1, end, "****", self.name))


def _is_path_segment(text: str, key_start: int, window_start: int) -> bool:
    """True when the identifier holding the key word at ``key_start`` follows "/" or "\\".

    "/run/secrets/db_password:/etc/pw:ro" is a volume mount and "/oauth/token:revoke" a route:
    a file or URL path, not a key.
    """
    pos = key_start
    while pos > window_start and text[pos - 1] in _IDENTIFIER_CHARS:
        pos -= 1
    return pos > 0 and text[pos - 1] in "/\\"


def _has_key_word(lowered: str) -> bool:
    # Spelled out: any() over a generator costs more than the five searches on short windows.
    return (
        "pass" in lowered
        or "secret" in lowered
        or "token" in lowered
        or "key" in lowered
        or "authorization" in lowered
    )


def _separators(text: str) -> Iterator[int]:
    """Positions of "=" and ":" in ``text``, in increasing order."""
    eq = text.find("=")
    colon = text.find(":")
    while eq >= 0 or colon >= 0:
        if colon < 0 or 0 <= eq < colon:
            yield eq
            eq = text.find("=", eq + 1)
        else:
            yield colon
            colon = text.find(":", colon + 1)


def builtin_detectors() -> list[Detector]:
    """Fresh instances of every built-in detector, in the order their names are documented."""
    return [
        CreditCardDetector(),
        UsSsnDetector(),
        EmailDetector(),
        IbanDetector(),
        SecretsDetector(),
    ]
