"""HTTP/1.1 for the admin API: h11 (sans-IO) driven over a trio stream, with every phase bounded.

h11 parses and enforces most of RFC 9112 (conflicting Content-Length values, malformed header
lines, oversize header blocks). What it leaves to its caller is done here (HOSTILE F.32-34):

* a request carrying both Content-Length and Transfer-Encoding is refused (400, then close), where
  h11 would let Transfer-Encoding win;
* request bodies must be framed by Content-Length: the API's bodies are small JSON documents, so
  chunked uploads are refused with 411, and with them every chunk-size and trailer trick;
* obsolete line folding is refused (h11 would unfold it, so it is looked for in the raw bytes);
* bodies are capped before they are read, and each phase has a deadline: the first byte of a
  request (keep-alive idle), the rest of the request once it started, and each write (a client that
  stops reading cannot pin a task).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import h11
import trio

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may wait for its next request
REQUEST_TIMEOUT = 10.0  # seconds from a request's first byte to its last
WRITE_TIMEOUT = 10.0  # seconds for one response (or one streamed event) to be taken by the client
_CHUNK = 16 * 1024
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_FOLDED_LINE = re.compile(rb"\n[ \t]")

_BASE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"server", b"wardgate-admin"),
]


class HTTPError(Exception):
    """A request that gets an error response; ``close`` ends the connection after it."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False,
                 headers: Iterable[tuple[bytes, bytes]] = ()) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.code = code
        self.close = close
        self.headers = list(headers)


@dataclass
class Request:
    method: str
    target: str  # as sent: origin-form path plus query
    headers: dict[str, str]  # lower-case names; names that may appear once only
    body: bytes = b""
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


class HTTPConnection:
    """One client connection; serves requests one after another (keep-alive)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.closing = False

    # -- reading ----------------------------------------------------------------------------
    async def read_request(self) -> Request | None:
        """The next complete request, or None when the client closed or idled out.

        Raises :class:`HTTPError` for a request that must be refused.
        """
        idle_deadline = trio.current_time() + IDLE_TIMEOUT
        request_deadline: float | None = None
        request: Request | None = None
        body = bytearray()
        # The raw header block as received, checked for obs-fold before h11 unfolds it. Bytes a
        # pipelining client sent after the previous request are already inside h11.
        head = bytearray(self.conn.trailing_data[0])
        self._check_head(head)
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise HTTPError(
                    exc.error_status_hint, "bad_request", str(exc), close=True
                ) from None
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self._send(
                        h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                    )
                deadline = request_deadline if request_deadline is not None else idle_deadline
                with trio.move_on_at(deadline):
                    data = bytes(await self.stream.receive_some(_CHUNK))
                    if data and request_deadline is None:
                        request_deadline = trio.current_time() + REQUEST_TIMEOUT
                    if request is None:
                        head += data
                        self._check_head(head)
                    self.conn.receive_data(data)
                    continue
                if request_deadline is None:
                    return None  # idle keep-alive: close quietly
                raise HTTPError(408, "timeout", "the request was not sent in time", close=True)
            if isinstance(event, h11.Request):
                request = self._start(event)
                if request_deadline is None:
                    request_deadline = trio.current_time() + REQUEST_TIMEOUT
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise HTTPError(413, "too_large", "the request body is too large", close=True)
            elif isinstance(event, h11.EndOfMessage):
                if request is None:  # pragma: no cover - h11 orders events
                    raise HTTPError(400, "bad_request", "no request", close=True)
                request.body = bytes(body)
                return request
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None  # closed, possibly mid-request: nothing to answer

    @staticmethod
    def _check_head(head: bytearray) -> None:
        end = _END_OF_HEAD.search(head)
        size = end.start() if end else len(head)
        if size > MAX_HEADER_BYTES:
            # h11 bounds only an *incomplete* head; one that arrives whole is bounded here.
            raise HTTPError(431, "headers_too_large", "the request headers are too large",
                            close=True)  # fmt: skip
        block = head[: end.start() + 1] if end else head
        if _FOLDED_LINE.search(block):
            raise HTTPError(400, "bad_request", "obsolete header line folding", close=True)

    def _start(self, event: h11.Request) -> Request:
        headers: dict[str, str] = {}
        names = [name for name, _ in event.headers]
        if b"content-length" in names and b"transfer-encoding" in names:
            # RFC 9112 §6.3: such a message is a smuggling attempt as often as not; refuse it and
            # do not trust the connection with another request.
            raise HTTPError(
                400, "bad_request", "Content-Length together with Transfer-Encoding", close=True
            )
        if b"transfer-encoding" in names:
            raise HTTPError(
                411, "length_required", "send the body with a Content-Length", close=True
            )
        for name, value in event.headers:
            key = name.decode("ascii")
            if key in headers and key in ("authorization", "content-type", "host"):
                raise HTTPError(400, "bad_request", f"duplicate {key} header", close=True)
            headers[key] = value.decode("latin-1")
        length = headers.get("content-length")
        if length is not None and int(length) > MAX_BODY_BYTES:
            raise HTTPError(413, "too_large", "the request body is too large", close=True)
        return Request(
            method=event.method.decode("ascii"),
            target=event.target.decode("ascii", "replace"),
            headers=headers,
            raw_headers=list(event.headers),
        )

    # -- writing ----------------------------------------------------------------------------
    async def send_json(
        self,
        status: int,
        payload: Any,
        *,
        headers: Iterable[tuple[bytes, bytes]] = (),
        close: bool = False,
    ) -> None:
        body = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"
        all_headers = [
            *_BASE_HEADERS,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            *headers,
        ]
        if close:
            all_headers.append((b"connection", b"close"))
            self.closing = True
        with trio.fail_after(WRITE_TIMEOUT):
            await self._send(
                h11.Response(status_code=status, headers=all_headers, reason=_phrase(status))
            )
            await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())

    async def start_stream(self, content_type: bytes) -> None:
        """Begin a response whose body is written piecewise (server-sent events)."""
        self.closing = True  # a stream ends with the connection
        headers = [*_BASE_HEADERS, (b"content-type", content_type), (b"connection", b"close")]
        with trio.fail_after(WRITE_TIMEOUT):
            await self._send(h11.Response(status_code=200, headers=headers, reason=b"OK"))

    async def send_chunk(self, data: bytes) -> None:
        with trio.fail_after(WRITE_TIMEOUT):
            await self._send(h11.Data(data=data))

    async def end_stream(self) -> None:
        with trio.fail_after(WRITE_TIMEOUT):
            await self._send(h11.EndOfMessage())

    async def send_error(self, error: HTTPError) -> None:
        """Answer with the error if h11 still lets us respond; otherwise just close."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.closing = True
            return
        try:
            await self.send_json(
                error.status,
                {"error": {"code": error.code, "message": str(error)}},
                headers=error.headers,
                close=error.close,
            )
        except h11.LocalProtocolError:
            self.closing = True

    def next_cycle(self) -> bool:
        """After a response: may this connection carry another request?"""
        if self.closing:
            return False
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            try:
                self.conn.start_next_cycle()
            except h11.LocalProtocolError:
                return False
            return True
        return False

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send_all(data)


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""
