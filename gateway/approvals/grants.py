"""Time-boxed grants: an identity asks for named, elevated access to one target for a while.

Rules written with ``grant = "write"`` apply only while the caller holds an approved, unexpired
grant of that name for the target. The policy asks for the caller's grants on every statement,
so the approved ones are kept in memory, indexed by subject, and the store is only touched when a
grant changes. Expiry is judged against the clock on every lookup; the background task only
records it (state ``expired``) and tells subscribers.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Collection
from dataclasses import replace

import trio

from gateway.approvals.approvers import Approvers
from gateway.approvals.events import ApprovalEvent, EventHub
from gateway.approvals.models import (
    ApprovalRefused,
    Conflict,
    Grant,
    GrantState,
    NotFound,
    PendingCapRefused,
    Vote,
    check_reason,
    format_duration,
    new_grant_id,
)
from gateway.approvals.store import ApprovalStore
from gateway.model import Identity

log = logging.getLogger("wardgate.approvals")

_GRANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _bad_request(message: str) -> ApprovalRefused:
    return ApprovalRefused(message, code="bad_request", http_status=400)


class GrantLedger:
    def __init__(
        self,
        store: ApprovalStore,
        approvers: Approvers,
        hub: EventHub,
        *,
        clock: Callable[[], float],
        max_pending: int,
        max_duration: float,
        known_targets: Collection[str] | None,
        known_grants: Collection[str] | None,
        notify: Callable[[Grant], None],
    ) -> None:
        self._store = store
        self._approvers = approvers
        self._hub = hub
        self._clock = clock
        self._max_pending = max_pending
        self._max_duration = max_duration
        self._targets = frozenset(known_targets) if known_targets is not None else None
        self._grants = frozenset(known_grants) if known_grants is not None else None
        self._notify = notify
        self._active: dict[str, dict[str, Grant]] = {}  # subject -> grant id -> approved grant
        self._lock = trio.Lock()
        self._wake = trio.Event()

    # -- the per-statement path ----------------------------------------------------------------
    def active_grants(self, subject: str, target: str) -> frozenset[str]:
        held = self._active.get(subject)
        if not held:
            return frozenset()
        now = self._clock()
        return frozenset(g.grant for g in held.values() if g.target == target and g.active(now))

    def active_grant(self, subject: str, target: str, name: str) -> Grant | None:
        """The approved grant behind ``name`` (the one that lasts longest), for the recording."""
        now = self._clock()
        best: Grant | None = None
        for g in (self._active.get(subject) or {}).values():
            matches = g.target == target and g.grant == name and g.active(now)
            if matches and (best is None or (g.expires_at or 0) > (best.expires_at or 0)):
                best = g
        return best

    # -- start-up ------------------------------------------------------------------------------
    async def load(self) -> tuple[int, int]:
        """Load approved grants; those whose time ran out while the gateway was down are marked
        expired. Returns (kept, expired)."""
        self._active.clear()
        kept = 0
        for grant in await self._store.approved_grants():
            self._remember(grant)
            kept += 1
        expired = len(await self.expire_due())
        return kept - expired, expired

    # -- requests and decisions ----------------------------------------------------------------
    async def request(
        self, identity: Identity, target: str, grant: str, duration: float, reason: str
    ) -> Grant:
        if not isinstance(grant, str) or not _GRANT_NAME.fullmatch(grant):
            raise _bad_request("grant must be a name of letters, digits, '_', '-' or '.'")
        if not isinstance(target, str) or not target:
            raise _bad_request("target must be a target name")
        if self._targets is not None and target not in self._targets:
            raise ApprovalRefused(f'unknown target "{target}"', code="not_found", http_status=404)
        if self._grants is not None and grant not in self._grants:
            known = ", ".join(sorted(self._grants)) or "none (no rule has grant = ...)"
            raise _bad_request(f'no rule uses the grant "{grant}"; grants rules use: {known}')
        if (
            isinstance(duration, bool)
            or not isinstance(duration, (int, float))
            or not math.isfinite(duration)
            or duration <= 0
        ):
            raise _bad_request("duration must be a positive number of seconds")
        if duration > self._max_duration:
            raise _bad_request(
                f"duration {format_duration(duration)} is longer than the allowed "
                f"{format_duration(self._max_duration)} ([approvals] max_grant_duration)"
            )
        reason = check_reason(reason, required=True)
        async with self._lock:
            if await self._store.count_pending_grants(identity.subject) >= self._max_pending:
                raise PendingCapRefused(
                    f"{identity.subject} already has {self._max_pending} pending access requests;"
                    " wait for a decision or revoke one"
                )
            new = Grant(
                id=new_grant_id(),
                requester=identity.subject,
                requester_groups=identity.groups,
                target=target,
                grant=grant,
                duration=float(duration),
                reason=reason,
                requested_at=self._clock(),
            )
            await self._store.insert_grant(new)
        self._hub.publish(ApprovalEvent("grant_requested", new))
        self._notify(new)
        return new

    async def approve(self, grant_id: str, approver: Identity, reason: str = "") -> Grant:
        reason = check_reason(reason, required=False)
        async with self._lock:
            grant = await self._load(grant_id)
            self._approvers.check(
                approver,
                grant.requester,
                self._approvers.for_grant(grant.grant),
                f"grant {grant.id}",
            )
            self._require(grant, (GrantState.PENDING,), "approved")
            now = self._clock()
            new = replace(
                grant,
                state=GrantState.APPROVED,
                approved_by=Vote(approver.subject, now, reason),
                approved_at=now,
                expires_at=now + grant.duration,
                version=grant.version + 1,
            )
            await self._save(new)
            self._remember(new)
        self._hub.publish(ApprovalEvent("grant_approved", new))
        self._wake.set()  # the expiry task re-plans its next wake-up
        return new

    async def deny(self, grant_id: str, approver: Identity, reason: str = "") -> Grant:
        reason = check_reason(reason, required=False)
        async with self._lock:
            grant = await self._load(grant_id)
            self._approvers.check(
                approver,
                grant.requester,
                self._approvers.for_grant(grant.grant),
                f"grant {grant.id}",
            )
            self._require(grant, (GrantState.PENDING,), "denied")
            new = self._ended(
                grant, GrantState.DENIED, Vote(approver.subject, self._clock(), reason)
            )
            await self._save(new)
        self._hub.publish(ApprovalEvent("grant_denied", new))
        return new

    async def revoke(self, grant_id: str, actor: Identity, reason: str = "") -> Grant:
        """Approvers revoke any grant; a requester may give up (or withdraw) their own."""
        reason = check_reason(reason, required=False)
        async with self._lock:
            grant = await self._load(grant_id)
            if actor.subject != grant.requester:
                self._approvers.check(
                    actor, grant.requester, self._approvers.for_grant(grant.grant),
                    f"grant {grant.id}",
                )  # fmt: skip
            now = self._clock()
            if grant.state is GrantState.APPROVED and not grant.active(now):
                raise Conflict(f"grant {grant.id} has already expired")
            self._require(grant, (GrantState.PENDING, GrantState.APPROVED), "revoked")
            new = self._ended(grant, GrantState.REVOKED, Vote(actor.subject, now, reason))
            await self._save(new)
            self._forget(new)
        self._hub.publish(ApprovalEvent("grant_revoked", new))
        return new

    async def expire_due(self) -> list[Grant]:
        """Mark every approved grant whose time is up as expired; returns them."""
        now = self._clock()
        due = [g for held in self._active.values() for g in held.values() if not g.active(now)]
        done: list[Grant] = []
        async with self._lock:
            for grant in due:
                new = replace(
                    grant, state=GrantState.EXPIRED, ended_at=grant.expires_at,
                    version=grant.version + 1,
                )  # fmt: skip
                self._forget(grant)
                if await self._store.update_grant(new):
                    done.append(new)
        for grant in done:
            self._hub.publish(ApprovalEvent("grant_expired", grant))
        return done

    async def run(self) -> None:
        """Record expiries as they happen. Sleeps until the next expiry or a new approval."""
        while True:
            self._wake = trio.Event()  # before expire_due: an approval during it must wake us
            await self.expire_due()
            ends = [
                g.expires_at
                for held in self._active.values()
                for g in held.values()
                if g.expires_at is not None
            ]
            delay = (min(ends) - self._clock()) if ends else math.inf
            with trio.move_on_after(max(delay, 0.0)):
                await self._wake.wait()

    # -- reading -------------------------------------------------------------------------------
    async def get(self, grant_id: str, viewer: Identity) -> Grant:
        grant = await self._store.get_grant(grant_id)
        if grant is None or not self._may_see(viewer, grant):
            raise NotFound(f"no grant {grant_id}")
        return grant

    async def list(
        self, viewer: Identity, states: frozenset[GrantState] | None, limit: int
    ) -> list[Grant]:
        mine = None if self._approvers.is_approver(viewer) else viewer.subject
        return await self._store.list_grants(states=states, requester=mine, limit=limit)

    def _may_see(self, viewer: Identity, grant: Grant) -> bool:
        return viewer.subject == grant.requester or self._approvers.is_approver(viewer)

    # -- internals -----------------------------------------------------------------------------
    async def _load(self, grant_id: str) -> Grant:
        grant = await self._store.get_grant(grant_id) if isinstance(grant_id, str) else None
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        return grant

    @staticmethod
    def _require(grant: Grant, states: tuple[GrantState, ...], verb: str) -> None:
        if grant.state not in states:
            raise Conflict(f"grant {grant.id} is {grant.state} and cannot be {verb}")

    @staticmethod
    def _ended(grant: Grant, state: GrantState, vote: Vote) -> Grant:
        return replace(
            grant, state=state, decided_by=vote, ended_at=vote.at, version=grant.version + 1
        )

    async def _save(self, new: Grant) -> None:
        if not await self._store.update_grant(new):
            raise Conflict(f"grant {new.id} was changed by someone else; look again and retry")

    def _remember(self, grant: Grant) -> None:
        self._active.setdefault(grant.requester, {})[grant.id] = grant

    def _forget(self, grant: Grant) -> None:
        held = self._active.get(grant.requester)
        if held is not None:
            held.pop(grant.id, None)
            if not held:
                del self._active[grant.requester]
