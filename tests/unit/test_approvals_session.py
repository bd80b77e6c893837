"""Session.request_approval and grant use, through a real gateway and its recordings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gateway.cli import main as cli_main
from gateway.config import load_config
from gateway.model import Action, Category, Command, Decision, Identity, Target
from gateway.plugins import PluginHost
from gateway.recording import read_recording
from gateway.runtime import Gateway, build_gateway
from gateway.session import Session

ALICE = Identity("alice", frozenset({"ai-agents"}), expires_at=4e9, issuer="test")
BOB = Identity("bob", frozenset({"dba"}), expires_at=4e9, issuer="test")
TARGET = Target("pg-prod", "postgres", "127.0.0.1", 5432)
DELETE = Command(
    "postgres", "DELETE FROM t WHERE id = $1", frozenset({"delete"}), frozenset({Category.WRITE})
)

RULES = """
[approvals]
approver_groups = ["dba"]
timeout = 60

[[rules]]
name = "deletes need review"
groups = ["ai-agents"]
sql = ["delete"]
action = "review"
reason = "a person approves deletes"

[[rules]]
name = "updates with a grant"
groups = ["ai-agents"]
sql = ["update"]
action = "allow"
grant = "write"
"""


def make_gateway(tmp_path: Path) -> Gateway:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "10.toml").write_text('[gateway]\ndata_dir = "state"\n' + RULES)
    config = dataclasses.replace(load_config(conf), listeners={}, targets={"pg-prod": TARGET})
    host = PluginHost()
    host.load_entry_points()
    return build_gateway(config, plugins=host)


async def _approval(session: Session, gw: Gateway, decide: str | None, told: list[str]) -> Decision:
    decision = session.authorize(DELETE)
    assert decision.action is Action.REVIEW
    result: list[Decision] = []

    async def waiting(review_id: str) -> None:
        told.append(review_id)

    async def run() -> None:
        result.append(
            await session.request_approval(
                DELETE, decision, text=DELETE.text, params=["5"], on_waiting=waiting
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        assert told and not result  # the client was told the id before anyone decided
        assert gw.approvals is not None
        if decide == "approve":
            await gw.approvals.approve(told[-1], BOB, "checked the row")
        elif decide == "deny":
            await gw.approvals.deny(told[-1], BOB, "wrong table")
    return result[0]


def _records(gw: Gateway) -> list[tuple[str, Any]]:
    (path,) = gw.recordings.list()
    rec = read_recording(path, public_key=gw._signing_key.public_key())
    assert rec.integrity.status == "verified"
    return [(r.kind, r.payload) for r in rec.records]


async def test_approved_command_is_allowed_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = make_gateway(tmp_path)
    told: list[str] = []
    async with gw.session(identity=ALICE, target=TARGET, protocol="postgres", peer="t") as s:
        decision = await _approval(s, gw, "approve", told)
    assert decision.action is Action.ALLOW
    assert decision.rule == "deletes need review"
    assert decision.reason == f"approved in review {told[0]} by bob"
    kinds = {kind: payload for kind, payload in _records(gw)}
    assert kinds["review_requested"]["review"] == told[0]
    assert kinds["review_requested"]["params"] == ["5"]
    approved = kinds["review_approved"]
    assert approved["approvers"][0]["subject"] == "bob"
    assert approved["approvers"][0]["reason"] == "checked the row"
    # An auditor sees the same through the CLI.
    path = str(gw.recordings.list()[0])
    assert cli_main(["-c", str(tmp_path / "conf.d"), "recordings", "show", "--json", path]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"review_requested", "review_approved"} <= {line["kind"] for line in lines}
    await gw.aclose()


async def test_denied_command_gets_the_approvers_reason(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    told: list[str] = []
    async with gw.session(identity=ALICE, target=TARGET, protocol="postgres", peer="t") as s:
        decision = await _approval(s, gw, "deny", told)
    assert decision.action is Action.DENY
    assert decision.reason == f"review {told[0]} was denied by bob: wrong table"
    denied = [payload for kind, payload in _records(gw) if kind == "review_denied"]
    assert [(d["review"], d["by"], d["reason"]) for d in denied] == [
        (told[0], "bob", "wrong table")
    ]
    await gw.aclose()


async def test_timeout_is_a_denial_that_says_so(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gw = make_gateway(tmp_path)
    told: list[str] = []
    async with gw.session(identity=ALICE, target=TARGET, protocol="postgres", peer="t") as s:
        decision = await _approval(s, gw, None, told)
    assert decision.action is Action.DENY
    assert decision.reason == f"review {told[0]} timed out after 60 s without a decision"
    assert ("review_timed_out", {"review": told[0], "after": 60}) in _records(gw)
    await gw.aclose()


async def test_disconnect_while_waiting_cancels_and_records(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    told: list[str] = []
    async with gw.session(identity=ALICE, target=TARGET, protocol="postgres", peer="t") as s:
        decision = s.authorize(DELETE)

        async def waiting(review_id: str) -> None:
            told.append(review_id)

        with trio.move_on_after(5) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: s.request_approval(
                        DELETE, decision, text=DELETE.text, params=[], on_waiting=waiting
                    )
                )
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        assert not scope.cancelled_caught
    assert gw.approvals is not None
    review = await gw.approvals.get_review(told[0], BOB)
    assert str(review.state) == "cancelled"
    assert any(kind == "review_cancelled" for kind, _ in _records(gw))
    await gw.aclose()


async def test_pending_cap_is_an_immediate_denial(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    assert gw.approvals is not None
    gw.approvals.settings = dataclasses.replace(gw.approvals.settings, max_pending_per_identity=1)
    async with gw.session(identity=ALICE, target=TARGET, protocol="postgres", peer="t") as s:
        decision = s.authorize(DELETE)

        async def waiting(review_id: str) -> None:
            pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: s.request_approval(
                    DELETE,
                    decision,
                    text="DELETE FROM t WHERE id = 1",
                    params=[],
                    on_waiting=waiting,
                )
            )
            await trio.testing.wait_all_tasks_blocked()
            refused = await s.request_approval(
                DELETE, decision, text="DELETE FROM t WHERE id = 2", params=[], on_waiting=waiting
            )
            nursery.cancel_scope.cancel()
    assert refused.action is Action.DENY and "already has 1 commands waiting" in refused.reason
    assert any(kind == "review_refused" for kind, _ in _records(gw))
    await gw.aclose()


async def test_grant_use_is_recorded_once_per_grant(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    assert gw.approvals is not None
    update = Command(
        "postgres", "UPDATE t SET x = 1", frozenset({"update"}), frozenset({Category.WRITE})
    )
    async with gw.session(identity=ALICE, target=TARGET, protocol="postgres", peer="t") as s:
        assert s.authorize(update).action is Action.DENY
        grant = await gw.approvals.request_grant(ALICE, "pg-prod", "write", 1800, "incident 7")
        await gw.approvals.approve_grant(grant.id, BOB, "ok")
        first = s.authorize(update)
        second = s.authorize(update)
    assert (first.action, first.rule, first.grant) == (
        Action.ALLOW,
        "updates with a grant",
        "write",
    )
    assert second.allowed
    used = [payload for kind, payload in _records(gw) if kind == "grant_used"]
    assert len(used) == 1
    assert (used[0]["grant_id"], used[0]["approved_by"], used[0]["grant"]) == (
        grant.id,
        "bob",
        "write",
    )
    await gw.aclose()


async def test_without_an_approval_service_a_review_is_refused(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.approvals = None
    async with gw.session(identity=ALICE, target=TARGET, protocol="postgres", peer="t") as s:
        decision = s.authorize(DELETE)

        async def waiting(review_id: str) -> None:
            raise AssertionError("no review exists")

        result = await s.request_approval(
            DELETE, decision, text=DELETE.text, params=[], on_waiting=waiting
        )
    assert result.action is Action.DENY and "approvals are not configured" in result.reason


async def test_statement_too_large_to_review_is_refused_at_once(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with gw.session(identity=ALICE, target=TARGET, protocol="postgres", peer="t") as s:
        decision = s.authorize(DELETE)

        async def waiting(review_id: str) -> None:
            raise AssertionError("nothing is held")

        huge = "DELETE FROM t WHERE id IN (" + ",".join(["1"] * 40_000) + ")"
        result = await s.request_approval(
            DELETE, decision, text=huge, params=[], on_waiting=waiting
        )
    assert result.action is Action.DENY and "too large to be reviewed" in result.reason
    await gw.aclose()


async def test_token_expiring_while_waiting_voids_the_approval(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    short = dataclasses.replace(ALICE, expires_at=1e9)  # already in the past by the time it runs
    clock_now = [0.0]
    gw.clock = lambda: clock_now[0]
    async with gw.session(identity=short, target=TARGET, protocol="postgres", peer="t") as s:
        told: list[str] = []
        clock_now[0] = 2e9  # the wait outlived the token
        decision = await _approval(s, gw, "approve", told)
    assert decision.action is Action.DENY and "token expired while it waited" in decision.reason
    await gw.aclose()
