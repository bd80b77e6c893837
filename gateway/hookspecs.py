"""The hooks wardgate calls, one module, like pytest's hookspec.

Every hook is synchronous: pluggy cannot await. Work that needs I/O is done by the core and handed
in as data. Implementations live in plugins registered through the ``wardgate`` entry-point group;
the built-in connectors and detectors register through that same group, so a third-party plugin
has exactly the powers a built-in has.

A plugin module marks its functions with :data:`hookimpl`::

    from gateway.hookspecs import hookimpl

    @hookimpl
    def wardgate_detectors():
        return [MyDetector()]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from gateway.connector import Connector
    from gateway.masking import Detector
    from gateway.model import Command, Decision, Identity, Target

PROJECT = "wardgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def wardgate_connectors() -> Sequence[Connector]:
    """Return the protocol connectors this plugin provides.

    Each connector names its ``protocol`` (the value of ``protocol =`` in ``[listeners.*]`` and
    ``[targets.*]``). Two plugins offering the same protocol is a start-up error.
    """


@hookspec
def wardgate_detectors() -> Sequence[Detector]:
    """Return masking detectors (objects with ``name`` and ``scan(text)``).

    The ``[masking] detectors`` list names which of all registered detectors are active.
    A detector must be fast on text that holds nothing sensitive: ``scan`` is called on every
    value that flows back to a client.
    """


@hookspec
def wardgate_authorize(
    identity: Identity, target: Target, command: Command
) -> Decision | None:
    """Give an extra verdict on a command, after the rules have decided.

    Return ``None`` to abstain. All answers are collected with the rules' decision and the
    strictest wins (deny beats review beats allow), so a plugin can restrict but never widen
    what the configuration allows. A hook that raises is treated as a deny (fail closed).
    """


@hookspec
def wardgate_review_requested(review: dict[str, Any]) -> None:
    """A command is held for approval; notify approvers.

    ``review`` holds at least ``id``, ``identity``, ``target``, ``command`` and ``reason``.
    Must not block: queue the notification and return.
    """


@hookspec
def wardgate_session_started(session: dict[str, Any]) -> None:
    """A session was authenticated and its recording opened.

    ``session`` holds ``id``, ``identity``, ``target``, ``protocol``, ``peer``, ``recording``.
    """


@hookspec
def wardgate_session_ended(session: dict[str, Any]) -> None:
    """A session ended and its recording was closed and signed.

    ``session`` holds the same keys as for ``wardgate_session_started`` plus ``reason``.
    A plugin can ship the file at ``session["recording"]`` elsewhere.
    """
