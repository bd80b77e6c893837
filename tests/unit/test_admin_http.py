"""Hostile HTTP against the admin listener (HOSTILE F.32-34, J.57): raw bytes over real TLS."""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path

import pytest
import trio

import gateway.admin.api as admin_api
import gateway.admin.http as admin_http
from gateway.runtime import Gateway
from tests.unit.test_admin_api import make_gateway, running, token


async def connect(gw: Gateway, port: int) -> trio.SSLStream[trio.SocketStream]:
    ctx = ssl.create_default_context(cafile=str(gw.cert_file))
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=ctx)
    await stream.do_handshake()
    return stream


async def read_all(stream: trio.abc.Stream) -> bytes:
    chunks = []
    with trio.fail_after(10):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


async def exchange(gw: Gateway, port: int, data: bytes) -> bytes:
    stream = await connect(gw, port)
    await stream.send_all(data)
    return await read_all(stream)


def statuses(raw: bytes) -> list[int]:
    # Every JSON body ends with a newline, so each status line starts a line.
    return [int(m.group(1)) for m in re.finditer(rb"(?m)^HTTP/1\.1 (\d{3}) ", raw)]


def error_code(raw: bytes) -> str:
    body = raw.split(b"\r\n\r\n", 1)[1]
    return str(json.loads(body)["error"]["code"])


def get(tok: str, path: str = "/v1/reviews", extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n{extra}\r\n"
    ).encode()


async def test_cl_te_request_smuggling_is_refused_and_the_connection_closed(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "bob", "dba")
        smuggled = get(tok, "/v1/me").decode()
        attack = (
            f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            "Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
            f"\r\n0\r\n\r\n{smuggled}"
        ).encode()
        raw = await exchange(gw, port, attack)
    assert statuses(raw) == [400]  # the smuggled request is never answered
    assert b"connection: close" in raw.lower()


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!", 400),
        ("Content-Length: 5, 6\r\n", b"hello!", 400),
        ("Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n", 501),
        ("Transfer-Encoding: chunked\r\n", b"10000000000000000\r\n", 411),
        ("Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX0\r\n\r\n", 411),
        ("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n", 400),
        ("X-Folded: a\r\n b\r\n", b"", 400),
        ("Content-Length: 99999999\r\n", b"", 413),
    ],
    ids=[
        "two lengths",
        "length list",
        "te list",
        "huge chunk",
        "bad chunk trailer",
        "space before colon",
        "obs-fold",
        "oversize length",
    ],
)
async def test_framing_attacks_get_an_error_and_a_close(
    tmp_path: Path, headers: str, body: bytes, status: int
) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "bob", "dba")
        request = (
            f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
            f"Content-Type: application/json\r\n{headers}\r\n"
        ).encode() + body
        raw = await exchange(gw, port, request)
    assert statuses(raw) == [status]


async def test_oversize_body_is_refused_before_it_is_read(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "bob", "dba")
        body = b"x" * (admin_http.MAX_BODY_BYTES + 1)
        raw = await exchange(
            gw,
            port,
            (
                f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body,
        )
        assert statuses(raw) == [413]


async def test_oversize_header_block(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "bob", "dba")
        raw = await exchange(gw, port, get(tok, extra="X-Big: " + "a" * 20000 + "\r\n"))
        assert statuses(raw) == [431]


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "bob", "dba")
        raw = await exchange(
            gw,
            port,
            get(tok, "/v1/me")
            + get(tok, "/v1/nope")
            + get(tok, "/v1/reviews", "Connection: close\r\n"),
        )
    assert statuses(raw) == [200, 404, 200]


async def test_obs_fold_in_a_pipelined_request_is_caught(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "bob", "dba")
        raw = await exchange(gw, port, get(tok, "/v1/me") + get(tok, "/v1/me", "X-A: 1\r\n\t2\r\n"))
    assert statuses(raw) == [200, 400]


async def test_headers_that_may_appear_once(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "bob", "dba")
        mallory = token(gw, "mallory", "ai-agents")
        raw = await exchange(gw, port, get(tok, extra=f"Authorization: Bearer {mallory}\r\n"))
        assert statuses(raw) == [400]


async def test_body_must_be_json(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "alice", "ai-agents")
        for content_type, body, status in [
            ("text/plain", b'{"reason": "x"}', 415),
            ("application/json", b'{"reason": "x", "reason": "y"}', 400),
            ("application/json", b"[1]", 400),
            ("application/json", b'{"target": NaN}', 400),
        ]:
            raw = await exchange(
                gw,
                port,
                (
                    f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
                + body,
            )
            assert statuses(raw) == [status], body


async def test_expect_continue_is_honoured(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "alice", "ai-agents")
        body = json.dumps(
            {"target": "pg-prod", "grant": "write", "duration": 60, "reason": "x"}
        ).encode()
        stream = await connect(gw, port)
        await stream.send_all(
            (
                f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Expect: 100-continue\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        with trio.fail_after(10):
            interim = await stream.receive_some(65536)
        assert interim.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(body)
        assert statuses(await read_all(stream)) == [201]


async def test_slow_request_times_out_with_408(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOSTILE J.57: one byte at a time must not hold a connection open forever."""
    monkeypatch.setattr(admin_http, "REQUEST_TIMEOUT", 0.3)
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        stream = await connect(gw, port)
        await stream.send_all(b"GET /v1/me HTTP/1.1\r\nHost: x\r\n")  # and never finishes
        raw = await read_all(stream)
    assert statuses(raw) == [408]


async def test_idle_connection_is_closed_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_http, "IDLE_TIMEOUT", 0.3)
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        stream = await connect(gw, port)
        assert await read_all(stream) == b""


async def test_stalled_tls_handshake_is_dropped(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "\n[limits]\nhandshake_timeout = 0.3\n")
    async with running(gw) as (port, _):
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(10):
            assert await sock.receive_some(1024) == b""  # closed without a word


async def test_connections_over_the_cap_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_api, "MAX_CONNECTIONS", 1)
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        tok = token(gw, "bob", "dba")
        holder = await connect(gw, port)
        with pytest.raises((trio.BrokenResourceError, ssl.SSLError, OSError)):
            refused = await connect(gw, port)
            await refused.send_all(get(tok, "/v1/me"))
            if not await read_all(refused):
                raise trio.BrokenResourceError("closed")
        await holder.send_all(get(tok, "/v1/me", "Connection: close\r\n"))
        assert statuses(await read_all(holder)) == [200]
