"""Differential test: the gateway's conversions against PostgreSQL's own, on the real server.

For every encoding the gateway supports, PostgreSQL converts a broad sample both ways
(``convert_from(bytea, enc)`` for client bytes -> text, ``convert_to(text, enc)`` for text ->
client bytes, each in a subtransaction so failures are collected with their SQLSTATE and message)
and the gateway must produce the same text, the same bytes, or the same error, word for word.
The sample: every byte, every two-byte sequence of the multibyte encodings (where the
CVE-2006-2313 trailing bytes live), the EUC three-byte and GB18030 four-byte spaces in part, all
of Latin and general punctuation, thousands of CJK and Hangul characters, private use, the
fullwidth forms and the characters PostgreSQL maps specially (yen, overline, euro, U+FFFD).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import psycopg
import pytest

from connectors.postgres.transcode import SUPPORTED, TranscodeError, client_encoding
from tests.support.pgcluster import PgCluster

SETUP = r"""
CREATE FUNCTION pg_temp.try_from(b bytea, enc name, OUT ok text, OUT state text, OUT msg text)
LANGUAGE plpgsql AS $$
BEGIN ok := convert_from(b, enc);
EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
END $$;
CREATE FUNCTION pg_temp.try_to(t text, enc name, OUT ok bytea, OUT state text, OUT msg text)
LANGUAGE plpgsql AS $$
BEGIN ok := convert_to(t, enc);
EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
END $$;
"""

CONVERTING = tuple(name for name in SUPPORTED if not client_encoding(name).is_noop)
MULTIBYTE = {
    "SJIS",
    "SHIFT_JIS_2004",
    "BIG5",
    "GBK",
    "UHC",
    "GB18030",
    "JOHAB",
    "EUC_JP",
    "EUC_JIS_2004",
    "EUC_KR",
    "EUC_CN",
}

Outcome = tuple[object, str | None, str | None]


@pytest.fixture(scope="module")
def server(pg_cluster: PgCluster) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(pg_cluster.dsn(user=pg_cluster.superuser), autocommit=True) as conn:
        conn.execute(SETUP)
        yield conn


def _sequences(name: str) -> list[bytes]:
    rng = random.Random(name)
    found = [bytes((b,)) for b in range(1, 256)]
    if name not in MULTIBYTE:
        return found
    found += [bytes((a, b)) for a in range(0x80, 0x100) for b in range(1, 0x100)]
    if name.startswith("EUC") or name == "JOHAB":
        found += [bytes((0x8F, a, b)) for a in range(0xA1, 0xFF) for b in range(0xA1, 0xFF, 5)]
    if name == "GB18030":
        found += [
            bytes(
                (
                    rng.randrange(0x81, 0xFF),
                    rng.randrange(0x30, 0x3A),
                    rng.randrange(0x81, 0xFF),
                    rng.randrange(0x30, 0x3A),
                )
            )
            for _ in range(20_000)
        ]
    # Multibyte characters followed by quote, backslash, NUL and truncation, in context.
    for lead in range(0x80, 0x100, 3):
        found += [bytes((lead,)) + tail for tail in (b"'", b"\\'", b"\0", b"", b"\\\\")]
    return found


def _characters(name: str) -> list[str]:
    rng = random.Random(name)
    points = [
        *range(1, 0x800),
        *range(0x0E00, 0x0E80),
        *range(0x2000, 0x3400),
        *range(0x4E00, 0xA000, 7),
        *range(0xAC00, 0xD7A4, 5),
        *range(0xE000, 0xE800, 3),
        *range(0xF900, 0x10000),
        *(rng.randrange(0x10000, 0x110000) for _ in range(3000)),
    ]
    chars = [chr(p) for p in points if not 0xD800 <= p < 0xE000]
    # JIS X 0213 combining sequences (one code in the 2004 encodings) and ASCII in context.
    chars += ["\u304b\u309a", "\u02e9\u02e5", "\u00e6\u0300", "a\u00a5b", "\\\u00a5", "'\u20ac'"]
    return chars


def _pg_from(
    conn: psycopg.Connection[tuple[object, ...]], name: str, seqs: list[bytes]
) -> list[Outcome]:
    rows = conn.execute(
        "SELECT r.ok, r.state, r.msg FROM unnest(%s::bytea[]) WITH ORDINALITY AS u(b, i), "
        "LATERAL pg_temp.try_from(u.b, %s) r ORDER BY u.i",
        (seqs, name),
    ).fetchall()
    return [(ok, state, msg) for ok, state, msg in rows]  # type: ignore[misc]


def _pg_to(
    conn: psycopg.Connection[tuple[object, ...]], name: str, texts: list[str]
) -> list[Outcome]:
    rows = conn.execute(
        "SELECT r.ok, r.state, r.msg FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, i), "
        "LATERAL pg_temp.try_to(u.t, %s) r ORDER BY u.i",
        (texts, name),
    ).fetchall()
    return [
        (None if ok is None else bytes(ok), state, msg)  # type: ignore[arg-type]
        for ok, state, msg in rows
    ]


def _ours(convert: object, data: bytes, as_text: bool) -> Outcome:
    assert callable(convert)
    try:
        out = convert(data)
    except TranscodeError as error:
        return (None, error.sqlstate, str(error))
    assert isinstance(out, bytes)
    return (out.decode("utf-8") if as_text else out, None, None)


@pytest.mark.parametrize("name", CONVERTING)
def test_client_bytes_convert_to_utf8_exactly_as_postgresql_converts_them(
    server: psycopg.Connection[tuple[object, ...]], name: str
) -> None:
    encoding = client_encoding(name)
    seqs = _sequences(name)
    theirs = _pg_from(server, name, seqs)
    differ = [
        (seq.hex(), pg, mine)
        for seq, pg in zip(seqs, theirs, strict=True)
        if (mine := _ours(encoding.to_server, seq, True)) != pg
    ]
    assert differ[:20] == [], f"{len(differ)} of {len(seqs)} sequences differ"


@pytest.mark.parametrize("name", CONVERTING)
def test_utf8_converts_to_client_bytes_exactly_as_postgresql_converts_it(
    server: psycopg.Connection[tuple[object, ...]], name: str
) -> None:
    encoding = client_encoding(name)
    texts = _characters(name)
    theirs = _pg_to(server, name, texts)
    differ = [
        (ascii(text), pg, mine)
        for text, pg in zip(texts, theirs, strict=True)
        if (mine := _ours(encoding.to_client, text.encode(), False)) != pg
    ]
    assert differ[:20] == [], f"{len(differ)} of {len(texts)} characters differ"


CLIENT_PATH = [
    ("SJIS", b"SELECT '\x95\x5c' AS v"),
    ("BIG5", b"SELECT '\xb3\x5c' AS v"),
    ("GBK", b"SELECT '\xbf\x5c' AS v"),
    ("GB18030", b"SELECT '\x81\x30\x81\x30\xbf\x5c' AS v"),
    ("UHC", b"SELECT '\xc7\xd1\x5c' AS v"),
    ("LATIN1", b"SELECT '\xe9\\' AS v"),
    ("WIN1252", b"SELECT '\x80' AS v"),
]


@pytest.mark.parametrize(("name", "sql"), CLIENT_PATH)
def test_a_session_in_that_client_encoding_reads_the_bytes_as_the_gateway_does(
    pg_cluster: PgCluster, name: str, sql: bytes
) -> None:
    # The path the relay replaces: a real session with client_encoding set, raw bytes sent.
    with psycopg.connect(
        pg_cluster.dsn(user=pg_cluster.superuser), autocommit=True, client_encoding=name
    ) as conn:
        query = b"SELECT encode(convert_to(v, 'UTF8'), 'hex') FROM (" + sql + b") s"
        row = conn.execute(query).fetchone()
    assert row is not None
    expected = client_encoding(name).to_server(sql).split(b"'")[1]
    assert bytes.fromhex(str(row[0])) == expected
