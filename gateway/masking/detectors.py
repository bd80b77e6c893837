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

from gateway.masking.cards import CARD_NETWORKS, CreditCardDetector, card_network
from gateway.masking.findings import _IBAN_SHAPE, _SSN_SHAPE, Detector, Finding, _shape
from gateway.masking.secrets import SecretsDetector

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


def builtin_detectors() -> list[Detector]:
    """Fresh instances of every built-in detector, in the order their names are documented."""
    return [
        CreditCardDetector(),
        UsSsnDetector(),
        EmailDetector(),
        IbanDetector(),
        SecretsDetector(),
    ]
