"""Time-boxed grants: request, approval, expiry on an injected clock, revocation, restarts, and
rules that apply only while a grant is held."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from gateway.approvals import (
    ApprovalRefused,
    ApprovalService,
    Conflict,
    GrantState,
    NotApproverRefused,
    NotFound,
    PendingCapRefused,
    SelfApprovalRefused,
    SQLiteApprovalStore,
)
from gateway.config import ApprovalsConfig
from gateway.model import Action, Category, Command, Identity
from gateway.policy import PolicyEngine, Rule

ALICE = Identity("alice", frozenset({"ai-agents"}), expires_at=4e9, issuer="test")
BOB = Identity("bob", frozenset({"dba"}), expires_at=4e9, issuer="test")
MALLORY = Identity("mallory", frozenset({"ai-agents"}), expires_at=4e9, issuer="test")

WRITE_WITH_GRANT = Rule(
    "writes with a grant",
    Action.ALLOW,
    frozenset({"ai-agents"}),
    ("pg-*",),
    frozenset({"delete", "update"}),
    grant="write",
)
REVIEW_WRITES = Rule(
    "writes need review",
    Action.REVIEW,
    frozenset({"ai-agents"}),
    ("pg-*",),
    frozenset({"delete", "update"}),
)
RULES = (WRITE_WITH_GRANT,)
DELETE = Command("postgres", "DELETE FROM t", frozenset({"delete"}), frozenset({Category.WRITE}))


class Clock:
    """Wall-clock seconds under the test's control."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_service(tmp_path: Path, clock: Clock, *, max_pending: int = 10) -> ApprovalService:
    settings = ApprovalsConfig(
        approver_groups=frozenset({"dba"}),
        max_pending_per_identity=max_pending,
        max_grant_duration=4 * 3600,
    )
    return ApprovalService(
        SQLiteApprovalStore.in_data_dir(tmp_path),
        settings,
        rules=RULES,
        clock=clock,
        known_targets={"pg-prod", "pg-dev"},
        known_grants={"write"},
    )


async def test_grant_lifecycle_request_approve_expire(tmp_path: Path) -> None:
    clock = Clock()
    service = make_service(tmp_path, clock)
    grant = await service.request_grant(ALICE, "pg-prod", "write", 1800, "incident 42")
    assert grant.state is GrantState.PENDING
    assert service.active_grants("alice", "pg-prod") == frozenset()

    clock.now += 60  # the grant's half hour starts when it is approved, not when asked for
    approved = await service.approve_grant(grant.id, BOB, "go ahead")
    assert approved.expires_at == clock.now + 1800
    assert service.active_grants("alice", "pg-prod") == {"write"}
    assert service.active_grants("alice", "pg-dev") == frozenset()  # per target
    assert service.active_grants("mallory", "pg-prod") == frozenset()  # per identity

    clock.now += 1799
    assert service.active_grants("alice", "pg-prod") == {"write"}
    clock.now += 1
    assert service.active_grants("alice", "pg-prod") == frozenset()
    expired = await service.expire_grants()
    assert [g.id for g in expired] == [grant.id]
    stored = await service.get_grant(grant.id, ALICE)
    assert stored.state is GrantState.EXPIRED


async def test_expiry_task_records_expiry_on_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    base = 1_700_000_000.0

    def clock() -> float:
        return base + trio.current_time()

    settings = ApprovalsConfig(approver_groups=frozenset({"dba"}))
    service = ApprovalService(SQLiteApprovalStore.in_data_dir(tmp_path), settings, clock=clock)
    grant = await service.request_grant(ALICE, "pg-prod", "write", 600, "deploy")
    with service.subscribe() as events:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.run)
            await service.approve_grant(grant.id, BOB)
            started = trio.current_time()
            async for event in events:
                if event.kind == "grant_expired":
                    break
            assert trio.current_time() - started == pytest.approx(600)
            nursery.cancel_scope.cancel()
    assert (await service.get_grant(grant.id, BOB)).state is GrantState.EXPIRED


async def test_revoked_grant_stops_at_once(tmp_path: Path) -> None:
    clock = Clock()
    service = make_service(tmp_path, clock)
    grant = await service.request_grant(ALICE, "pg-prod", "write", 1800, "incident 42")
    await service.approve_grant(grant.id, BOB)
    with pytest.raises(NotApproverRefused):
        await service.revoke_grant(grant.id, MALLORY)  # not hers, and no approver
    revoked = await service.revoke_grant(grant.id, BOB, "done")
    assert revoked.state is GrantState.REVOKED
    assert revoked.decided_by is not None and revoked.decided_by.subject == "bob"
    assert service.active_grants("alice", "pg-prod") == frozenset()
    with pytest.raises(Conflict):
        await service.revoke_grant(grant.id, BOB)


async def test_requester_may_give_up_its_own_grant(tmp_path: Path) -> None:
    service = make_service(tmp_path, Clock())
    grant = await service.request_grant(ALICE, "pg-prod", "write", 1800, "incident 42")
    await service.approve_grant(grant.id, BOB)
    await service.revoke_grant(grant.id, ALICE, "finished early")
    assert service.active_grants("alice", "pg-prod") == frozenset()


async def test_grant_approval_rules(tmp_path: Path) -> None:
    service = make_service(tmp_path, Clock(), max_pending=2)
    grant = await service.request_grant(ALICE, "pg-prod", "write", 1800, "incident 42")
    approver_alice = Identity("alice", frozenset({"dba"}), expires_at=4e9, issuer="t")
    with pytest.raises(SelfApprovalRefused):
        await service.approve_grant(grant.id, approver_alice)
    with pytest.raises(NotApproverRefused):
        await service.approve_grant(grant.id, MALLORY)
    denied = await service.deny_grant(grant.id, BOB, "use the runbook")
    assert denied.state is GrantState.DENIED
    with pytest.raises(Conflict):
        await service.approve_grant(grant.id, BOB)
    with pytest.raises(NotFound):
        await service.approve_grant("g-nope", BOB)
    with pytest.raises(NotFound):
        await service.get_grant(grant.id, MALLORY)  # others' grants are invisible
    await service.request_grant(ALICE, "pg-prod", "write", 60, "a")
    await service.request_grant(ALICE, "pg-prod", "write", 60, "b")
    with pytest.raises(PendingCapRefused):
        await service.request_grant(ALICE, "pg-prod", "write", 60, "c")


@pytest.mark.parametrize(
    ("target", "grant", "duration", "reason", "message"),
    [
        ("pg-nope", "write", 60, "r", "unknown target"),
        ("pg-prod", "wrtie", 60, "r", "no rule uses the grant"),
        ("pg-prod", "write", 5 * 3600, "r", "longer than the allowed 4h"),
        ("pg-prod", "write", 0, "r", "positive"),
        ("pg-prod", "write", float("inf"), "r", "positive"),
        ("pg-prod", "write", 60, "   ", "reason is required"),
        ("pg-prod", "write", 60, "x\nFORGED LINE", "control"),
        ("pg-prod", "../write", 60, "r", "grant must be a name"),
    ],
)
async def test_bad_grant_requests_are_refused(
    tmp_path: Path, target: str, grant: str, duration: float, reason: str, message: str
) -> None:
    service = make_service(tmp_path, Clock())
    with pytest.raises(ApprovalRefused, match=message) as info:
        await service.request_grant(ALICE, target, grant, duration, reason)
    assert info.value.http_status in (400, 404)


async def test_restart_keeps_grants_and_expires_what_ran_out(tmp_path: Path) -> None:
    clock = Clock()
    first = make_service(tmp_path, clock)
    short = await first.request_grant(ALICE, "pg-prod", "write", 600, "short")
    long = await first.request_grant(ALICE, "pg-dev", "write", 3600, "long")
    await first.approve_grant(short.id, BOB)
    await first.approve_grant(long.id, BOB)
    await first.aclose()

    clock.now += 1200  # down for 20 minutes
    second = make_service(tmp_path, clock)
    assert second.active_grants("alice", "pg-dev") == frozenset()  # nothing before recover()
    report = await second.recover()
    assert (report.grants_kept, report.grants_expired) == (1, 1)
    assert second.active_grants("alice", "pg-dev") == {"write"}
    assert second.active_grants("alice", "pg-prod") == frozenset()
    assert (await second.get_grant(short.id, BOB)).state is GrantState.EXPIRED


def test_grant_conditioned_rule_applies_only_while_the_grant_is_held() -> None:
    engine = PolicyEngine([REVIEW_WRITES, WRITE_WITH_GRANT], Action.DENY)
    without = engine.decide(ALICE, "pg-prod", DELETE)
    assert (without.action, without.rule, without.grant) == (
        Action.REVIEW,
        REVIEW_WRITES.name,
        None,
    )
    # Review still beats the grant's allow: a grant lifts a deny-by-default, never a stricter rule.
    assert engine.decide(ALICE, "pg-prod", DELETE, frozenset({"write"})).action is Action.REVIEW

    engine = PolicyEngine([WRITE_WITH_GRANT], Action.DENY)
    assert engine.decide(ALICE, "pg-prod", DELETE).action is Action.DENY
    allowed = engine.decide(ALICE, "pg-prod", DELETE, frozenset({"write"}))
    assert (allowed.action, allowed.grant) == (Action.ALLOW, "write")
    assert allowed.to_record()["grant"] == "write"
    # Unrelated grants change nothing, and the cached answer without grants is unaffected.
    assert engine.decide(ALICE, "pg-prod", DELETE, frozenset({"read-pii"})).action is Action.DENY
    assert engine.decide(ALICE, "pg-prod", DELETE).action is Action.DENY
    assert engine.grant_names == {"write"}
