"""The approval service: held commands and their decisions, with trio's virtual clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gateway.approvals import (
    ApprovalRefused,
    ApprovalService,
    Conflict,
    NotApproverRefused,
    NotFound,
    PendingCapRefused,
    Review,
    ReviewState,
    SelfApprovalRefused,
    SQLiteApprovalStore,
)
from gateway.config import ApprovalsConfig
from gateway.hookspecs import hookimpl
from gateway.model import Action, Identity
from gateway.plugins import PluginHost
from gateway.policy import Rule

ALICE = Identity("alice", frozenset({"ai-agents"}), expires_at=4e9, issuer="test")
BOB = Identity("bob", frozenset({"dba"}), expires_at=4e9, issuer="test")
CAROL = Identity("carol", frozenset({"dba"}), expires_at=4e9, issuer="test")
MALLORY = Identity("mallory", frozenset({"ai-agents"}), expires_at=4e9, issuer="test")
SELF_APPROVER = Identity("alice", frozenset({"dba", "ai-agents"}), expires_at=4e9, issuer="test")

REVIEW_RULE = Rule("deletes need review", Action.REVIEW, frozenset({"ai-agents"}))
TWO_PERSON = Rule(
    "drops need two",
    Action.REVIEW,
    frozenset({"ai-agents"}),
    min_approvals=2,
    approver_groups=frozenset({"dba"}),
)


def make_service(
    tmp_path: Path,
    *,
    timeout: float = 300,
    max_pending: int = 10,
    plugins: PluginHost | None = None,
) -> ApprovalService:
    settings = ApprovalsConfig(
        approver_groups=frozenset({"dba"}), timeout=timeout, max_pending_per_identity=max_pending
    )
    return ApprovalService(
        SQLiteApprovalStore.in_data_dir(tmp_path),
        settings,
        rules=[REVIEW_RULE, TWO_PERSON],
        plugins=plugins,
    )


class Holder:
    """Runs ``hold`` in a task and remembers what it was told and what it got."""

    def __init__(
        self,
        service: ApprovalService,
        text: str = "DELETE FROM t WHERE id = 5",
        params: tuple[Any, ...] = (),
        rule: str = REVIEW_RULE.name,
        session: str = "s1",
        identity: Identity = ALICE,
    ) -> None:
        self.service = service
        self.kwargs: dict[str, Any] = {
            "session_id": session,
            "identity": identity,
            "target": "pg",
            "protocol": "postgres",
            "text": text,
            "params": params,
            "kinds": frozenset({"delete"}),
            "rule": rule,
            "reason": "deletes wait for a person",
        }
        self.created: list[str] = []
        self.result: Review | None = None
        self.created_event = trio.Event()

    async def on_created(self, review: Review) -> None:
        self.created.append(review.id)
        self.created_event.set()

    async def run(self) -> None:
        self.result = await self.service.hold(**self.kwargs, on_created=self.on_created)

    async def start(self, nursery: trio.Nursery) -> str:
        nursery.start_soon(self.run)
        await self.created_event.wait()
        self.created_event = trio.Event()
        return self.created[-1]


async def test_approved_command_is_released_with_its_approver(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    holder = Holder(service)
    async with trio.open_nursery() as nursery:
        review_id = await holder.start(nursery)
        assert holder.result is None  # told the id, still waiting
        pending = await service.get_review(review_id, BOB)
        assert pending.state is ReviewState.PENDING and pending.requester == "alice"
        await service.approve(review_id, BOB, "ticket 7")
    assert holder.result is not None
    assert holder.result.state is ReviewState.APPROVED
    assert [(v.subject, v.reason) for v in holder.result.approvals] == [("bob", "ticket 7")]
    stored = await service.store.get_review(review_id)
    assert stored is not None and stored.consumed_at is not None


async def test_denied_command_carries_the_denial(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    holder = Holder(service)
    async with trio.open_nursery() as nursery:
        review_id = await holder.start(nursery)
        await service.deny(review_id, BOB, "not during the freeze")
    assert holder.result is not None and holder.result.state is ReviewState.DENIED
    assert holder.result.denial is not None
    assert (holder.result.denial.subject, holder.result.denial.reason) == (
        "bob",
        "not during the freeze",
    )


async def test_undecided_review_times_out(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    service = make_service(tmp_path, timeout=300)
    holder = Holder(service)
    start = trio.current_time()
    await holder.run()
    assert holder.result is not None and holder.result.state is ReviewState.TIMED_OUT
    assert trio.current_time() - start == pytest.approx(300)
    stored = await service.store.get_review(holder.created[0])
    assert stored is not None and stored.state is ReviewState.TIMED_OUT
    with pytest.raises(Conflict):
        await service.approve(holder.created[0], BOB)  # too late: nothing waits for it


async def test_client_going_away_cancels_the_review(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    holder = Holder(service)
    async with trio.open_nursery() as nursery:
        review_id = await holder.start(nursery)
        nursery.cancel_scope.cancel()  # what a connector's task sees when its client disconnects
    assert holder.result is None
    stored = await service.store.get_review(review_id)
    assert stored is not None and stored.state is ReviewState.CANCELLED
    with pytest.raises(Conflict, match="cancelled"):
        await service.approve(review_id, BOB)


async def test_on_created_failing_cancels_the_review(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    seen: list[str] = []

    async def broken_client(review: Review) -> None:
        seen.append(review.id)
        raise trio.BrokenResourceError("client gone")

    with pytest.raises(trio.BrokenResourceError):
        await service.hold(
            session_id="s",
            identity=ALICE,
            target="pg",
            protocol="postgres",
            text="DELETE FROM t",
            rule=REVIEW_RULE.name,
            reason="r",
            on_created=broken_client,
        )
    stored = await service.store.get_review(seen[0])
    assert stored is not None and stored.state is ReviewState.CANCELLED


async def test_identical_pending_requests_share_one_review(tmp_path: Path) -> None:
    """HOSTILE J.61: one statement retried many times is one review, not many."""
    service = make_service(tmp_path)
    first, second = Holder(service), Holder(service)
    async with trio.open_nursery() as nursery:
        id1 = await first.start(nursery)
        id2 = await second.start(nursery)
        assert id1 == id2
        assert len(await service.list_reviews(BOB)) == 1
        await service.approve(id1, BOB)
        # The approval lets exactly one of them run; the other asks anew.
        await trio.testing.wait_all_tasks_blocked()
        done = [h for h in (first, second) if h.result is not None]
        waiting = [h for h in (first, second) if h.result is None]
        assert len(done) == 1
        assert done[0].result is not None and done[0].result.state is ReviewState.APPROVED
        assert len(waiting) == 1 and len(waiting[0].created) == 2
        new_id = waiting[0].created[-1]
        assert new_id != id1
        await service.deny(new_id, BOB)
    assert waiting[0].result is not None and waiting[0].result.state is ReviewState.DENIED


async def test_cancelling_one_of_two_joined_requests_keeps_the_review(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    staying, leaving = Holder(service), Holder(service)
    async with trio.open_nursery() as nursery:
        review_id = await staying.start(nursery)
        async with trio.open_nursery() as inner:
            await leaving.start(inner)
            inner.cancel_scope.cancel()
        assert (await service.get_review(review_id, BOB)).state is ReviewState.PENDING
        await service.approve(review_id, BOB)
    assert staying.result is not None and staying.result.state is ReviewState.APPROVED


async def test_approval_is_single_use(tmp_path: Path) -> None:
    """HOSTILE G.42: sending the approved statement again is a fresh review."""
    service = make_service(tmp_path)
    holder = Holder(service)
    async with trio.open_nursery() as nursery:
        first = await holder.start(nursery)
        await service.approve(first, BOB)
    again = Holder(service)
    async with trio.open_nursery() as nursery:
        second = await again.start(nursery)
        assert second != first
        assert (await service.get_review(second, BOB)).state is ReviewState.PENDING
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "change",
    [
        {"params": ("6",)},
        {"text": "DELETE FROM t WHERE id = 5 -- other comment"},
        {"session": "s2"},
    ],
    ids=["other bound parameters", "other comment", "other session"],
)
async def test_approval_does_not_cover_a_different_statement(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    service = make_service(tmp_path)
    approved = Holder(service, params=("5",))
    other = Holder(service, **{"params": ("5",), **change})
    async with trio.open_nursery() as nursery:
        id1 = await approved.start(nursery)
        id2 = await other.start(nursery)
        assert id1 != id2
        await service.approve(id1, BOB)
        await trio.testing.wait_all_tasks_blocked()
        assert other.result is None  # still waiting for its own decision
        nursery.cancel_scope.cancel()


async def test_pending_reviews_per_identity_are_capped(tmp_path: Path) -> None:
    service = make_service(tmp_path, max_pending=2)
    async with trio.open_nursery() as nursery:
        for i in range(2):
            await Holder(service, text=f"DELETE FROM t WHERE id = {i}").start(nursery)
        with pytest.raises(PendingCapRefused, match="already has 2"):
            await service.hold(
                session_id="s1",
                identity=ALICE,
                target="pg",
                protocol="postgres",
                text="DELETE FROM t WHERE id = 99",
                rule=REVIEW_RULE.name,
                reason="r",
            )
        # Another identity is not affected by alice's flood.
        await Holder(service, identity=MALLORY).start(nursery)
        nursery.cancel_scope.cancel()


async def test_requester_cannot_approve_its_own_review_even_as_an_approver(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    holder = Holder(service)
    async with trio.open_nursery() as nursery:
        review_id = await holder.start(nursery)
        with pytest.raises(SelfApprovalRefused, match="cannot decide"):
            await service.approve(review_id, SELF_APPROVER)
        with pytest.raises(SelfApprovalRefused):
            await service.deny(review_id, SELF_APPROVER)
        assert (await service.get_review(review_id, BOB)).state is ReviewState.PENDING
        nursery.cancel_scope.cancel()


async def test_non_approver_is_refused_and_cannot_see_others_reviews(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    holder = Holder(service)
    async with trio.open_nursery() as nursery:
        review_id = await holder.start(nursery)
        with pytest.raises(NotFound):
            await service.approve(review_id, MALLORY)
        with pytest.raises(NotFound):
            await service.get_review(review_id, MALLORY)
        assert await service.list_reviews(MALLORY) == []
        # The requester sees its own review but is no approver of others'.
        assert [r.id for r in await service.list_reviews(ALICE)] == [review_id]
        nursery.cancel_scope.cancel()


async def test_member_of_other_approver_groups_is_refused_for_this_rule(tmp_path: Path) -> None:
    settings = ApprovalsConfig(approver_groups=frozenset({"dba"}))
    leads_only = Rule("leads approve", Action.REVIEW, approver_groups=frozenset({"leads"}))
    service = ApprovalService(
        SQLiteApprovalStore.in_data_dir(tmp_path), settings, rules=[leads_only]
    )
    holder = Holder(service, rule=leads_only.name)
    async with trio.open_nursery() as nursery:
        review_id = await holder.start(nursery)
        with pytest.raises(NotApproverRefused, match="leads"):
            await service.approve(review_id, BOB)  # a dba, but this rule names its own approvers
        lead = Identity("lee", frozenset({"leads"}), expires_at=4e9, issuer="t")
        await service.approve(review_id, lead)
    assert holder.result is not None and holder.result.state is ReviewState.APPROVED


async def test_two_approvals_needed_from_distinct_approvers(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    holder = Holder(service, rule=TWO_PERSON.name)
    async with trio.open_nursery() as nursery:
        review_id = await holder.start(nursery)
        after_one = await service.approve(review_id, BOB)
        assert after_one.state is ReviewState.PENDING and after_one.min_approvals == 2
        with pytest.raises(Conflict, match="already approved"):
            await service.approve(review_id, BOB)
        await trio.testing.wait_all_tasks_blocked()
        assert holder.result is None
        await service.approve(review_id, CAROL)
    assert holder.result is not None
    assert holder.result.state is ReviewState.APPROVED
    assert holder.result.approvers() == ["bob", "carol"]


async def test_a_review_nobody_could_approve_is_refused_at_once(tmp_path: Path) -> None:
    """Without approver groups no one could ever approve: refuse now instead of holding the
    agent until the timeout."""
    service = ApprovalService(SQLiteApprovalStore.in_data_dir(tmp_path), ApprovalsConfig())
    created: list[object] = []

    async def on_created(review: object) -> None:
        created.append(review)

    with pytest.raises(ApprovalRefused, match="no approvers are configured"):
        await service.hold(**Holder(service, rule="policy.default").kwargs, on_created=on_created)
    assert created == []


async def test_unknown_review_and_bad_reason(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    with pytest.raises(NotFound):
        await service.approve("r-nope", BOB)
    holder = Holder(service)
    async with trio.open_nursery() as nursery:
        review_id = await holder.start(nursery)
        with pytest.raises(Exception, match="control"):
            await service.approve(review_id, BOB, "fine\x1b[2Jreally")
        nursery.cancel_scope.cancel()


async def test_events_and_notification_hook(tmp_path: Path) -> None:
    notified: list[dict[str, Any]] = []

    class Notifier:
        @hookimpl
        def wardgate_review_requested(self, review: dict[str, Any]) -> None:
            notified.append(review)

    host = PluginHost()
    host.register(Notifier(), "notifier")
    service = make_service(tmp_path, plugins=host)
    holder = Holder(service, text="DELETE FROM t WHERE name = '\u202egnp.exe'")
    with service.subscribe() as events:
        async with trio.open_nursery() as nursery:
            review_id = await holder.start(nursery)
            await service.approve(review_id, BOB)
        kinds = [(e.kind, e.item.id) for e in [events.receive_nowait(), events.receive_nowait()]]
    assert kinds == [("review_requested", review_id), ("review_approved", review_id)]
    assert len(notified) == 1
    note = notified[0]
    assert (note["id"], note["identity"], note["target"]) == (review_id, "alice", "pg")
    assert note["approve_command"].startswith(f"wardgate review approve {review_id}")
    assert "\\u202e" in note["command_display"] and "\u202e" not in note["command_display"]


async def test_slow_subscriber_is_dropped_not_waited_for(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    service.hub._buffer = 1
    with service.subscribe() as events:
        async with trio.open_nursery() as nursery:
            for i in range(3):
                await Holder(service, text=f"DELETE FROM t WHERE id = {i}").start(nursery)
            nursery.cancel_scope.cancel()
        received = [event async for event in events]
    assert len(received) == 1  # then its stream ended instead of blocking the gateway


async def test_restart_cancels_pending_reviews_of_dead_sessions(tmp_path: Path) -> None:
    # What a crash leaves behind: a review still pending in the store, nobody waiting on it.
    crashed = make_service(tmp_path)
    orphan = Holder(crashed)
    async with trio.open_nursery() as nursery:
        review_id = await orphan.start(nursery)
        restarted = make_service(tmp_path)
        report = await restarted.recover()
        nursery.cancel_scope.cancel()
    assert report.reviews_cancelled == 1
    final = await restarted.store.get_review(review_id)
    assert final is not None and final.state is ReviewState.CANCELLED
    with pytest.raises(Conflict):
        await restarted.approve(review_id, BOB)
