"""Clients in other encodings, through a gateway whose targets always speak UTF8."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

from tests.support.gateway import GatewayProcess


@pytest.mark.parametrize("encoding", ["LATIN1", "WIN1252", "SJIS", "EUC_JP", "GBK", "UTF8"])
def test_psycopg_round_trips_text_in_its_client_encoding(gateway: GatewayProcess,
                                                          encoding: str) -> None:
    sample = {"LATIN1": "café crème", "WIN1252": "naïve € déjà", "SJIS": "日本語テキスト",
              "EUC_JP": "こんにちは", "GBK": "中文文本", "UTF8": "ünïcødé ✓"}[encoding]
    with psycopg.connect(gateway.dsn(client_encoding=encoding)) as conn:
        assert conn.info.parameter_status("client_encoding") == encoding
        assert conn.execute("show client_encoding").fetchone() == (encoding,)
        assert conn.execute("select %s::text", (sample,)).fetchone() == (sample,)
        assert conn.execute(f"select '{sample}'", prepare=False).fetchone() == (sample,)
        # The server-side value is the same character string: length counts characters.
        assert conn.execute("select length(%s::text)", (sample,)).fetchone() == (len(sample),)


def test_set_client_encoding_mid_session_switches_both_directions(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("set client_encoding to 'LATIN1'")
        assert conn.info.parameter_status("client_encoding") == "LATIN1"
        assert conn.execute("select 'Größe'").fetchone() == ("Größe",)
        conn.execute("reset client_encoding")
        assert conn.execute("select '✓'").fetchone() == ("✓",)


def test_a_character_the_client_encoding_lacks_is_refused_not_garbled(
    gateway: GatewayProcess,
) -> None:
    with psycopg.connect(gateway.dsn(client_encoding="LATIN1"), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as failure:
            conn.execute("select chr(8364)")  # the euro sign has no LATIN1 byte
        assert failure.value.sqlstate == "22P05"


def test_psql_with_pgclientencoding(gateway: GatewayProcess) -> None:
    env = {**os.environ, "PGCLIENTENCODING": "LATIN1"}
    # psql sends the command's bytes as they are: LATIN1 bytes, read as LATIN1 by the gateway.
    command = "select 'Ä' || 'ß', length('Äß')".encode("latin-1")
    r = subprocess.run([b"psql", gateway.dsn().encode(), b"-X", b"-At", b"-c", command],
                       capture_output=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Äß|2".encode("latin-1")
