"""A session: one authenticated client talking to one target, with its recording.

Connectors call the session's services rather than the engines directly, so that every
decision is taken the same way (rules, then plugins, strictest wins) and every decision is
recorded and flushed before the command is forwarded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.errors import RecordingError
from gateway.model import Action, Command, Decision, Identity, Target

if TYPE_CHECKING:
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
        self.commands = 0
        self.denied = 0

    # -- policy -----------------------------------------------------------------------------
    def authorize(self, command: Command) -> Decision:
        """Judge one command: the rules, then every ``wardgate_authorize`` plugin; deny wins.

        A plugin that raises counts as a deny: a broken policy plugin must not open the gate.
        """
        decisions = [self._policy.decide(self.identity, self.target.name, command)]
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
        return decision

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


__all__ = ["Session", "RecordingError"]
