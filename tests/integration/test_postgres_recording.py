"""What an auditor gets: a signed recording of what the agent sent and what it saw."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.gateway import GatewayProcess


def _session_recording(gateway: GatewayProcess, marker: str) -> Path:
    """The recording that mentions ``marker``, once the gateway has sealed it (the client may
    see its last reply a moment before the gateway notices the disconnect)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for path in reversed(gateway.recordings()):
            shown = gateway.wardgate("recordings", "show", str(path), "--json").stdout
            if marker in shown and '"integrity": {"status": "verified"' in shown:
                return path
        time.sleep(0.2)
    raise AssertionError(f"no sealed recording mentions {marker!r}")


def test_a_session_is_recorded_with_decisions_masked_results_and_a_valid_signature(gateway: GatewayProcess) -> None:
    token = gateway.token("auditee", groups="ai-agents")
    with psycopg.connect(gateway.dsn(token=token, user="claimed-name", application_name="rec-test"),
                         autocommit=True) as conn:
        conn.execute("select id, card_number from customers where id = %s /* rec-marker */", (1,)).fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("drop table customers /* rec-marker */")
    path = _session_recording(gateway, "rec-marker")
    lines = [json.loads(line) for line in gateway.wardgate("recordings", "show", str(path), "--json").stdout.splitlines()]

    header = lines[0]
    assert header["kind"] == "header"
    assert header["identity"]["sub"] == "auditee" and header["identity"]["groups"] == ["ai-agents"]
    assert header["target"] == "pg-app" and header["protocol"] == "postgres"
    assert header["client"]["user"] == "claimed-name"
    assert {"session_id", "started"} <= set(header)

    queries = [line for line in lines if line["kind"] == "query"]
    allowed = next(q for q in queries if q["sql"].startswith("select id, card_number"))
    assert allowed["decision"]["action"] == "allow" and allowed["decision"]["rule"] == "agents may read"
    assert allowed["params"] == ["1"]
    denied = next(q for q in queries if q["sql"].startswith("drop table"))
    assert denied["decision"] == {
        "action": "deny", "rule": "no ddl for agents",
        "reason": "agents may not change the schema; the statement is drop (category ddl); "
                  "the statement is drop_table (category ddl)"}

    result = next(line for line in lines if line["kind"] == "result" and line.get("columns") == ["id", "card_number"])
    assert result["row_count"] == 1
    assert result["rows"][0][0] == "1"
    assert "4111111111111111" not in json.dumps(result) and result["rows"][0][1].endswith("1111")
    assert all("t" in line for line in lines[1:-1])

    assert lines[-1]["kind"] == "end" and lines[-1]["integrity"]["status"] == "verified"
    verify = gateway.wardgate("recordings", "verify", str(path), check=False)
    assert verify.returncode == 0, verify.stderr


def test_a_tampered_recording_is_named_by_verify(gateway: GatewayProcess, tmp_path: Path) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("select 1 /* tamper-marker */").fetchall()
    path = _session_recording(gateway, "tamper-marker")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy = tmp_path / "tampered.wgrec"
    copy.write_bytes(bytes(data))
    verify = gateway.wardgate("recordings", "verify", str(copy), check=False)
    assert verify.returncode != 0
    assert "tampered" in verify.stderr and "frame" in verify.stderr

    cut = tmp_path / "cut.wgrec"
    cut.write_bytes(path.read_bytes()[: len(data) - 10])
    verify = gateway.wardgate("recordings", "verify", str(cut), check=False)
    assert verify.returncode != 0 and "truncated" in verify.stderr


def test_recordings_list_shows_sessions(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        conn.execute("select 1").fetchall()
    listed = [json.loads(line) for line in gateway.wardgate("recordings", "list", "--json").stdout.splitlines()]
    assert listed and all(entry["integrity"] in ("verified", "truncated") for entry in listed)
    assert any(entry["sub"] == "alice" and entry["target"] == "pg-app" for entry in listed)


def test_sigterm_stops_accepting_lets_sessions_end_and_seals_their_recordings(pg_cluster: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.support.gateway import start_gateway

    gw = start_gateway(tmp_path_factory.mktemp("sigterm"), pg_cluster)
    conn = psycopg.connect(gw.dsn(), autocommit=True)
    try:
        conn.execute("select 1 /* before-sigterm */").fetchall()
        gw.process.terminate()  # SIGTERM: graceful; the open session gets shutdown_grace (2 s)
        assert gw.process.wait(timeout=30) == 0
    finally:
        conn.close()
    assert "SIGTERM: shutting down" in gw.log()
    [path] = gw.recordings()
    verify = gw.wardgate("recordings", "verify", str(path), check=False)
    assert verify.returncode == 0, verify.stderr
    end = [json.loads(line) for line in gw.wardgate("recordings", "show", str(path), "--json").stdout.splitlines()
           if json.loads(line)["kind"] == "end"]
    assert end and end[0]["reason"].startswith("cancelled")
