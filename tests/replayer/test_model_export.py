"""Session model over the golden recordings, detail rendering, and the two export formats."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console

from gateway.recording import format as fmt
from gateway.recording.reader import read_recording
from replayer.detail import render_event
from replayer.export import export_asciicast, export_jsonl
from replayer.model import SessionModel, build_model
from tests.replayer.conftest import golden
from tests.replayer.make_golden import ESC_TEXT, ScriptedWriter, signing_key


def model_of(name: str, key: Ed25519PublicKey) -> SessionModel:
    path = golden(name)
    return build_model(path, read_recording(path, public_key=key))


def rendered(model: SessionModel, index: int, width: int = 120) -> str:
    console = Console(width=width, color_system=None, force_terminal=False, record=True)
    with console.capture() as capture:
        console.print(render_event(model, model.events[index]))
    return capture.get()


def test_postgres_timeline_and_commands(public_key: Ed25519PublicKey) -> None:
    model = model_of("postgres", public_key)
    kinds = [e.kind for e in model.events]
    assert kinds == ["query", "result", "query", "review_requested", "review_approved", "query",
                     "result", "query", "error", "review_requested", "review_denied", "query",
                     "query", "result", "disconnect"]
    assert [e.decision for e in model.events] == [
        "allow", None, "deny", "requested", "approved", "allow", None, "allow", None,
        "requested", "denied", "deny", "allow", None, None]
    assert model.command_indices == [0, 2, 5, 7, 11, 12]
    assert model.counts() == (6, 2, 2)
    assert not model.is_terminal


def test_statement_detail_shows_decision_approval_and_masked_result(
    public_key: Ed25519PublicKey,
) -> None:
    model = model_of("postgres", public_key)
    first = rendered(model, 0)
    assert "Decision: ALLOW  rule agents-read" in first
    assert "SELECT id, email, card_number FROM customers" in first
    assert "RESULT SELECT 3  3 rows, 3 recorded (cap 100), 3 masked" in first
    assert "****-****-****-1111" in first and "NULL" in first
    requested = rendered(model, 3)
    assert "Review rv-7f3a REQUESTED  rule writes-need-approval" in requested
    assert "approvers from dba" in requested
    assert "UPDATE orders SET status = $1 WHERE id = $2" in requested
    approved = rendered(model, 5)  # the statement, recorded once the review ended
    assert "Decision: ALLOW  rule writes-need-approval" in approved
    assert "approved in review rv-7f3a by bob@example.com" in approved
    assert "$1=refunded  $2=1042" in approved
    assert "36.3 s before" in approved  # its review, shown with it
    assert "Review rv-7f3a APPROVED by bob@example.com" in approved
    assert "bob@example.com: refund ticket OPS-1289" in approved
    assert "after 21 ms" in approved and "RESULT UPDATE 1" in approved
    failed = rendered(model, 7)
    assert 'ERROR 42P01  relation "order_archive" does not exist' in failed
    assert "Review" not in failed  # the next review belongs to the next statement
    denied = rendered(model, 11)
    assert "Decision: DENY  rule writes-need-approval" in denied
    assert "Review rv-81c2 DENIED by carol@example.com" in denied
    assert "reason: orders are never deleted, cancel it instead" in denied
    capped = rendered(model, 12)
    assert "250 rows, 100 recorded (cap 100)" in capped


def test_http_detail_pretty_prints_json_bodies(public_key: Ed25519PublicKey) -> None:
    model = model_of("http", public_key)
    out = rendered(model, 0)
    assert "GET /v1/invoices?customer=42&limit=2" in out
    assert "authorization  ****" in out
    assert "HTTP 200 OK" in out
    assert '"currency": "EUR"' in out  # indented JSON, not the one-line body
    denied = rendered(model, 2)
    assert "Decision: DENY  rule no-agent-refunds" in denied and "HTTP 403 Forbidden" in denied
    capped = rendered(model, 4)
    assert "recorded 4.0 KiB (capped)" in capped


def test_hostile_payloads_render_without_control_characters(
    public_key: Ed25519PublicKey,
) -> None:
    model = model_of("hostile", public_key)
    assert model.integrity.status == "verified"  # signed: hostile content, honest recorder
    for index in range(len(model.events)):
        out = rendered(model, index)
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out, index
    assert "␛]52;c;ZXZpbA==␇" in rendered(model, 0)
    assert "[red]markup[/red]" in rendered(model, 0)


def test_terminal_output_records_are_merged_into_timeline_rows(
    public_key: Ed25519PublicKey,
) -> None:
    model = model_of("ssh", public_key)
    assert model.is_terminal and model.terminal_size == (80, 24)
    outputs = [e for e in model.events if e.kind == "output"]
    assert len(outputs) == 5  # the two hostile records 1 ms apart are one row
    assert [e.kind for e in model.events if e.is_command] == ["exec", "exec", "exec"]


def test_jsonl_export_is_lossless_and_inert(
    tmp_path: Path, public_key: Ed25519PublicKey
) -> None:
    model = model_of("ssh", public_key)
    path = export_jsonl(model, tmp_path)
    assert os.stat(path).st_mode & 0o077 == 0
    raw = path.read_bytes()
    assert all(0x20 <= b < 0x7F or b == 0x0A for b in raw)  # ensure_ascii: no ESC survives
    lines = [json.loads(line) for line in raw.splitlines()]
    assert lines[0]["kind"] == "header" and lines[0]["payload"]["session_id"] == "golden-ssh-0001"
    assert lines[-1] == {"kind": "integrity", "status": "verified", "first_bad_frame": None,
                         "message": model.integrity.message, "truncated": False}
    records = [line for line in lines if "t" in line]
    assert len(records) == len(model.records)
    for rec, line in zip(model.records, records, strict=True):
        assert (line["t"], line["kind"]) == (rec.t, rec.kind)
        if rec.kind == "term_output":
            data = line["payload"]["data"]
            decoded = (data["utf8"].encode() if "utf8" in data
                       else base64.b64decode(data["base64"]))
            assert decoded == rec.payload["data"]  # the hostile bytes too (as base64)
    second = export_jsonl(model, tmp_path)
    assert second != path and second.name.endswith("-1.jsonl")  # never overwrites


def test_asciicast_export_keeps_drawing_and_drops_attacks(
    tmp_path: Path, public_key: Ed25519PublicKey
) -> None:
    model = model_of("ssh", public_key)
    lines = export_asciicast(model, tmp_path).read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (80, 24)
    events = [json.loads(line) for line in lines[1:]]
    times = [e[0] for e in events]
    assert times == sorted(times)
    assert {e[1] for e in events} == {"o", "i", "r", "m"}
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "\x1b[32mdeploy@web-1" in output  # colours survive
    for attack in ("\x1b]", "\x1b[6n", "\x1b[21t", "\x1bP", "\x1bZ", "\x1b[?1000h", "\x07"):
        assert attack not in output
    assert ["r", "100x30"] in [e[1:] for e in events]
    assert any(e[1] == "m" and e[2] == "exec: rm -rf /var/www/html (deny)" for e in events)


def test_asciicast_export_refuses_sessions_without_a_terminal(
    tmp_path: Path, public_key: Ed25519PublicKey
) -> None:
    with pytest.raises(ValueError, match="no terminal output"):
        export_asciicast(model_of("postgres", public_key), tmp_path)


def test_ten_megabyte_value_opens_and_renders_quickly(
    tmp_path: Path, public_key: Ed25519PublicKey
) -> None:
    # The writer caps records at 4 MiB; a file from elsewhere may hold more (the reader
    # allows 16 MiB strings), so the cap is lifted while writing this one.
    path = tmp_path / "huge.wgrec"
    with mock.patch.object(fmt, "MAX_RECORD_BYTES", 64 << 20):
        w = ScriptedWriter(path, {"session_id": "huge", "started": 1_767_258_000.0,
                                  "gateway_version": "0.1.0", "protocol": "postgres"},
                           signing_key())
        sql = "SELECT '" + ESC_TEXT * (10_000_000 // len(ESC_TEXT) + 1) + "'"
        w.at(1.0, "query", {"sql": sql, "decision": {"action": "allow", "rule": "r",
                                                      "reason": "r"}})
        w.at(2.0, "result", {"columns": ["c"], "rows": [[sql]], "row_count": 1})
        w.close(3.0, {"reason": "closed"})
    start = time.perf_counter()
    model = build_model(path, read_recording(path, public_key=public_key))
    out = rendered(model, 0)
    assert time.perf_counter() - start < 5
    assert len(sql) >= 10_000_000
    assert "more)" in out and len(out) < 200_000
    assert "\x1b" not in out
