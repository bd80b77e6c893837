"""The approvers' JSON API: reviews, grants, and a stream of events, over HTTPS.

Every request is authenticated with ``Authorization: Bearer <token>``, validated exactly as the
data listeners validate tokens. Approvers (members of any approver group) see and decide
everything their groups allow; anyone else sees only their own reviews and grants, and asks for
grants. Routes are matched exactly on the path as sent (no decoding, no normalisation), so
``/v1/%72eviews`` or ``//v1/reviews`` are simply not found (HOSTILE F.35). The API is documented
in docs/admin-api.md and docs/admin-openapi.yaml.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import trio

from gateway.admin.http import HTTPConnection, HTTPError, Request
from gateway.approvals import ApprovalRefused, ApprovalService, GrantState, ReviewState
from gateway.auth.tokens import strict_json_object
from gateway.errors import AuthenticationError
from gateway.model import Identity
from gateway.tls import TLSStream

if TYPE_CHECKING:
    from gateway.runtime import Gateway

log = logging.getLogger("wardgate.admin")

MAX_CONNECTIONS = 64  # approvers and their tools; the data listeners have their own cap
MAX_REQUESTS_PER_CONNECTION = 100
HEARTBEAT = 15.0  # seconds between keep-alive comments on the event stream
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_ITEM = re.compile(
    r"/v1/(?P<kind>reviews|grants)(?:/(?P<id>[A-Za-z0-9-]{1,64})(?:/(?P<action>[a-z]+))?)?"
)
_ACTIONS = {"reviews": ("approve", "deny"), "grants": ("approve", "deny", "revoke")}
_QUERY_KEYS = frozenset({"state", "limit"})
_JSON_TYPE = re.compile(r"application/json\s*(;\s*charset\s*=\s*\"?utf-8\"?\s*)?", re.IGNORECASE)

Handler = Callable[[Request, Identity, ApprovalService], Awaitable[tuple[int, Any]]]


def _bad(message: str) -> HTTPError:
    return HTTPError(400, "bad_request", message)


class AdminServer:
    """Serves the admin API on connections accepted by :func:`gateway.server.serve`."""

    def __init__(self, gateway: Gateway, *, clock: Callable[[], float] = time.time) -> None:
        if gateway.approvals is None:
            raise ValueError("the admin API needs the gateway's approval service")
        self.gateway = gateway
        self.approvals: ApprovalService = gateway.approvals
        self.connections = 0
        self._clock = clock

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One connection, from TLS handshake to close. Never raises (except cancellation):
        trio's serve_listeners would take the whole listener down."""
        if self.connections >= MAX_CONNECTIONS:
            log.warning("admin connection limit %d reached; refusing", MAX_CONNECTIONS)
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        tls = TLSStream.server(stream, self.gateway.server_tls(alpn=(b"http/1.1",)))
        try:
            await self._serve(tls)
        except* trio.Cancelled:
            raise
        except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass  # the client went away or stalled; nothing to tell it
        except* Exception as group:
            for exc in group.exceptions:
                log.error("admin connection ended with %s: %s", type(exc).__name__, exc,
                          exc_info=log.isEnabledFor(logging.DEBUG))  # fmt: skip
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(tls)

    async def _serve(self, tls: TLSStream) -> None:
        with trio.fail_after(self.gateway.config.limits.handshake_timeout):
            await tls.do_handshake()
        http = HTTPConnection(tls)
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                request = await http.read_request()
                if request is None:
                    return
                await self._respond(http, request)
            except HTTPError as error:
                await http.send_error(error)
            if not http.next_cycle():
                return

    async def _respond(self, http: HTTPConnection, request: Request) -> None:
        identity = await self._authenticate(request)
        if request.path == "/v1/events":
            _only(request, "GET")
            _no_query(request)
            await self._events(http, identity)
            return
        handler = self._route(request)
        try:
            status, payload = await handler(request, identity, self.approvals)
        except ApprovalRefused as exc:
            raise HTTPError(exc.http_status, exc.code, str(exc)) from None
        await http.send_json(status, payload)

    async def _authenticate(self, request: Request) -> Identity:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = (b"www-authenticate", b'Bearer realm="wardgate"')
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPError(401, "unauthenticated", "send Authorization: Bearer <token>",
                            headers=[challenge])  # fmt: skip
        try:
            return await self.gateway.authenticate(token.strip())
        except AuthenticationError as exc:
            invalid = (b"www-authenticate", b'Bearer realm="wardgate", error="invalid_token"')
            raise HTTPError(401, "unauthenticated", str(exc), headers=[invalid]) from None

    def _route(self, request: Request) -> Handler:
        if request.path == "/v1/me":
            _only(request, "GET")
            _no_query(request)
            return _me
        match = _ITEM.fullmatch(request.path)
        if match is None:
            raise HTTPError(404, "not_found", f"no such resource: {request.path[:200]}")
        kind, item, action = match.group("kind", "id", "action")
        if item is None:
            _only(request, "GET", "POST" if kind == "grants" else "GET")
            if request.method == "POST":
                _no_query(request)
                return _request_grant
            return _list_reviews if kind == "reviews" else _list_grants
        _no_query(request)
        if action is None:
            _only(request, "GET")
            return _show_review if kind == "reviews" else _show_grant
        if action not in _ACTIONS[kind]:
            raise HTTPError(404, "not_found", f"no such resource: {request.path[:200]}")
        _only(request, "POST")
        return _DECISIONS[(kind, action)]

    async def _events(self, http: HTTPConnection, identity: Identity) -> None:
        """Server-sent events: new reviews, decisions and grant changes the caller may see,
        until the caller's token expires or the client goes away."""
        approver = self.approvals.approvers.is_approver(identity)
        with self.approvals.subscribe() as events:
            await http.start_stream(b"text/event-stream")
            await http.send_chunk(b"retry: 3000\n: wardgate approval events\n\n")
            sequence = 0
            with trio.move_on_after(max(0.0, identity.expires_at - self._clock())):
                while True:
                    with trio.move_on_after(HEARTBEAT) as beat:
                        try:
                            event = await events.receive()
                        except trio.EndOfChannel:
                            break  # fell too far behind; the client reconnects and re-lists
                    if beat.cancelled_caught:
                        await http.send_chunk(b": keep-alive\n\n")
                        continue
                    if not approver and event.requester != identity.subject:
                        continue
                    sequence += 1
                    data = json.dumps(event.item.to_json(), ensure_ascii=True)
                    await http.send_chunk(
                        f"id: {sequence}\nevent: {event.kind}\ndata: {data}\n\n".encode("ascii")
                    )
            await http.end_stream()


# --- request helpers ---------------------------------------------------------------------------


def _only(request: Request, *methods: str) -> None:
    if request.method not in methods:
        allowed = ", ".join(sorted(set(methods)))
        raise HTTPError(405, "method_not_allowed", f"use {allowed} here",
                        headers=[(b"allow", allowed.encode("ascii"))])  # fmt: skip


def _no_query(request: Request) -> None:
    if request.query:
        raise _bad("this resource takes no query parameters")


def _query(request: Request, states: type[ReviewState | GrantState]) -> tuple[Any, int]:
    try:
        pairs = parse_qsl(request.query, strict_parsing=bool(request.query), max_num_fields=20)
    except ValueError:
        raise _bad("malformed query string") from None
    wanted: set[Any] = set()
    limit = DEFAULT_LIMIT
    for key, value in pairs:
        if key not in _QUERY_KEYS:
            raise _bad(f"unknown query parameter {key[:40]!r}; use state and limit")
        if key == "limit":
            if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
                raise _bad(f"limit must be an integer from 1 to {MAX_LIMIT}")
            limit = int(value)
            continue
        for word in value.split(","):
            try:
                wanted.add(states(word))
            except ValueError:
                names = ", ".join(s.value for s in states)
                raise _bad(f"unknown state {word[:40]!r}; states are {names}") from None
    return (frozenset(wanted) if wanted else None), limit


def _body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    if not request.body:
        return {}
    content_type = request.headers.get("content-type", "")
    if not _JSON_TYPE.fullmatch(content_type.strip()):
        raise HTTPError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = strict_json_object(request.body)
    except ValueError:
        raise _bad("the body must be a JSON object") from None
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad(f"unknown field {unknown[0][:40]!r}; fields are {', '.join(sorted(allowed))}")
    return body


def _reason(request: Request) -> str:
    reason = _body(request, frozenset({"reason"})).get("reason", "")
    if not isinstance(reason, str):
        raise _bad("reason must be a string")
    return reason


def _item_id(request: Request) -> str:
    match = _ITEM.fullmatch(request.path)
    if match is None or match.group("id") is None:  # routed here only after it matched
        raise HTTPError(404, "not_found", "no such resource")
    return str(match.group("id"))


# --- handlers ----------------------------------------------------------------------------------


async def _me(request: Request, who: Identity, approvals: ApprovalService) -> tuple[int, Any]:
    return 200, {
        "subject": who.subject,
        "groups": sorted(who.groups),
        "approver": approvals.approvers.is_approver(who),
    }


async def _list_reviews(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    states, limit = _query(request, ReviewState)
    reviews = await approvals.list_reviews(who, states=states, limit=limit)
    return 200, {"reviews": [r.to_json() for r in reviews]}


async def _show_review(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    return 200, (await approvals.get_review(_item_id(request), who)).to_json()


async def _approve_review(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    return 200, (await approvals.approve(_item_id(request), who, _reason(request))).to_json()


async def _deny_review(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    return 200, (await approvals.deny(_item_id(request), who, _reason(request))).to_json()


async def _list_grants(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    states, limit = _query(request, GrantState)
    grants = await approvals.list_grants(who, states=states, limit=limit)
    return 200, {"grants": [g.to_json() for g in grants]}


async def _show_grant(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    return 200, (await approvals.get_grant(_item_id(request), who)).to_json()


async def _request_grant(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    body = _body(request, frozenset({"target", "grant", "duration", "reason"}))
    missing = [k for k in ("target", "grant", "duration", "reason") if k not in body]
    if missing:
        raise _bad(f"missing field(s): {', '.join(missing)}")
    grant = await approvals.request_grant(
        who, body["target"], body["grant"], body["duration"], body["reason"]
    )
    return 201, grant.to_json()


async def _approve_grant(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    return 200, (await approvals.approve_grant(_item_id(request), who, _reason(request))).to_json()


async def _deny_grant(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    return 200, (await approvals.deny_grant(_item_id(request), who, _reason(request))).to_json()


async def _revoke_grant(
    request: Request, who: Identity, approvals: ApprovalService
) -> tuple[int, Any]:
    return 200, (await approvals.revoke_grant(_item_id(request), who, _reason(request))).to_json()


_DECISIONS: dict[tuple[str, str], Handler] = {
    ("reviews", "approve"): _approve_review,
    ("reviews", "deny"): _deny_review,
    ("grants", "approve"): _approve_grant,
    ("grants", "deny"): _deny_grant,
    ("grants", "revoke"): _revoke_grant,
}
