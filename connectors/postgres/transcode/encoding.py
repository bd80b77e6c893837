"""PostgreSQL's client encodings, converted to and from UTF-8 exactly as the server converts them.

The gateway keeps every target at ``client_encoding=UTF8`` (its parser and masker read UTF-8 only)
and converts at the client edge instead. For that to be invisible, each conversion must accept,
map and refuse exactly what PostgreSQL's own conversion would, byte for byte and with the same
error text. Three parts make that so:

* **Structure** is checked first, by a regular expression per encoding family that accepts exactly
  the characters PostgreSQL's ``pg_*_verifier`` accepts (NUL never). A failure is SQLSTATE 22021,
  ``invalid byte sequence for encoding "SJIS": 0x81 0x27``, showing as many bytes as PostgreSQL's
  ``pg_encoding_mblen`` says the character has. This is also what defeats CVE-2006-2313/2314: a
  lead byte followed by a quote or backslash is refused, never decoded as "some character, then a
  quote", and ASCII bytes always stand for themselves (PostgreSQL's ``LocalToUtf`` copies them).
* **Mapping** uses the Python codec that agrees with PostgreSQL's tables, chosen by measurement
  (tests/integration/test_pg_transcode_server.py compares every byte sequence and code point with
  the server). Where a codec still differs in a few places, ``Profile`` lists the differences;
  a valid character PostgreSQL cannot map is SQLSTATE 22P05 (``character with byte sequence ...
  has no equivalent in encoding ...``).
* **Speed**: the whole value goes through the C codec; only when the result holds a character
  where Python and PostgreSQL are known to differ, or the codec fails, is the value converted
  again character by character (``_exact_*``), which is the reference behaviour.

UTF8 and SQL_ASCII are no-ops: with a UTF8 database PostgreSQL does not convert SQL_ASCII client
text either (``pg_any_to_server`` only verifies it as UTF-8, and output is sent as stored).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import ProtocolError

from .profiles import (
    ASCII_CHAR,
    PROFILES,
    SINGLE,
    Profile,
    mblen_utf8,
    python_decode,
    python_encode,
)

#: SQLSTATEs of the errors PostgreSQL raises for conversions.
INVALID_BYTE_SEQUENCE = "22021"  # character_not_in_repertoire
UNTRANSLATABLE = "22P05"  # untranslatable_character
INVALID_PARAMETER_VALUE = "22023"
FEATURE_NOT_SUPPORTED = "0A000"
PROGRAM_LIMIT_EXCEEDED = "54000"


class TranscodeError(ProtocolError):
    """Text that cannot be converted; the relay answers with an ErrorResponse built from this.

    Unlike a framing ``ProtocolError`` the stream is intact: only the one message is refused, as
    PostgreSQL raises an ERROR (not FATAL) for the same input. ``detail`` fills the 'D' field.
    """

    def __init__(self, message: str, *, sqlstate: str, detail: str | None = None) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.detail = detail


# --- names ----------------------------------------------------------------------------------------

#: Canonical name -> the aliases PostgreSQL's encnames.c accepts for it (as normalised keys,
#: besides the canonical name's own normalised form).
_ALIASES: dict[str, tuple[str, ...]] = {
    "SQL_ASCII": (),
    "UTF8": ("unicode",),
    "EUC_JP": (),
    "EUC_CN": (),
    "EUC_KR": (),
    "EUC_TW": (),
    "EUC_JIS_2004": (),
    "MULE_INTERNAL": (),
    "LATIN1": ("iso88591",),
    "LATIN2": ("iso88592",),
    "LATIN3": ("iso88593",),
    "LATIN4": ("iso88594",),
    "LATIN5": ("iso88599",),
    "LATIN6": ("iso885910",),
    "LATIN7": ("iso885913",),
    "LATIN8": ("iso885914",),
    "LATIN9": ("iso885915",),
    "LATIN10": ("iso885916",),
    "WIN1256": ("windows1256",),
    "WIN1258": ("windows1258", "abc", "tcvn", "tcvn5712", "vscii"),
    "WIN866": ("windows866", "alt"),
    "WIN874": ("windows874",),
    "KOI8R": ("koi8",),
    "WIN1251": ("windows1251", "win"),
    "WIN1252": ("windows1252",),
    "ISO_8859_5": (),
    "ISO_8859_6": (),
    "ISO_8859_7": (),
    "ISO_8859_8": (),
    "WIN1250": ("windows1250",),
    "WIN1253": ("windows1253",),
    "WIN1254": ("windows1254",),
    "WIN1255": ("windows1255",),
    "WIN1257": ("windows1257",),
    "KOI8U": (),
    "SJIS": ("shiftjis", "mskanji", "win932", "windows932"),
    "BIG5": ("win950", "windows950"),
    "GBK": ("win936", "windows936"),
    "UHC": ("win949", "windows949"),
    "GB18030": (),
    "JOHAB": (),
    "SHIFT_JIS_2004": (),
}

#: PostgreSQL compares names after keeping only ASCII letters and digits, lower-cased
#: (encnames.c clean_encoding_name; the server runs it in the C locale's isalnum).
_NORMALISE = re.compile(r"[^0-9A-Za-z]+")
#: pg_char_to_encoding refuses names of NAMEDATALEN (64) bytes or more before normalising.
_NAMEDATALEN = 64


def normalise_name(name: str) -> str:
    """An encoding name as PostgreSQL compares it: ``"ISO_8859-1"`` -> ``"iso88591"``."""
    return _NORMALISE.sub("", name).lower()


_BY_KEY: dict[str, str] = {}
for _canonical, _more in _ALIASES.items():
    for _key in (normalise_name(_canonical), *_more):
        _BY_KEY[_key] = _canonical


def canonical_name(name: str) -> str | None:
    """PostgreSQL's canonical name for an encoding name or alias, or None if it names none."""
    if not name or len(name.encode("utf-8", "surrogatepass")) >= _NAMEDATALEN:
        return None
    return _BY_KEY.get(normalise_name(name))


def _hex_bytes(data: bytes) -> str:
    return " ".join(f"0x{b:02x}" for b in data)


def invalid_sequence(encoding: str, data: bytes, pos: int, mblen: int) -> TranscodeError:
    """PostgreSQL's report_invalid_encoding for the character starting at ``data[pos]``."""
    shown = data[pos : pos + min(mblen, 8)]
    return TranscodeError(
        f'invalid byte sequence for encoding "{encoding}": {_hex_bytes(shown)}',
        sqlstate=INVALID_BYTE_SEQUENCE,
    )


def untranslatable(char: bytes, source: str, target: str) -> TranscodeError:
    """PostgreSQL's report_untranslatable_char."""
    return TranscodeError(
        f'character with byte sequence {_hex_bytes(char)} in encoding "{source}" '
        f'has no equivalent in encoding "{target}"',
        sqlstate=UNTRANSLATABLE,
    )


def _utf8_error(data: bytes, error: UnicodeDecodeError) -> TranscodeError:
    return invalid_sequence("UTF8", data, error.start, mblen_utf8(data, error.start))


#: Encodings the gateway refuses, with PostgreSQL's SQLSTATE and the detail shown to the client.
_REFUSED: dict[str, tuple[str, str]] = {
    # PostgreSQL itself has no UTF8 <-> MULE_INTERNAL conversion: same answer as the server.
    "MULE_INTERNAL": (
        FEATURE_NOT_SUPPORTED,
        "Conversion between MULE_INTERNAL and UTF8 is not supported.",
    ),
    "EUC_TW": (
        FEATURE_NOT_SUPPORTED,
        (
            "wardgate cannot convert EUC_TW exactly as PostgreSQL does: no Python codec "
            "implements CNS 11643, so the gateway refuses it rather than guess."
        ),
    ),
}


# --- ClientEncoding -------------------------------------------------------------------------------


class _Converter:
    """The compiled form of a ``Profile`` for one encoding (built once, on first use)."""

    __slots__ = (
        "_char",
        "_decode",
        "_encode",
        "_mblen",
        "_special",
        "_suspects",
        "_valid",
        "codec",
        "name",
        "single_byte",
    )

    def __init__(self, name: str, profile: Profile) -> None:
        self.name = name
        self.codec = profile.codec
        self.single_byte = profile.family is SINGLE
        self._mblen = profile.family.mblen
        self._decode = dict(profile.decode)
        self._encode = dict(profile.encode)
        one = b"(?:" + profile.family.multibyte + b")"
        self._valid = re.compile(b"(?:" + ASCII_CHAR + b"+|" + one + b")*")
        self._char = re.compile(ASCII_CHAR + b"+|" + one)
        suspects = set(profile.suspects)
        for code, text in self._decode.items():
            suspects.update(python_decode(code, self.codec) or "")
            if text is not None:
                suspects.update(text)
        for text in self._encode:
            suspects.update(text)
        # ASCII bytes always stand for themselves (the exact path copies them): where Python's
        # codec reads or writes one differently, its reading and the ASCII character are suspects.
        for point in _ascii_the_codec_changes(self.codec):
            suspects.add(chr(point))
            suspects.update(python_decode(bytes((point,)), self.codec) or "")
        self._suspects = (
            re.compile("[" + "".join(sorted(re.escape(c) for c in suspects)) + "]")
            if suspects
            else None
        )
        # Characters Python reads from two codes as one pair (JIS X 0213 combining sequences).
        pairs = [t for t in self._encode if len(t) > 1]
        alternatives = [re.escape(p) for p in sorted(pairs, key=len, reverse=True)]
        if suspects:
            alternatives.append("[" + "".join(sorted(re.escape(c) for c in suspects)) + "]")
        # Each unit the exact path must look up itself: a combining pair first, else a suspect.
        self._special = re.compile("|".join(alternatives)) if alternatives else None

    # client bytes -> UTF-8

    def to_server(self, data: bytes) -> bytes:
        if self.single_byte:
            if b"\0" in data:
                raise invalid_sequence(self.name, data, data.index(b"\0"), 1)
        else:
            end = self._valid.match(data).end()  # type: ignore[union-attr]  # "*" always matches
            if end != len(data):
                raise invalid_sequence(self.name, data, end, self._mblen(data, end))
        try:
            text = data.decode(self.codec)
        except UnicodeDecodeError:
            return self._exact_to_server(data)
        if self._suspects is not None and self._suspects.search(text):
            return self._exact_to_server(data)
        return text.encode("utf-8")

    def _exact_to_server(self, data: bytes) -> bytes:
        """Character by character, as PostgreSQL's LocalToUtf walks the input (structure valid)."""
        out: list[str] = []
        for match in self._char.finditer(data):
            code = match.group()
            if code[0] < 0x80:
                out.append(code.decode("ascii"))  # ASCII always stands for itself
                continue
            text = self._decode[code] if code in self._decode else python_decode(code, self.codec)
            if text is None:
                raise untranslatable(code, self.name, "UTF8")
            out.append(text)
        return "".join(out).encode("utf-8")

    # UTF-8 -> client bytes

    def to_client(self, data: bytes) -> bytes:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _utf8_error(data, error) from None
        if self._suspects is not None and self._suspects.search(text):
            return self._exact_to_client(text)
        try:
            return text.encode(self.codec)
        except UnicodeEncodeError:
            return self._exact_to_client(text)

    def _exact_to_client(self, text: str) -> bytes:
        """Suspects (and combining pairs) one by one from the tables; the text between them in
        bulk, since it holds nothing Python and PostgreSQL write differently."""
        out: list[bytes] = []
        pos = 0
        if self._special is not None:
            for match in self._special.finditer(text):
                if match.start() > pos:
                    out.append(self._plain_to_client(text[pos : match.start()]))
                out.append(self._char_to_client(match.group()))
                pos = match.end()
        if pos < len(text):
            out.append(self._plain_to_client(text[pos:]))
        return b"".join(out)

    def _plain_to_client(self, text: str) -> bytes:
        try:
            return text.encode(self.codec)
        except UnicodeEncodeError as error:
            raise untranslatable(text[error.start].encode("utf-8"), "UTF8", self.name) from None

    def _char_to_client(self, char: str) -> bytes:
        if char.isascii():
            return char.encode("ascii")  # ASCII always stands for itself
        code = self._encode[char] if char in self._encode else python_encode(char, self.codec)
        if code is None:
            raise untranslatable(char[0].encode("utf-8"), "UTF8", self.name)
        return code

    def complete_prefix(self, data: bytes) -> int:
        """Where the last complete character of ``data`` ends (for streams split mid-character).

        Raises the error PostgreSQL would for a sequence that no further bytes can make valid.
        """
        if self.single_byte:
            return len(data)
        end = self._valid.match(data).end()  # type: ignore[union-attr]
        if end == len(data):
            return end
        rest = data[end:]
        need = self._mblen(data, end)
        if len(rest) < need and self._could_complete(rest, need):
            return end
        raise invalid_sequence(self.name, data, end, self._mblen(data, end))

    def _could_complete(self, rest: bytes, need: int) -> bool:
        # Does some completion of ``rest`` to ``need`` bytes form a valid character? Brute force
        # over the next byte only: every family decides validity byte by byte.
        for byte in range(1, 256):
            candidate = rest + bytes((byte,))
            if len(candidate) == need:
                if self._char.fullmatch(candidate):
                    return True
            elif self._could_complete(candidate, need):
                return True
        return False


@functools.cache
def _ascii_the_codec_changes(codec: str) -> frozenset[int]:
    """ASCII code points the Python codec does not read and write as themselves."""
    return frozenset(
        point
        for point in range(1, 0x80)
        if python_decode(bytes((point,)), codec) != chr(point)
        or python_encode(chr(point), codec) != bytes((point,))
    )


@functools.cache
def _converter(name: str) -> _Converter:
    return _Converter(name, PROFILES[name]())


@dataclass(frozen=True, slots=True)
class ClientEncoding:
    """One client encoding: conversions between it and the UTF-8 every target speaks.

    ``name`` is PostgreSQL's canonical name (what ParameterStatus reports). Build one with
    ``client_encoding(name)``. ``to_server``/``to_client`` return their argument itself when the
    encoding is a no-op or the text is plain ASCII, so callers can test ``is`` for "unchanged".
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in _ALIASES:
            raise ValueError(f"{self.name!r} is not a canonical PostgreSQL encoding name")
        if self.name in _REFUSED:
            raise ValueError(f"{self.name} cannot be converted (see client_encoding())")

    @property
    def is_noop(self) -> bool:
        """True for UTF8 and SQL_ASCII: bytes pass unchanged in both directions."""
        return self.name not in PROFILES

    @property
    def codec(self) -> str | None:
        """The Python codec the conversion is based on (None for a no-op)."""
        return None if self.is_noop else _converter(self.name).codec

    def to_server(self, data: bytes) -> bytes:
        """Client bytes -> UTF-8, or TranscodeError (22021 invalid, 22P05 unmappable)."""
        if self.name not in PROFILES or (data.isascii() and b"\0" not in data):
            return data
        return _converter(self.name).to_server(data)

    def to_client(self, data: bytes) -> bytes:
        """UTF-8 -> client bytes, or TranscodeError (22P05 when the encoding lacks a character)."""
        if self.name not in PROFILES or data.isascii():
            return data
        return _converter(self.name).to_client(data)

    def complete_prefix(self, data: bytes, *, to_server: bool) -> int:
        """Length of the longest prefix of ``data`` that ends on a character boundary.

        For text split across COPY messages: the rest may be completed by the next chunk. Raises
        TranscodeError when the tail cannot become a valid character whatever follows.
        """
        if self.name not in PROFILES:
            return len(data)
        if not to_server:
            return _utf8_complete_prefix(data)
        return _converter(self.name).complete_prefix(data)

    def reported(self, requested: str) -> str:
        """The value PostgreSQL reports for ``client_encoding`` after ``SET`` to ``requested``.

        The canonical name, except that "UNICODE" spelled exactly so is echoed back (variable.c
        keeps it for pre-9.1 JDBC drivers).
        """
        return "UNICODE" if requested == "UNICODE" and self.name == "UTF8" else self.name


def _utf8_complete_prefix(data: bytes) -> int:
    # Back up over at most three continuation bytes to the last lead byte.
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte < 0x80:
            return end
        if byte >= 0xC0:
            return end - back if mblen_utf8(data, end - back) > back else end
    return end


def client_encoding(name: str) -> ClientEncoding:
    """The ClientEncoding PostgreSQL would select for ``SET client_encoding TO name``.

    Raises TranscodeError with PostgreSQL's wording: 22023 ``invalid value for parameter
    "client_encoding": "foo"`` for an unknown name; 0A000 with a detail for an encoding that
    cannot be converted faithfully (MULE_INTERNAL, as PostgreSQL itself; EUC_TW, see _REFUSED).
    """
    canonical = canonical_name(name)
    invalid = f'invalid value for parameter "client_encoding": "{name}"'
    if canonical is None:
        raise TranscodeError(invalid, sqlstate=INVALID_PARAMETER_VALUE)
    refused = _REFUSED.get(canonical)
    if refused is not None:
        raise TranscodeError(invalid, sqlstate=refused[0], detail=refused[1])
    return ClientEncoding(canonical)


#: Every encoding a client may select through the gateway (canonical names).
SUPPORTED: tuple[str, ...] = tuple(n for n in _ALIASES if n not in _REFUSED)
#: Encodings PostgreSQL knows that the gateway refuses, with the reason.
REFUSED: Mapping[str, str] = {name: detail for name, (_, detail) in _REFUSED.items()}
UTF8 = ClientEncoding("UTF8")
