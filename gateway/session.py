"""A session: one authenticated client talking to one target, with its recording.

Connectors call the session's services rather than the engines directly, so that every
decision is taken the same way (rules, then plugins, strictest wins) and every decision is
recorded and flushed before the command is forwarded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from gateway.approvals.models import ApprovalRefused, Review, ReviewState, iso
from gateway.errors import RecordingError
from gateway.model import Action, Command, Decision, Identity, Target

if TYPE_CHECKING:
    from gateway.approvals import ApprovalService
    from gateway.masking import Masker
    from gateway.plugins import PluginHost
    from gateway.policy import PolicyEngine
    from gateway.recording import RecordingWriter

log = logging.getLogger("wardgate.session")


class Session:
    """Created by :meth:`gateway.runtime.Gateway.session`; do not build one directly."""

    def __init__(
        self,
        *,
        session_id: str,
        identity: Identity,
        target: Target,
        protocol: str,
        peer: str,
        recorder: RecordingWriter,
        policy: PolicyEngine,
        masker: Masker,
        plugins: PluginHost,
        result_row_cap: int,
        clock: Callable[[], float] = time.time,
        approvals: ApprovalService | None = None,
    ) -> None:
        self.id = session_id
        self.identity = identity
        self.target = target
        self.protocol = protocol
        self.peer = peer
        self.recorder = recorder
        self.masker = masker
        self.result_row_cap = result_row_cap
        self._policy = policy
        self._plugins = plugins
        self._clock = clock
        self._approvals = approvals
        self._grants_recorded: set[str] = set()  # grant ids whose first use is recorded
        self.commands = 0
        self.denied = 0

    # -- policy -----------------------------------------------------------------------------
    def authorize(self, command: Command) -> Decision:
        """Judge one command: the rules, then every ``wardgate_authorize`` plugin; deny wins.

        A plugin that raises counts as a deny: a broken policy plugin must not open the gate.
        """
        grants = (
            self._approvals.active_grants(self.identity.subject, self.target.name)
            if self._approvals is not None
            else frozenset()
        )
        decisions = [self._policy.decide(self.identity, self.target.name, command, grants)]
        hook = self._plugins.hook.wardgate_authorize
        for impl in hook.get_hookimpls():
            try:
                extra = impl.function(identity=self.identity, target=self.target, command=command)
            except Exception:
                log.exception("authorize plugin %r failed; denying", impl.plugin_name)
                extra = Decision(
                    Action.DENY, f"plugin:{impl.plugin_name}", "a policy plugin failed; denied"
                )
            if extra is not None:
                decisions.append(extra)
        decision = Decision.strictest(decisions)
        self.commands += 1
        if not decision.allowed:
            self.denied += 1
        if decision.grant is not None:
            self._record_grant_use(decision)
        return decision

    def _record_grant_use(self, decision: Decision) -> None:
        # Every decision record names the grant; the grant itself (who approved it, until when)
        # is recorded the first time the session relies on it.
        if self._approvals is None or decision.grant is None:
            return
        grant = self._approvals.active_grant(
            self.identity.subject, self.target.name, decision.grant
        )
        if grant is None or grant.id in self._grants_recorded:
            return
        self._grants_recorded.add(grant.id)
        self.record(
            "grant_used",
            {
                "grant": grant.grant,
                "grant_id": grant.id,
                "rule": decision.rule,
                "action": str(decision.action),
                "approved_by": grant.approved_by.subject if grant.approved_by else None,
                "approved_at": iso(grant.approved_at),
                "expires_at": iso(grant.expires_at),
                "reason": grant.reason,
            },
        )

    # -- approval ---------------------------------------------------------------------------
    async def request_approval(
        self,
        command: Command,
        decision: Decision,
        *,
        text: str,
        params: Sequence[Any],
        on_waiting: Callable[[str], Awaitable[None]],
    ) -> Decision:
        """Hold a command the policy sent to review until people decide; return the verdict.

        ``decision`` is the ``review`` decision from :meth:`authorize`; ``text`` and ``params``
        are exactly what will run (the approval is bound to them, and to this session, identity
        and target). ``on_waiting(review_id)`` is awaited once the review exists, so the connector
        can tell its client (PostgreSQL: a NoticeResponse) before the wait. Returns an ``allow``
        decision when approved (the caller may run the command once, now) or a ``deny`` decision
        saying why not: denied, timed out, cancelled, too many pending reviews, too large to review,
        or the token expired while it waited. If the waiting task is cancelled (the client went
        away) the review is cancelled and the cancellation propagates. Every step is recorded and
        flushed. Raises :class:`RecordingError` when the recording cannot be written (fail closed).
        """
        service = self._approvals
        if service is None:
            return self._refused(
                decision, f"approval required ({decision.reason}); approvals are not configured"
            )
        current: list[Review] = []

        async def created(review: Review) -> None:
            current.append(review)
            self.record(
                "review_requested",
                {
                    "review": review.id,
                    "rule": review.rule,
                    "reason": review.reason,
                    "sql": text,
                    "params": list(params),
                    "fingerprint": review.fingerprint,
                    "min_approvals": review.min_approvals,
                    "approver_groups": sorted(review.approver_groups),
                    "expires_at": iso(review.expires_at),
                },
                flush=True,
            )
            await on_waiting(review.id)

        try:
            review = await service.hold(
                session_id=self.id, identity=self.identity, target=self.target.name,
                protocol=self.protocol, text=text, params=params, kinds=command.kinds,
                rule=decision.rule, reason=decision.reason, on_created=created,
            )  # fmt: skip
        except ApprovalRefused as exc:  # too many pending reviews, or too large to review
            refusal = self._refused(decision, f"approval required ({decision.reason}); {exc}")
            self.record("review_refused", {"reason": str(exc), "rule": decision.rule}, flush=True)
            return refusal
        except BaseException:
            if current:
                try:
                    self.record(
                        "review_cancelled",
                        {"review": current[-1].id, "reason": "the session stopped waiting"},
                        flush=True,
                    )
                except RecordingError:
                    log.error("session %s: could not record the cancelled review", self.id)
            raise
        return self._outcome(review, decision)

    def _outcome(self, review: Review, decision: Decision) -> Decision:
        if review.state is ReviewState.APPROVED and self.identity_expired():
            # Approved, but the caller's token ran out while it waited: nothing runs on a token
            # that is no longer valid, approval or not.
            self.record(
                "review_approved_expired_token",
                {"review": review.id, "approvers": review.approvers()},
                flush=True,
            )
            return self._refused(
                decision,
                f"review {review.id} was approved, but your token expired while it waited; "
                "reconnect with a fresh token and send the statement again",
            )
        if review.state is ReviewState.APPROVED:
            self.record(
                "review_approved",
                {
                    "review": review.id,
                    "approvers": [
                        {"subject": v.subject, "at": iso(v.at), "reason": v.reason}
                        for v in review.approvals
                    ],
                    "decided_at": iso(review.decided_at),
                },
                flush=True,
            )
            self.denied = max(0, self.denied - 1)  # authorize counted the hold as not allowed
            names = ", ".join(review.approvers())
            return Decision(
                Action.ALLOW, decision.rule, f"approved in review {review.id} by {names}",
                decision.grant,
            )  # fmt: skip
        if review.state is ReviewState.DENIED and review.denial is not None:
            by = review.denial
            self.record(
                "review_denied",
                {"review": review.id, "by": by.subject, "at": iso(by.at), "reason": by.reason},
                flush=True,
            )
            why = f": {by.reason}" if by.reason else ""
            return self._refused(decision, f"review {review.id} was denied by {by.subject}{why}")
        if review.state is ReviewState.TIMED_OUT:
            waited = review.expires_at - review.created_at
            self.record(
                "review_timed_out", {"review": review.id, "after": round(waited, 3)}, flush=True
            )
            return self._refused(
                decision, f"review {review.id} timed out after {waited:g} s without a decision"
            )
        self.record(
            "review_cancelled",
            {"review": review.id, "reason": f"the review ended {review.state}"},
            flush=True,
        )
        return self._refused(decision, f"review {review.id} was cancelled ({review.state})")

    @staticmethod
    def _refused(decision: Decision, reason: str) -> Decision:
        return Decision(Action.DENY, decision.rule, reason, decision.grant)

    def identity_expired(self) -> bool:
        """Checked by connectors at statement boundaries (a token can expire mid-session)."""
        return self.identity.expired(self._clock())

    # -- recording --------------------------------------------------------------------------
    def record(self, kind: str, payload: Any, *, flush: bool = False) -> None:
        """Append a record; ``flush=True`` after a decision so a crash cannot lose it.

        Raises :class:`RecordingError` when the recording cannot be written: the connector must
        then end the session (fail closed) with a native error.
        """
        self.recorder.record(kind, payload)
        if flush:
            self.recorder.flush()

    def flush(self) -> None:
        self.recorder.flush()

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity.to_record(),
            "target": self.target.name,
            "protocol": self.protocol,
            "peer": self.peer,
            "recording": str(self.recorder.path),
        }


__all__ = ["RecordingError", "Session"]
