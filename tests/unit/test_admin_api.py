"""The admin API over real TLS, with real tokens from the embedded issuer, and a stdlib client."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gateway.admin.client import AdminAPIError, AdminClient
from gateway.config import load_config
from gateway.model import Action, Decision, Identity
from gateway.plugins import PluginHost
from gateway.runtime import Gateway, build_gateway
from gateway.server import ServerState, serve
from tests.support.approvals import DELETE, TARGET, hold_delete

CONF = """
[gateway]
data_dir = "state"

[admin]
bind = "127.0.0.1:0"

[approvals]
approver_groups = ["dba"]

[[rules]]
name = "deletes need review"
groups = ["ai-agents"]
sql = ["delete"]
action = "review"

[[rules]]
name = "writes with a grant"
groups = ["ai-agents"]
sql = ["update"]
action = "allow"
grant = "write"
"""


def make_gateway(tmp_path: Path, extra: str = "") -> Gateway:
    conf = tmp_path / "conf.d"
    conf.mkdir(exist_ok=True)
    (conf / "10.toml").write_text(CONF + extra)
    config = dataclasses.replace(load_config(conf), listeners={}, targets={"pg-prod": TARGET})
    host = PluginHost()
    host.load_entry_points()
    return build_gateway(config, plugins=host)


def token(gw: Gateway, sub: str, *groups: str, ttl: float = 900) -> str:
    assert gw.issuer is not None
    return gw.issuer.mint(subject=sub, groups=list(groups), ttl=ttl, audience="wardgate")


@asynccontextmanager
async def running(gw: Gateway) -> AsyncIterator[tuple[int, trio.Nursery]]:
    async with trio.open_nursery() as nursery:
        state: ServerState = await nursery.start(serve, gw)
        try:
            yield state.addresses["admin"][1], nursery
        finally:
            state.shutdown()


class Client:
    """The stdlib client, driven from a worker thread so the gateway keeps running."""

    def __init__(self, gw: Gateway, port: int, tok: str) -> None:
        self.sync = AdminClient(
            f"https://127.0.0.1:{port}", tok, ca_file=str(gw.cert_file), timeout=10
        )

    async def __call__(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        call = functools.partial(self.sync.request, method, path, payload)
        return await trio.to_thread.run_sync(call)

    async def refused(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> AdminAPIError:
        with pytest.raises(AdminAPIError) as info:
            await self(method, path, payload)
        return info.value


ALICE = Identity("alice", frozenset({"ai-agents"}), expires_at=4e9, issuer="test")


async def test_approver_lists_and_approves_a_held_command(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, nursery):
        bob = Client(gw, port, token(gw, "bob", "dba"))
        results: list[Decision] = []
        review_id = await hold_delete(gw, nursery, ALICE, ["42"], results)

        listing = await bob("GET", "/v1/reviews?state=pending")
        assert [r["id"] for r in listing["reviews"]] == [review_id]
        shown = await bob("GET", f"/v1/reviews/{review_id}")
        assert (shown["identity"], shown["target"], shown["command"], shown["params"]) == (
            "alice",
            "pg-prod",
            DELETE.text,
            ["42"],
        )
        approved = await bob("POST", f"/v1/reviews/{review_id}/approve", {"reason": "ticket 9"})
        assert approved["state"] == "approved"
        assert approved["approvals"][0]["approver"] == "bob"
        with trio.fail_after(10):
            while not results:
                await trio.sleep(0.01)
    assert results[0].action is Action.ALLOW


async def test_self_approval_and_non_approvers_are_refused(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, nursery):
        results: list[Decision] = []
        review_id = await hold_delete(gw, nursery, ALICE, ["1"], results)
        # alice is also in "dba" in this token: she still may not approve her own review.
        alice = Client(gw, port, token(gw, "alice", "ai-agents", "dba"))
        refusal = await alice.refused("POST", f"/v1/reviews/{review_id}/approve")
        assert (refusal.status, refusal.code) == (403, "self_approval")
        assert "cannot decide" in str(refusal)

        mallory = Client(gw, port, token(gw, "mallory", "ai-agents"))
        refusal = await mallory.refused("POST", f"/v1/reviews/{review_id}/approve")
        assert refusal.status == 404  # a non-approver cannot even see it
        assert (await mallory("GET", "/v1/reviews"))["reviews"] == []

        requester = Client(gw, port, token(gw, "alice", "ai-agents"))
        own = await requester("GET", "/v1/reviews")
        assert [r["id"] for r in own["reviews"]] == [review_id]
        assert (await requester("GET", "/v1/me")) == {
            "subject": "alice",
            "groups": ["ai-agents"],
            "approver": False,
        }

        bob = Client(gw, port, token(gw, "bob", "dba"))
        await bob("POST", f"/v1/reviews/{review_id}/deny", {"reason": "no"})
        refusal = await bob.refused("POST", f"/v1/reviews/{review_id}/approve")
        assert (refusal.status, refusal.code) == (409, "conflict")
        with trio.fail_after(10):
            while not results:
                await trio.sleep(0.01)
    assert results[0].action is Action.DENY and "denied by bob: no" in results[0].reason


async def test_tokens_are_required_and_checked(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        for bad in ("", "not-a-jwt", token(gw, "bob", "dba", ttl=1)[:-4] + "AAAA"):
            refusal = await Client(gw, port, bad).refused("GET", "/v1/reviews")
            assert (refusal.status, refusal.code) == (401, "unauthenticated")
        # alg "none": a token anyone can forge (HOSTILE B.5)
        forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IiLCJncm91cHMiOlsiZGJhIl19."
        refusal = await Client(gw, port, forged).refused("GET", "/v1/reviews")
        assert refusal.status == 401


async def test_grants_through_the_api(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        alice = Client(gw, port, token(gw, "alice", "ai-agents"))
        bob = Client(gw, port, token(gw, "bob", "dba"))
        asked = await alice(
            "POST",
            "/v1/grants",
            {"target": "pg-prod", "grant": "write", "duration": 1800, "reason": "incident 42"},
        )
        assert (asked["state"], asked["command"]) == ("pending", "grant write for 30m")
        refusal = await alice.refused("POST", f"/v1/grants/{asked['id']}/approve")
        assert refusal.code == "self_approval"
        pending = await bob("GET", "/v1/grants?state=pending")
        assert [g["id"] for g in pending["grants"]] == [asked["id"]]
        approved = await bob("POST", f"/v1/grants/{asked['id']}/approve", {"reason": "ok"})
        assert approved["state"] == "approved" and approved["expires_at"]
        assert gw.approvals is not None
        assert gw.approvals.active_grants("alice", "pg-prod") == {"write"}
        revoked = await alice("POST", f"/v1/grants/{asked['id']}/revoke", {"reason": "done"})
        assert revoked["state"] == "revoked"
        assert gw.approvals.active_grants("alice", "pg-prod") == frozenset()
        refusal = await alice.refused(
            "POST", "/v1/grants", {"target": "pg-prod", "grant": "write", "duration": 1800}
        )
        assert (refusal.status, str(refusal)) == (400, "missing field(s): reason")


async def test_bad_requests_get_json_errors(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        bob = Client(gw, port, token(gw, "bob", "dba"))
        cases = [
            ("GET", "/v1/reviews?state=bogus", None, 400, "unknown state"),
            ("GET", "/v1/reviews?limit=0", None, 400, "limit must be"),
            ("GET", "/v1/reviews?sort=id", None, 400, "unknown query parameter"),
            ("GET", "/v1/%72eviews", None, 404, "no such resource"),
            ("GET", "//v1/reviews", None, 404, "no such resource"),
            ("GET", "/v1/reviews/r-0000000000", None, 404, "no review"),
            ("POST", "/v1/reviews", None, 405, "use GET"),
            ("GET", "/v1/reviews/r-1/approve", None, 405, "use POST"),
            ("POST", "/v1/reviews/r-1/revoke", None, 404, "no such resource"),
            (
                "POST",
                "/v1/grants",
                {
                    "target": "pg-prod",
                    "grant": "write",
                    "duration": 60,
                    "reason": "x",
                    "admin": True,
                },
                400,
                "unknown field 'admin'",
            ),
            (
                "POST",
                "/v1/grants",
                {"target": "pg-prod", "grant": "write", "duration": True, "reason": "x"},
                400,
                "positive number",
            ),
        ]
        for method, path, payload, status, message in cases:
            refusal = await bob.refused(method, path, payload)
            assert refusal.status == status, (path, refusal)
            assert message in str(refusal), (path, refusal)


async def test_event_stream_reports_new_reviews_and_decisions(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, nursery):
        bob = Client(gw, port, token(gw, "bob", "dba"))
        received: list[tuple[str, dict[str, Any]]] = []

        def follow() -> None:
            for kind, item in bob.sync.events():
                received.append((kind, item))
                if kind == "review_approved":
                    return

        async def watch() -> None:
            await trio.to_thread.run_sync(follow)

        nursery.start_soon(watch)
        assert gw.approvals is not None
        with trio.fail_after(10):
            while gw.approvals.hub.subscribers == 0:
                await trio.sleep(0.01)
        results: list[Decision] = []
        review_id = await hold_delete(gw, nursery, ALICE, ["7"], results)
        await bob("POST", f"/v1/reviews/{review_id}/approve")
        with trio.fail_after(10):
            while len(received) < 2:
                await trio.sleep(0.01)
    assert [(k, i["id"]) for k, i in received] == [
        ("review_requested", review_id),
        ("review_approved", review_id),
    ]
    assert received[0][1]["command"] == DELETE.text


async def test_client_must_trust_the_gateway_certificate(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        untrusting = AdminClient(f"https://127.0.0.1:{port}", token(gw, "bob", "dba"), timeout=10)
        with pytest.raises(AdminAPIError, match="cannot trust"):
            await trio.to_thread.run_sync(untrusting.request, "GET", "/v1/reviews")


async def test_admin_address_is_reported_and_absent_without_the_table(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    without = dataclasses.replace(gw, config=dataclasses.replace(gw.config, admin=None))
    async with trio.open_nursery() as nursery:
        state: ServerState = await nursery.start(serve, without)
        assert "admin" not in state.addresses
        state.shutdown()


async def test_every_path_in_the_openapi_document_is_served(tmp_path: Path) -> None:
    import re

    spec = (Path(__file__).resolve().parents[2] / "docs" / "admin-openapi.yaml").read_text()
    paths = re.findall(r"^  (/v1/[^:]*):$", spec, flags=re.MULTILINE)
    assert len(paths) == 11
    gw = make_gateway(tmp_path)
    async with running(gw) as (port, _):
        bob = Client(gw, port, token(gw, "bob", "dba"))
        for path in paths:
            if path == "/v1/events":
                continue  # a stream; covered above
            concrete = path.replace("{id}", "r-0000000000" if "reviews" in path else "g-0000000000")
            method = "POST" if path.rsplit("/", 1)[-1] in ("approve", "deny", "revoke") else "GET"
            try:
                await bob(method, concrete, {} if method == "POST" else None)
            except AdminAPIError as exc:
                assert "no such resource" not in str(exc), path
                assert exc.status in (404, 405), (path, exc)
