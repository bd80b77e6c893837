"""The approval service: commands held until people approve them, and time-boxed grants.

A connector's session calls :meth:`ApprovalService.hold` when the policy says ``review``. The
command waits (nothing reaches the backend) until enough distinct approvers approve it, one denies
it, it times out, or the waiting task is cancelled because the client went away. Approvers act
through :meth:`approve` and :meth:`deny` (the admin API and CLI call these).

An approval is bound to exactly what runs (see :func:`~gateway.approvals.models.fingerprint`) and
is single-use: an approved review lets one execution through and is then spent. A second identical
statement is a new review, because a hold only ever joins a *pending* review, never an approved
one. Identical requests made while one is pending join it (same review id), and a requester's
pending reviews are capped, so a flooding agent cannot bury approvers (HOSTILE J.61).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import trio

from gateway.approvals.approvers import Approvers
from gateway.approvals.events import ApprovalEvent, EventHub
from gateway.approvals.grants import GrantLedger
from gateway.approvals.models import (
    ApprovalRefused,
    Conflict,
    Grant,
    GrantState,
    NotFound,
    PendingCapRefused,
    Review,
    ReviewState,
    Vote,
    check_reason,
    fingerprint,
    new_review_id,
)
from gateway.approvals.store import MAX_LIST, ApprovalStore
from gateway.config import ApprovalsConfig
from gateway.model import Identity
from gateway.policy import Rule

if TYPE_CHECKING:
    from gateway.plugins import PluginHost

log = logging.getLogger("wardgate.approvals")

# A person cannot review more than this, and every list, notification and recording would carry
# it: larger statements are refused at once instead of being held (fail closed).
MAX_REVIEW_BYTES = 64 * 1024

_EVENT_FOR_STATE = {
    ReviewState.APPROVED: "review_approved",
    ReviewState.DENIED: "review_denied",
    ReviewState.TIMED_OUT: "review_timed_out",
    ReviewState.CANCELLED: "review_cancelled",
}


class _Held:
    """A pending review this process waits on, shared by every identical request joining it."""

    __slots__ = ("consumed", "deadline", "decided", "review", "waiters")

    def __init__(self, review: Review, deadline: float) -> None:
        self.review = review
        self.deadline = deadline  # trio time
        self.decided = trio.Event()
        self.waiters = 0
        self.consumed = False


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    reviews_cancelled: int
    grants_kept: int
    grants_expired: int


class ApprovalService:
    def __init__(
        self,
        store: ApprovalStore,
        settings: ApprovalsConfig | None = None,
        *,
        rules: Iterable[Rule] = (),
        plugins: PluginHost | None = None,
        clock: Callable[[], float] = time.time,
        known_targets: Collection[str] | None = None,
        known_grants: Collection[str] | None = None,
    ) -> None:
        settings = settings or ApprovalsConfig()
        self.store = store
        self.settings = settings
        self.approvers = Approvers.from_rules(rules, settings.approver_groups)
        self.hub = EventHub()
        self._plugins = plugins
        self._clock = clock
        self._held: dict[str, _Held] = {}  # review id -> the pending review waited on here
        self._by_fingerprint: dict[str, _Held] = {}
        self._lock = trio.Lock()  # serialises read-check-write transitions in this process
        self.grants = GrantLedger(
            store,
            self.approvers,
            self.hub,
            clock=clock,
            max_pending=settings.max_pending_per_identity,
            max_duration=settings.max_grant_duration,
            known_targets=known_targets,
            known_grants=known_grants,
            notify=self._notify_grant,
        )

    # -- life cycle -------------------------------------------------------------------------
    async def recover(self) -> RecoveryReport:
        """At start-up: pending reviews of sessions that no longer exist are cancelled (their
        client is gone, so nothing could run if they were approved); grants are loaded and those
        whose time ran out while the gateway was down are marked expired."""
        cancelled = 0
        while True:
            batch = await self.store.list_reviews(
                states=frozenset({ReviewState.PENDING}), limit=MAX_LIST
            )
            stale = [r for r in batch if r.id not in self._held]
            progress = 0
            for review in stale:
                new = self._concluded(review, ReviewState.CANCELLED)
                if await self.store.update_review(new):
                    progress += 1
                    self.hub.publish(ApprovalEvent("review_cancelled", new))
            cancelled += progress
            if progress == 0 or len(batch) < MAX_LIST:
                break
        kept, expired = await self.grants.load()
        if cancelled or kept or expired:
            log.info(
                "approvals recovered: %d stale review(s) cancelled, %d grant(s) active, "
                "%d expired", cancelled, kept, expired,
            )  # fmt: skip
        return RecoveryReport(cancelled, kept, expired)

    async def run(self) -> None:
        """Background work for the life of the gateway: recording grant expiries."""
        await self.grants.run()

    async def aclose(self) -> None:
        await self.store.close()

    def subscribe(self) -> AbstractContextManager[trio.MemoryReceiveChannel[ApprovalEvent]]:
        """``with service.subscribe() as events: async for event in events: ...``"""
        return self.hub.subscribe()

    # -- holding a command --------------------------------------------------------------------
    async def hold(
        self,
        *,
        session_id: str,
        identity: Identity,
        target: str,
        protocol: str,
        text: str,
        params: Sequence[Any] = (),
        kinds: frozenset[str] = frozenset(),
        rule: str,
        reason: str,
        on_created: Callable[[Review], Awaitable[None]] | None = None,
    ) -> Review:
        """Hold a command until it is decided; returns the final review.

        ``on_created`` is awaited as soon as the review exists (created or joined), before any
        waiting, so the connector can tell its client the review id. The returned review's state
        is ``approved`` (this caller may run the command, once), ``denied``, ``timed_out`` or
        ``cancelled``. Raises :class:`PendingCapRefused` at once when the requester already has
        ``max_pending_per_identity`` pending reviews, and :class:`ApprovalRefused` (``too_large``)
        for a statement larger than ``MAX_REVIEW_BYTES``. If the caller is cancelled (its client
        went away), the review is cancelled unless an identical request still waits on it.
        """
        size = len(text.encode("utf-8", "surrogatepass")) + sum(
            len(p) if isinstance(p, (str, bytes, bytearray, memoryview)) else 16 for p in params
        )
        if size > MAX_REVIEW_BYTES:
            raise ApprovalRefused(
                f"the statement and its parameters ({size} bytes) are too large to be reviewed "
                f"(at most {MAX_REVIEW_BYTES}); split it or ask an operator to run it",
                code="too_large",
                http_status=413,
            )
        fp = fingerprint(
            session_id=session_id, subject=identity.subject, target=target,
            protocol=protocol, text=text, params=params,
        )  # fmt: skip
        while True:
            held = await self._open(
                fp, session_id, identity, target, protocol, text, params, kinds, rule, reason
            )
            held.waiters += 1
            try:
                if on_created is not None:
                    await on_created(held.review)
                with trio.move_on_at(held.deadline):
                    await held.decided.wait()
                if held.review.pending:
                    await self._conclude(held, ReviewState.TIMED_OUT)
            except BaseException:
                held.waiters -= 1
                if held.waiters == 0 and held.review.pending:
                    with trio.CancelScope(shield=True):
                        await self._conclude(held, ReviewState.CANCELLED)
                self._release(held)
                raise
            held.waiters -= 1
            try:
                review = held.review
                if review.state is ReviewState.APPROVED:
                    if held.consumed:
                        continue  # an identical request spent this approval: ask anew
                    held.consumed = True
                    review = await self._consume(held)
                return review
            finally:
                self._release(held)

    async def _open(
        self,
        fp: str,
        session_id: str,
        identity: Identity,
        target: str,
        protocol: str,
        text: str,
        params: Sequence[Any],
        kinds: frozenset[str],
        rule: str,
        reason: str,
    ) -> _Held:
        async with self._lock:
            joined = self._by_fingerprint.get(fp)
            if joined is not None and joined.review.pending:
                return joined
            cap = self.settings.max_pending_per_identity
            if await self.store.count_pending_reviews(identity.subject) >= cap:
                raise PendingCapRefused(
                    f"{identity.subject} already has {cap} commands waiting for approval "
                    "([approvals] max_pending_per_identity); wait for a decision"
                )
            settings = self.approvers.for_rule(rule)
            if not settings.approver_groups:
                # Nobody could ever approve it: say so now instead of holding the agent until
                # the timeout.
                raise ApprovalRefused(
                    f"approval required by rule {rule!r}, but no approvers are configured "
                    "([approvals] approver_groups, or approver_groups on the rule)"
                )
            now = self._clock()
            timeout = self.settings.timeout
            review = Review(
                id=new_review_id(), fingerprint=fp, session_id=session_id,
                requester=identity.subject, requester_groups=identity.groups, target=target,
                protocol=protocol, command=text, params=tuple(params), kinds=kinds, rule=rule,
                reason=reason, min_approvals=settings.min_approvals,
                approver_groups=settings.approver_groups, created_at=now,
                expires_at=now + timeout,
            )  # fmt: skip
            await self.store.insert_review(review)
            held = _Held(review, trio.current_time() + timeout)
            self._held[review.id] = held
            self._by_fingerprint[fp] = held
        self.hub.publish(ApprovalEvent("review_requested", review))
        self._notify_review(review)
        return held

    async def _conclude(self, held: _Held, state: ReviewState) -> None:
        """Time out or cancel a pending review (no-op if someone decided it meanwhile)."""
        async with self._lock:
            review = held.review
            if not review.pending:
                return
            new = self._concluded(review, state)
            if not await self.store.update_review(new):
                # Decided elsewhere (another instance sharing the store): take its word.
                new = await self.store.get_review(review.id) or new
            self._changed(held, new)

    async def _consume(self, held: _Held) -> Review:
        async with self._lock:
            review = held.review
            new = replace(review, consumed_at=self._clock(), version=review.version + 1)
            if await self.store.update_review(new):
                held.review = new
                return new
        # The approval stands (it was decided); only its audit timestamp could not be written.
        log.warning("review %s: could not record its use", review.id)
        return review

    def _concluded(self, review: Review, state: ReviewState) -> Review:
        return replace(review, state=state, decided_at=self._clock(), version=review.version + 1)

    def _changed(self, held: _Held | None, new: Review) -> None:
        """Apply a stored change to memory; wake the waiters when the review left pending."""
        if held is not None:
            held.review = new
            if not new.pending:
                held.decided.set()
                if self._by_fingerprint.get(new.fingerprint) is held:
                    del self._by_fingerprint[new.fingerprint]
        kind = _EVENT_FOR_STATE.get(new.state, "review_voted")
        self.hub.publish(ApprovalEvent(kind, new))

    def _release(self, held: _Held) -> None:
        if held.waiters == 0 and not held.review.pending:
            self._held.pop(held.review.id, None)

    # -- approvers ------------------------------------------------------------------------------
    async def approve(self, review_id: str, approver: Identity, reason: str = "") -> Review:
        """Add ``approver``'s approval; the review is approved once ``min_approvals`` distinct
        approvers agreed. Raises an :class:`ApprovalRefused` subclass when not allowed."""
        reason = check_reason(reason, required=False)
        async with self._lock:
            review, held = await self._current(review_id, approver)
            Approvers.check(
                approver, review.requester, review.approver_groups, f"review {review.id}"
            )
            self._require_pending(review, "approved")
            if approver.subject in review.approvers():
                missing = review.min_approvals - len(review.approvals)
                raise Conflict(
                    f"{approver.subject} has already approved review {review.id}; it needs "
                    f"{missing} more approval(s) from other approvers"
                )
            now = self._clock()
            votes = (*review.approvals, Vote(approver.subject, now, reason))
            done = len(votes) >= review.min_approvals
            new = replace(
                review,
                approvals=votes,
                state=ReviewState.APPROVED if done else ReviewState.PENDING,
                decided_at=now if done else None,
                version=review.version + 1,
            )
            await self._save(new)
            self._changed(held, new)
        return new

    async def deny(self, review_id: str, approver: Identity, reason: str = "") -> Review:
        """One approver's denial decides: the command does not run."""
        reason = check_reason(reason, required=False)
        async with self._lock:
            review, held = await self._current(review_id, approver)
            Approvers.check(
                approver, review.requester, review.approver_groups, f"review {review.id}"
            )
            self._require_pending(review, "denied")
            now = self._clock()
            new = replace(
                review,
                state=ReviewState.DENIED,
                denial=Vote(approver.subject, now, reason),
                decided_at=now,
                version=review.version + 1,
            )
            await self._save(new)
            self._changed(held, new)
        return new

    async def get_review(self, review_id: str, viewer: Identity) -> Review:
        review, _ = await self._current(review_id, viewer)
        return review

    async def list_reviews(
        self,
        viewer: Identity,
        *,
        states: frozenset[ReviewState] | None = None,
        limit: int = 100,
    ) -> list[Review]:
        """Approvers see every review; anyone else only their own."""
        mine = None if self.approvers.is_approver(viewer) else viewer.subject
        return await self.store.list_reviews(states=states, requester=mine, limit=limit)

    async def _current(self, review_id: str, viewer: Identity) -> tuple[Review, _Held | None]:
        held = self._held.get(review_id) if isinstance(review_id, str) else None
        review = held.review if held is not None else None
        if review is None and isinstance(review_id, str):
            review = await self.store.get_review(review_id)
        # Someone who may not see a review learns nothing about it, not even that it exists.
        if review is None or not (
            viewer.subject == review.requester or self.approvers.is_approver(viewer)
        ):
            raise NotFound(f"no review {review_id}")
        return review, held

    @staticmethod
    def _require_pending(review: Review, verb: str) -> None:
        if not review.pending:
            raise Conflict(f"review {review.id} is {review.state} and cannot be {verb}")

    async def _save(self, new: Review) -> None:
        if not await self.store.update_review(new):
            raise Conflict(f"review {new.id} was changed by someone else; look again and retry")

    # -- grants (see GrantLedger) ---------------------------------------------------------------
    def active_grants(self, subject: str, target_name: str) -> frozenset[str]:
        """Names of the approved, unexpired grants ``subject`` holds on the target. In memory:
        cheap enough for every statement."""
        return self.grants.active_grants(subject, target_name)

    def active_grant(self, subject: str, target_name: str, name: str) -> Grant | None:
        return self.grants.active_grant(subject, target_name, name)

    async def request_grant(
        self, identity: Identity, target: str, grant: str, duration: float, reason: str
    ) -> Grant:
        return await self.grants.request(identity, target, grant, duration, reason)

    async def approve_grant(self, grant_id: str, approver: Identity, reason: str = "") -> Grant:
        return await self.grants.approve(grant_id, approver, reason)

    async def deny_grant(self, grant_id: str, approver: Identity, reason: str = "") -> Grant:
        return await self.grants.deny(grant_id, approver, reason)

    async def revoke_grant(self, grant_id: str, actor: Identity, reason: str = "") -> Grant:
        return await self.grants.revoke(grant_id, actor, reason)

    async def get_grant(self, grant_id: str, viewer: Identity) -> Grant:
        return await self.grants.get(grant_id, viewer)

    async def list_grants(
        self,
        viewer: Identity,
        *,
        states: frozenset[GrantState] | None = None,
        limit: int = 100,
    ) -> list[Grant]:
        return await self.grants.list(viewer, states, limit)

    async def expire_grants(self) -> list[Grant]:
        return await self.grants.expire_due()

    # -- notification ---------------------------------------------------------------------------
    def _notify_review(self, review: Review) -> None:
        if self._plugins is None:
            return
        payload = review.to_json()
        payload["timeout"] = self.settings.timeout if math.isfinite(self.settings.timeout) else None
        payload["approve_command"] = f"wardgate review approve {review.id} --reason '...'"
        payload["deny_command"] = f"wardgate review deny {review.id} --reason '...'"
        self._plugins.notify("wardgate_review_requested", review=payload)

    def _notify_grant(self, grant: Grant) -> None:
        if self._plugins is None:
            return
        payload = grant.to_json()
        payload["approve_command"] = f"wardgate access approve {grant.id}"
        payload["deny_command"] = f"wardgate access deny {grant.id} --reason '...'"
        self._plugins.notify("wardgate_grant_requested", grant=payload)
