"""Where Python's codecs and PostgreSQL's conversion tables differ, and how characters are framed.

Everything here was measured against PostgreSQL 15 (every one- and two-byte sequence, the EUC
three-byte and GB18030 four-byte spaces, every code point); the differences are written as rules
where one exists (ranges, "the IBM extension code wins") and as short lists where not.
tests/integration/test_pg_transcode_server.py re-measures them against the server in the suite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

# --- structure (PostgreSQL's verifiers and mblen) -------------------------------------------------

ASCII_CHAR = rb"[\x01-\x7f]"


@dataclass(frozen=True, slots=True)
class Family:
    """How one family of encodings frames characters, as PostgreSQL's wchar.c does."""

    #: One valid non-ASCII character (alternatives).
    multibyte: bytes
    #: pg_encoding_mblen: how many bytes a character starting here claims (for error text).
    mblen: Callable[[bytes, int], int]


def _mblen_single(data: bytes, pos: int) -> int:
    return 1


def _mblen_sjis(data: bytes, pos: int) -> int:
    c = data[pos]
    return 2 if c >= 0x80 and not 0xA1 <= c <= 0xDF else 1


def _mblen_double(data: bytes, pos: int) -> int:
    return 2 if data[pos] >= 0x80 else 1


def _mblen_euc(data: bytes, pos: int) -> int:
    c = data[pos]
    if c == 0x8E:
        return 2
    if c == 0x8F:
        return 3
    return 2 if c >= 0x80 else 1


def _mblen_gb18030(data: bytes, pos: int) -> int:
    if data[pos] < 0x80:
        return 1
    second = data[pos + 1] if pos + 1 < len(data) else 0
    return 4 if 0x30 <= second <= 0x39 else 2


def mblen_utf8(data: bytes, pos: int) -> int:
    c = data[pos]
    if c & 0xE0 == 0xC0:
        return 2
    if c & 0xF0 == 0xE0:
        return 3
    if c & 0xF8 == 0xF0:
        return 4
    return 1


SINGLE = Family(rb"[\x80-\xff]", _mblen_single)
_SJIS = Family(rb"[\xa1-\xdf]|[\x81-\x9f\xe0-\xfc][\x40-\x7e\x80-\xfc]", _mblen_sjis)
#: BIG5, GBK and UHC: PostgreSQL only asks that the second byte is not NUL.
#: PostgreSQL 15 also refuses 0x8D 0x20 (measured in all three; the integration test re-checks).
_DOUBLE = Family(rb"(?!\x8d\x20)[\x80-\xff][\x01-\xff]", _mblen_double)
_EUC_KR = Family(rb"[\xa1-\xfe][\xa1-\xfe]", _mblen_euc)
_EUC_CN = Family(rb"[\xa1-\xfe][\xa1-\xfe]", _mblen_euc)
_EUC_JP = Family(rb"\x8e[\xa1-\xdf]|\x8f[\xa1-\xfe][\xa1-\xfe]|[\xa1-\xfe][\xa1-\xfe]", _mblen_euc)
#: PostgreSQL checks JOHAB trailing bytes with the EUC range (0xa1-0xfe), so it refuses the
#: JOHAB characters whose second byte is lower; the gateway refuses them too.
_JOHAB = Family(rb"\x8f[\xa1-\xfe][\xa1-\xfe]|[\x80-\x8e\x90-\xff][\xa1-\xfe]", _mblen_euc)
_GB18030 = Family(
    rb"[\x81-\xfe][\x30-\x39][\x81-\xfe][\x30-\x39]|[\x81-\xfe][\x40-\x7e\x80-\xfe]",
    _mblen_gb18030,
)


def python_decode(code: bytes, codec: str) -> str | None:
    try:
        return code.decode(codec)
    except UnicodeDecodeError:
        return None


def python_encode(text: str, codec: str) -> bytes | None:
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return None


# --- where Python's codecs and PostgreSQL's tables differ -----------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """A Python codec plus PostgreSQL's differences from it (measured, see the module docstring).

    ``decode``: character bytes -> PostgreSQL's text, or None where PostgreSQL has no mapping.
    ``encode``: text (one character, or a combining pair) -> PostgreSQL's bytes, or None.
    ``suspects``: further characters whose presence sends a value down the exact path (ones
    Python's codec produces or consumes differently from PostgreSQL that the tables above do not
    name, e.g. Hangul syllables Python's EUC-KR composes from eight bytes).
    """

    codec: str
    family: Family
    decode: Mapping[bytes, str | None] = field(default_factory=dict)
    encode: Mapping[str, bytes | None] = field(default_factory=dict)
    suspects: frozenset[str] = frozenset()


def _codes(pairs: Iterable[tuple[str, str | None]]) -> dict[bytes, str | None]:
    return {bytes.fromhex(code): text for code, text in pairs}


def _sjis_profile() -> Profile:
    # PostgreSQL's SJIS is Microsoft's CP932 without the user-defined area (0xF040-0xF9FC, which
    # cp932 maps to U+E000-U+E757), and it writes U+00A5 / U+203E as 0x5C / 0x7E (JIS X 0201
    # Roman) and every character that has an IBM extension code (0xFA40-0xFC4B) with that code
    # where cp932 prefers the NEC rows (0x87xx, 0xED/0xEE).
    decode: dict[bytes, str | None] = {}
    encode: dict[str, bytes | None] = {"\u00a5": b"\\", "\u203e": b"~"}
    for lead in range(0xF0, 0xFA):
        for trail in (*range(0x40, 0x7F), *range(0x80, 0xFD)):
            code = bytes((lead, trail))
            decode[code] = None
            encode[code.decode("cp932")] = None
    for single in ("\u0080", "\uf8f0", "\uf8f1", "\uf8f2", "\uf8f3"):
        encode[single] = None  # cp932's one-byte 0x80, 0xA0, 0xFD-0xFF: not SJIS to PostgreSQL
    for lead in (0xFA, 0xFB, 0xFC):
        for trail in (*range(0x40, 0x7F), *range(0x80, 0xFD)):
            code = bytes((lead, trail))
            try:
                char = code.decode("cp932")
            except UnicodeDecodeError:
                continue
            if char.encode("cp932")[0] in (0x87, 0xED, 0xEE):
                encode[char] = code
    return Profile("cp932", _SJIS, decode, encode)


def _uhc_user_defined() -> tuple[dict[bytes, str | None], dict[str, bytes | None]]:
    # PostgreSQL maps UHC's user-defined rows 0xC9 and 0xFE to U+E000 on, and 0xA2E8 to U+327E;
    # Python's cp949 and euc_kr map neither.
    decode: dict[bytes, str | None] = {b"\xa2\xe8": "\u327e"}
    point = 0xE000
    for lead in (0xC9, 0xFE):
        for trail in range(0xA1, 0xFF):
            decode[bytes((lead, trail))] = chr(point)
            point += 1
    return decode, {text: code for code, text in decode.items() if text is not None}


def _uhc_profile() -> Profile:
    decode, encode = _uhc_user_defined()
    return Profile("cp949", _DOUBLE, decode, encode)


def _euc_kr_profile() -> Profile:
    # Python's euc_kr also reads and writes the KS X 1001 Annex 3 eight-byte syllables
    # (0xA4D4 + three jamo); PostgreSQL knows only the 2,350 precomposed ones and reads 0xA4D4 as
    # HANGUL FILLER, so the composed syllables are suspects and unmappable.
    decode: dict[bytes, str | None] = {b"\xa2\xe8": "\u327e", b"\xa4\xd4": "\u3164"}
    encode: dict[str, bytes | None] = {"\u327e": b"\xa2\xe8", "\u3164": b"\xa4\xd4"}
    composed = set()
    for point in range(0xAC00, 0xD7A4):
        char = chr(point)
        try:
            if len(char.encode("euc_kr")) > 2:
                composed.add(char)
                encode[char] = None
        except UnicodeEncodeError:
            encode[char] = None
    return Profile("euc_kr", _EUC_KR, decode, encode, frozenset(composed))


def _big5_profile() -> Profile:
    # PostgreSQL's BIG5 table (BIG5.TXT plus the CP950 additions it merges) differs from Python's
    # big5 in these cells; several map to U+FFFD in PostgreSQL.
    decode = _codes(
        [
            ("a15a", "\ufffd"),
            ("a1c3", "\ufffd"),
            ("a1c5", "\ufffd"),
            ("a1fe", "\ufffd"),
            ("a240", "\ufffd"),
            ("a2cc", "\ufffd"),
            ("a2ce", "\ufffd"),
            ("f9d6", "\u7881"),
            ("f9d7", "\u92b9"),
            ("f9d8", "\u88cf"),
            ("f9d9", "\u58bb"),
            ("f9da", "\u6052"),
            ("f9db", "\u7ca7"),
            ("f9dc", "\u5afa"),
        ]
    )
    encode: dict[str, bytes | None] = {
        "\u02cd": None,
        "\u2574": None,
        "\uffe3": None,
        "\ufffd": b"\xa1\x5a",
    }
    for code, text in decode.items():
        if text is not None and text != "\ufffd":
            encode[text] = code
    return Profile("big5", _DOUBLE, decode, encode)


def _remapped(
    codec: str, family: Family, pairs: Iterable[tuple[str, str | None]], **more: object
) -> Profile:
    """A profile whose decode cells ``pairs`` (hex code, text) also apply in reverse."""
    decode = _codes(pairs)
    encode: dict[str, bytes | None] = {}
    for code, text in decode.items():
        before = python_decode(code, codec)
        if before is not None and before != text:
            encode[before] = None  # what Python reads there is not what PostgreSQL writes there
    encode.update({t: c for c, t in decode.items() if t is not None})
    extra = more.pop("encode", {})
    assert isinstance(extra, dict)
    encode.update(extra)
    return Profile(codec, family, decode, encode)


def _jis_to_sjis(row: int, cell: int) -> bytes:
    """JIS X 0208 row/cell (1-94) to its Shift_JIS bytes."""
    lead = (row + 1) // 2 + (0x80 if row <= 62 else 0xC0)
    if row % 2:
        trail = cell + (0x3F if cell <= 63 else 0x40)
    else:
        trail = cell + 0x9E
    return bytes((lead, trail))


def _euc_jp_profile() -> Profile:
    # PostgreSQL's EUC_JP is the CP932 repertoire in EUC form: NEC row 13 at 0xADxx, the first
    # 106 IBM extensions (0xFA40 on) at 0x8FF3F3-0x8FF4FE, and Microsoft's choices for a few
    # JIS X 0208 cells (FULLWIDTH TILDE for 0xA1C1, ...) where Python's euc_jp follows JIS.
    profile = _remapped(
        "euc_jp",
        _EUC_JP,
        [
            ("a1c1", "\uff5e"),
            ("a1c2", "\u2225"),
            ("a1dd", "\uff0d"),
            ("a1f1", "\uffe0"),
            ("a1f2", "\uffe1"),
            ("a2cc", "\uffe2"),
            ("8fa2c3", "\uffe4"),
            ("8fa2b7", None),  # Python reads it as ASCII "~"; PostgreSQL has no mapping
        ],
        encode={
            **{c: None for c in "\u00a2\u00a3\u00a5\u00ac\u2016\u203e\u2212\u301c"},
            "\u00a6": b"\x8f\xa2\xc3",  # both BROKEN BARs are written there
        },
    )
    decode = dict(profile.decode)
    encode = dict(profile.encode)
    remapped = {text for text in decode.values() if text is not None}
    for cell in range(1, 95):
        code = bytes((0xAD, cell + 0xA0))
        char = python_decode(_jis_to_sjis(13, cell), "cp932")
        if char is not None:
            decode[code] = char
            if python_encode(char, "euc_jp") is None:
                encode[char] = code
    encode["\u2116"] = b"\xad\xe2"
    # The IBM extensions that are neither JIS X 0208 characters nor JIS X 0212 kanji fill
    # 0x8FF3F3-0x8FF4FE in IBM order.
    cells = [bytes((0x8F, 0xF3, t)) for t in range(0xF3, 0xFF)]
    cells += [bytes((0x8F, 0xF4, t)) for t in range(0xA1, 0xFF)]
    free = iter(cells)
    for lead in (0xFA, 0xFB, 0xFC):
        for trail in (*range(0x40, 0x7F), *range(0x80, 0xFD)):
            char = python_decode(bytes((lead, trail)), "cp932")
            if char is None or char.encode("cp932")[0] < 0x87:
                continue  # unassigned, or a duplicate of a JIS X 0208 character
            known = python_encode(char, "euc_jp")
            if char in remapped or (known is not None and (len(known) == 2 or known[1] >= 0xB0)):
                continue  # already a JIS X 0208 character or a JIS X 0212 kanji
            slot = next(free, None)
            if slot is None:
                return Profile("euc_jp", _EUC_JP, decode, encode)
            decode[slot] = char
            encode.setdefault(char, slot)  # NEC row 13 keeps the roman numerals
    return Profile("euc_jp", _EUC_JP, decode, encode)


#: JIS X 0213 plane 2 uses only these rows after 0x8F; Python's euc_jis_2004 also reads the
#: JIS X 0212 rows in between, which PostgreSQL's EUC_JIS_2004 has no mapping for.
_PLANE2_ROWS = frozenset((0xA1, 0xA3, 0xA4, 0xA5, 0xA8, *range(0xAC, 0xB0), *range(0xEE, 0xFF)))


def _combining_pairs(codec: str) -> dict[str, bytes | None]:
    """JIS X 0213 codes that stand for two code points, which PostgreSQL writes as one code.

    Python's encoders combine only some of them (e.g. KA + SEMI-VOICED MARK but not AE + GRAVE).
    """
    pairs: dict[str, bytes | None] = {}
    for lead in range(0x81, 0xFF):
        for trail in range(0x40, 0xFF):
            code = bytes((lead, trail))
            text = python_decode(code, codec)
            if (
                text is not None
                and len(text) == 2
                and not any(c.isascii() for c in text)
                and python_decode(code[:1], codec) is None  # one code, not kana + something
            ):
                pairs[text] = code
    return pairs


def _euc_jis_2004_profile() -> Profile:
    profile = _remapped(
        "euc_jis_2004",
        _EUC_JP,
        [
            ("a1b1", "\u203e"),
            ("a1bd", "\u2014"),
            ("a1ef", "\u00a5"),
            ("a2d6", "\uff5f"),
            ("a2d7", "\uff60"),
        ],
        # PostgreSQL writes the C1 controls as single bytes it would not read back.
        encode={chr(point): bytes((point,)) for point in range(0x80, 0xA0)},
    )
    decode = dict(profile.decode)
    encode = {**_combining_pairs("euc_jis_2004"), **profile.encode}
    for row in range(0xA1, 0xFF):
        if row in _PLANE2_ROWS:
            continue
        for cell in range(0xA1, 0xFF):
            code = bytes((0x8F, row, cell))
            char = python_decode(code, "euc_jis_2004")
            if char is not None:
                decode[code] = None
                if python_encode(char, "euc_jis_2004") == code:
                    encode[char] = None
    return Profile("euc_jis_2004", _EUC_JP, decode, encode)


def _shift_jis_2004_profile() -> Profile:
    # Python's shift_jis_2004 reads 0x5C and 0x7E as YEN SIGN and OVERLINE; PostgreSQL, as for
    # every encoding, keeps ASCII bytes as ASCII (the exact path does). Both read the two-byte
    # 0x815F as REVERSE SOLIDUS and 0x81B0 as TILDE: JIS X 0213 puts them there.
    profile = _remapped(
        "shift_jis_2004",
        _SJIS,
        [("815c", "\u2014"), ("81d4", "\uff5f"), ("81d5", "\uff60")],
    )
    encode = {**_combining_pairs("shift_jis_2004"), **profile.encode}
    return Profile(profile.codec, _SJIS, profile.decode, encode)


_SINGLE_BYTE_CODECS: dict[str, str] = {
    "LATIN1": "latin_1",
    "LATIN2": "iso8859_2",
    "LATIN3": "iso8859_3",
    "LATIN4": "iso8859_4",
    "LATIN5": "iso8859_9",
    "LATIN6": "iso8859_10",
    "LATIN7": "iso8859_13",
    "LATIN8": "iso8859_14",
    "LATIN9": "iso8859_15",
    "LATIN10": "iso8859_16",
    "ISO_8859_5": "iso8859_5",
    "ISO_8859_6": "iso8859_6",
    "ISO_8859_7": "iso8859_7",
    "ISO_8859_8": "iso8859_8",
    "WIN866": "cp866",
    "WIN874": "cp874",
    "WIN1250": "cp1250",
    "WIN1251": "cp1251",
    "WIN1252": "cp1252",
    "WIN1253": "cp1253",
    "WIN1254": "cp1254",
    "WIN1255": "cp1255",
    "WIN1256": "cp1256",
    "WIN1257": "cp1257",
    "WIN1258": "cp1258",
    "KOI8R": "koi8_r",
    "KOI8U": "koi8_u",
}

PROFILES: dict[str, Callable[[], Profile]] = {
    **{
        name: functools.partial(Profile, codec, SINGLE)
        for name, codec in _SINGLE_BYTE_CODECS.items()
    },
    "SJIS": _sjis_profile,
    "BIG5": _big5_profile,
    "GBK": lambda: Profile("gbk", _DOUBLE, {}, {"\u20ac": b"\x80"}),
    "UHC": _uhc_profile,
    "GB18030": lambda: Profile("gb18030", _GB18030),
    "EUC_CN": lambda: Profile("gb2312", _EUC_CN),
    "EUC_KR": _euc_kr_profile,
    "EUC_JP": _euc_jp_profile,
    "EUC_JIS_2004": _euc_jis_2004_profile,
    "SHIFT_JIS_2004": _shift_jis_2004_profile,
    # KS X 1001:2002 added the postal code mark at 0xD9E8 (UHC 0xA2E8); Python's johab lacks it.
    "JOHAB": lambda: _remapped("johab", _JOHAB, [("d9e8", "\u327e")]),
}
