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
    from gateway.config import Config
    from gateway.connector import Connector
    from gateway.masking import Detector
    from gateway.model import Command, Decision, Identity, Target
    from gateway.vocabulary import CommandVocabulary

PROJECT = "wardgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def wardgate_configure(config: Config) -> None:
    """Called once at start-up, after every plugin is loaded, with the loaded configuration.

    A plugin reads its own settings from ``config.plugins.get("<name>", {})`` (the
    ``[plugins.<name>]`` table, as written) and should raise ``gateway.errors.PluginError`` with
    the file and key when they are wrong: the gateway then refuses to start, as it does for any
    other configuration error. Do not start threads or open connections here if it can wait until
    first use (``wardgate config check`` calls this hook too).
    """


@hookspec
def wardgate_connectors() -> Sequence[Connector]:  # type: ignore[empty-body]
    """Return the protocol connectors this plugin provides.

    Each connector names its ``protocol`` (the value of ``protocol =`` in ``[listeners.*]`` and
    ``[targets.*]``). Two plugins offering the same protocol is a start-up error.
    """


@hookspec
def wardgate_command_vocabulary() -> Sequence[CommandVocabulary]:  # type: ignore[empty-body]
    """Return, for each protocol this plugin's connectors serve, every word rules may name.

    A :class:`gateway.vocabulary.CommandVocabulary` holds the ``protocol``, every ``kind`` and
    every ``flag`` the connector's classifier can put on a :class:`~gateway.model.Command`
    (categories are shared: :class:`gateway.model.Category`). ``wardgate serve`` and
    ``wardgate config check`` then refuse a rule naming a word no protocol it applies to knows,
    naming the file, the rule and the key, and ``wardgate config check --vocabulary`` lists the
    words. The kinds must be complete: a kind the connector produces but does not declare makes
    a correct rule a configuration error. Vocabularies of one protocol from several plugins are
    united. A connector that declares none leaves rules that may apply to it unchecked.

    Called without a configuration (``--vocabulary`` works while the configuration is broken):
    the answer must not depend on settings.
    """


@hookspec
def wardgate_detectors() -> Sequence[Detector]:  # type: ignore[empty-body]
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

    ``review`` is the admin API's JSON view of the review: at least ``id``, ``identity``,
    ``target``, ``protocol``, ``command`` (exact text), ``command_display`` (the text with
    every deceptive code point escaped: show this one to people), ``params``, ``rule``,
    ``reason``, ``min_approvals``, ``approver_groups``, ``created_at``, ``expires_at``, plus
    ``approve_command``/``deny_command`` (the CLI lines an approver runs).
    Must not block: queue the notification and return.
    """


@hookspec
def wardgate_grant_requested(grant: dict[str, Any]) -> None:
    """An identity asked for a time-boxed grant; notify approvers.

    ``grant`` is the admin API's JSON view: ``id``, ``identity``, ``target``, ``grant``,
    ``duration`` (seconds), ``reason``, ``requested_at``, plus ``approve_command`` and
    ``deny_command``. Must not block: queue the notification and return.
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
