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
    "CreditCardDetector",
    "Detector",
    "EmailDetector",
    "Finding",
    "IbanDetector",
    "SecretsDetector",
    "UsSsnDetector",
    "builtin_detectors",
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


# Doubling table for the Luhn check: index = digit, value = 2*digit with digits summed.
_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check."""
    total = 0
    double = False
    for ch in reversed(digits):
        d = ord(ch) - 48
        total += _LUHN_DOUBLE[d] if double else d
        double = not double
    return total % 10 == 0


# --- credit cards ------------------------------------------------------------------------------

# A maximal run of ASCII digit groups joined by single spaces or dashes, holding at least 13
# digits (the lookahead is bounded to 24 characters). The pattern starts with a character class
# so the regex engine skips non-digits in its fast C loop (a leading lookbehind would disable
# that and cost ~50 ns per character). A match never starts mid-run: finditer resumes after the
# previous run, and if the lookahead failed at a run's first digit it fails at every later one.
# The repetitions are possessive: the run is taken whole and split into groups in Python.
_CARD_RUN = re.compile(r"[0-9](?=(?:[ -]?[0-9]){12})[0-9]*+(?:[ -][0-9]++)*+")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_MAX_WINDOW_GROUPS = 7


class CreditCardDetector:
    """Payment card numbers: 13-19 digits that pass the Luhn check.

    A candidate is either one run of 13-19 digits (not touching another digit), or consecutive
    digit groups joined by single spaces or dashes where every group but the last has 3-6 digits
    and the last 1-6 (4-4-4-4, 4-6-5, 4-4-4-4-3 ...). Groups are never split: a digit run longer
    than 19 is not a card. The group-size rule keeps dates and phone numbers written next to each
    other ("2024-01-15 2024-01-16") from passing for cards one time in ten.
    Every Luhn-valid window is reported; the masker merges overlapping ones, so an ambiguous run
    is masked in full rather than guessed at. Replacement: ``****-****-****-1111``.
    """

    name = "credit_card"
    min_length = 13  # 13 digits

    def scan(self, text: str) -> list[Finding]:
        if len(text) < 13 or _shape(text).translate(None, b" -").find(_CARD_SHAPE) < 0:
            return []
        found: list[Finding] = []
        for run in _CARD_RUN.finditer(text):
            # A window spans at most 7 groups (six non-final groups of 3+ digits make 18, and a
            # seventh ends it), so a sliding buffer of 7 keeps memory bounded on a hostile run
            # such as ten million "1 " pairs.
            upcoming: deque[tuple[int, int]] = deque(maxlen=_MAX_WINDOW_GROUPS)
            for group in _DIGIT_GROUP.finditer(text, run.start(), run.end()):
                if len(upcoming) == _MAX_WINDOW_GROUPS:
                    first = upcoming[0]
                    if first[1] - first[0] >= 3:  # shorter groups start no window
                        self._windows_from(text, upcoming, found)
                upcoming.append(group.span())  # drops upcoming[0] when full
            while upcoming:
                self._windows_from(text, upcoming, found)
                upcoming.popleft()
        return found

    def _windows_from(
        self, text: str, groups: deque[tuple[int, int]], found: list[Finding]
    ) -> None:
        """Check every candidate window that starts at ``groups[0]``."""
        start, end = groups[0]
        size = end - start
        if 13 <= size <= 19:
            self._check(text, [groups[0]], found)
            return
        if not 3 <= size <= 6:
            return
        total = size
        for j in range(1, len(groups)):
            g_start, g_end = groups[j]
            g_size = g_end - g_start
            total += g_size
            if g_size > 6 or total > 19:
                return
            if total >= 13:
                self._check(text, [groups[k] for k in range(j + 1)], found)
            if g_size < 3:  # a short group can only end a window
                return

    def _check(self, text: str, window: list[tuple[int, int]], found: list[Finding]) -> None:
        digits = "".join(text[s:e] for s, e in window)
        if luhn_ok(digits):
            found.append(
                Finding(window[0][0], window[-1][1], f"****-****-****-{digits[-4:]}", self.name)
            )


# --- US social security numbers ---------------------------------------------------------------

# AAA-GG-SSSS with dashes only, not preceded/followed by a digit or a dash-and-digit, so
# "1-123-45-6789-0" is not one. The lookbehinds come after the first digit so the pattern starts
# with a character class (fast skip, see _CARD_RUN). Never-issued numbers (area 000, 666, 9xx,
# group 00, serial 0000) are filtered in Python.
_SSN = re.compile(
    r"[0-9](?<![0-9]{2})(?<![0-9]-[0-9])([0-9]{2})-([0-9]{2})-([0-9]{4})(?![0-9])(?!-[0-9])"
)


class UsSsnDetector:
    """US social security numbers in the dashed form ``AAA-GG-SSSS``.

    The unseparated 9-digit form is deliberately not matched: any 9-digit number (order ids,
    amounts in cents, phone numbers without punctuation) would be masked. Mask SSN columns by
    name (``*ssn*``) instead. Replacement: ``***-**-6789``.
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


class EmailDetector:
    """Email addresses ``local@domain.tld`` (ASCII local parts).

    Driven from each ``@`` rather than by one regex: a regex for ``local@domain`` would rescan a
    long local part from every start position (quadratic on "aaaa...a@"). Here the domain is
    matched forward from the ``@`` and the local part is walked backward to the previous non-local
    character, so each character is visited a bounded number of times.
    A local part directly preceded by ``scheme://user:`` is a URL password, masked whole by the
    ``secrets`` detector; it is skipped here so the email hint cannot reveal its first letter.
    Replacement: ``j***@example.com`` (first character of the local part, domain kept).
    """

    name = "email"
    min_length = 6  # "a@b.co"

    def scan(self, text: str) -> list[Finding]:
        if "@" not in text:
            return []
        at = text.find("@")
        found: list[Finding] = []
        while at >= 0:
            domain = _DOMAIN.match(text, at + 1)
            if domain is None:
                at = text.find("@", at + 1)
                continue
            start = at
            while start > 0 and text[start - 1] in _LOCAL_CHARS:
                start -= 1
            if start < at and not _is_url_userinfo(text, start):
                found.append(
                    Finding(start, domain.end(), f"{text[start]}***@{domain.group()}", self.name)
                )
            at = text.find("@", domain.end())
        return found


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
    """Mod-97 check of a compact IBAN (ISO 7064): move the head to the end, letters to numbers."""
    rearranged = (iban[4:] + iban[:4]).upper()
    # int(c, 36) maps 0-9 to themselves and A-Z to 10-35, exactly the IBAN letter encoding.
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


class IbanDetector:
    """International bank account numbers, compact or printed in groups of four.

    The country code must be in the IBAN registry, the length must be that country's, and the
    mod-97 check must hold. Letters may be in either case. Replacement: ``GB****5432``.
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
_SLACK_TOKEN = re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,250}+")
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
_JSON_LITERALS = frozenset(("null", "true", "false"))


class SecretsDetector:
    """Credentials: cloud keys, private keys, tokens and ``password=...`` pairs.

    Kinds and replacements: AWS access key ids (``AKIA``/``ASIA`` + 16) -> ``<secret:aws_access_key>``;
    PEM private key blocks -> ``<secret:private_key>`` (a BEGIN line with no END masks to the end
    of the value: the key may continue in the next chunk); JWTs -> ``<secret:jwt>``; GitHub tokens
    -> ``<secret:github_token>``; Slack tokens -> ``<secret:slack_token>``; Stripe secret and
    restricted keys -> ``<secret:stripe_key>``. Key/value pairs (``password=``, ``secret:``,
    ``"api_key": "..."``, ``Authorization: Bearer ...``) and URL passwords keep the key and mask
    the value as ``****``.
    """

    name = "secrets"
    min_length = 7  # "token=x"

    def scan(self, text: str) -> list[Finding]:
        if len(text) < 7:
            return []
        found: list[Finding] = []
        # A one-character "in" runs at memchr speed; a longer needle costs ~1 ns per character.
        # So each family is gated on a character it must contain before its own substring test.
        if "A" in text and ("AKIA" in text or "ASIA" in text):
            self._simple(_AWS_KEY_ID, text, "<secret:aws_access_key>", found)
        if "-" in text and "-----BEGIN" in text:
            self._pem(text, found)
        if "J" in text and "eyJ" in text:
            self._jwt(text, found)
        if "_" in text:
            if "gh" in text or "github_pat_" in text:
                self._simple(_GITHUB_TOKEN, text, "<secret:github_token>", found)
            if "k_live_" in text or "k_test_" in text:
                self._simple(_STRIPE_KEY, text, "<secret:stripe_key>", found)
        if "x" in text and "xox" in text:
            self._simple(_SLACK_TOKEN, text, "<secret:slack_token>", found)
        if "/" in text and "://" in text:
            self._url_passwords(text, found)
        if "=" in text or ":" in text:
            self._key_values(text, found)
        return found

    def _simple(
        self, pattern: re.Pattern[str], text: str, label: str, found: list[Finding]
    ) -> None:
        found.extend(Finding(m.start(), m.end(), label, self.name) for m in pattern.finditer(text))

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
            if key is None:
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
        if key_quote:
            # A quoted key with a bare value is JSON (or a Python repr): the value ends at the
            # closing bracket, literals are not secrets, and the mask is quoted so the document
            # stays parseable.
            bare = value.group(3)
            cut = min((i for i in (bare.find("}"), bare.find("]")) if i >= 0), default=len(bare))
            if cut == 0 or bare[:cut].lower() in _JSON_LITERALS:
                return None
            end = start + cut
        return Finding(start, end, f"{key_quote}****{key_quote}", self.name)


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
