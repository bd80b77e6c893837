"""Judging PostgreSQL statements for the relay: classification, the connector's own rules, the
session's policy, and the record forms of what was judged.

Pure functions of their inputs (and the session they are given): no I/O.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from gateway.masking import Masker
from gateway.model import Action, Command, Decision

from .binary import NUMERIC, TEXT_LIKE, number_text
from .frontend import Bind
from .lineage import masked_column_uses

#: Decisions the connector takes itself carry these rule names.
CANCELLED_RULE = "wardgate.cancel"
CANCELLED_MESSAGE = "canceling statement due to user request"


class SessionServices(Protocol):
    """What the relay needs from :class:`gateway.session.Session` (tests pass a fake)."""

    masker: Masker
    result_row_cap: int

    def identity_expired(self) -> bool: ...

    def authorize(self, command: Command) -> Decision: ...

    def record(self, kind: str, payload: Any, *, flush: bool = False) -> None: ...


class SessionExpired(Exception):
    """The caller's token expired: no further statement may run."""


def decide(
    session: SessionServices, commands: tuple[Command, ...], *, names_check: bool = True
) -> Decision:
    """The strictest of the connector's own rules and the session's policy for ``commands``.

    ``names_check``: match masked columns by the names a statement spells (when no catalog
    lineage judges them, see guard.py)."""
    if session.identity_expired():
        raise SessionExpired
    if not commands:
        return Decision(Action.ALLOW, "wardgate.empty", "empty query")
    decisions = []
    for command in commands:
        # The connector's own rules come first so that, among equal verdicts, they name it.
        own = [*connector_rules((command,), session.masker, names_check),
               session.authorize(command)]
        decision = Decision.strictest(own)
        if decision.action is Action.REVIEW and "prepare" in command.kinds:
            # PREPARE runs nothing: the statement is held when EXECUTE runs it, with its
            # parameters, as a Parse is held at Execute.
            decision = Decision(Action.ALLOW, decision.rule,
                                "prepared; it is held for review when it is executed")
        decisions.append(decision)
    return Decision.strictest(decisions)


def connector_rules(
    commands: tuple[Command, ...], masker: Masker, names_check: bool = True
) -> list[Decision]:
    """Rules no configuration can lift: they keep masking and identity intact."""
    out: list[Decision] = []
    for c in commands:
        if "lexer_setting" in c.flags:
            # client_encoding / standard_conforming_strings change how bytes and strings are
            # read: masking and classification both rely on the pinned values.
            out.append(Decision(
                Action.DENY, "wardgate.encoding",
                "client_encoding (UTF8) and string-literal settings are pinned by the gateway; "
                "this statement could change them",
            ))
        if names_check and masker.column_globs:
            used = masked_column_uses(c.text, masker.column_is_masked)
            if used:
                out.append(Decision(
                    Action.DENY, "wardgate.masking",
                    f"masked column(s) {', '.join(used)} may only be selected as they are: "
                    "not renamed, computed with, filtered, sorted or copied",
                ))
    return out


def denial_reply(decision: Decision) -> tuple[str, str]:
    """(SQLSTATE, message) the client is told for a refused statement."""
    if decision.rule == CANCELLED_RULE:
        return "57014", CANCELLED_MESSAGE
    if decision.rule == "wardgate.syntax":
        return "42601", decision.reason
    return "42501", f'permission denied by wardgate rule "{decision.rule}": {decision.reason}'


def params_for_record(bind: Bind | None, param_types: tuple[int, ...]) -> list[Any]:
    """Bound parameters as an auditor reads them: text, numbers rendered, other binary as bytes."""
    if bind is None:
        return []
    out: list[Any] = []
    for i, value in enumerate(bind.params):
        oid = param_types[i] if i < len(param_types) else 0
        if value is None:
            out.append(None)
        elif bind.param_format(i) == 0 or oid in TEXT_LIKE:
            out.append(str(value, "utf-8", "replace"))
        elif oid in NUMERIC and (number := number_text(oid, value)) is not None:
            out.append(number)
        else:
            out.append(bytes(value))
    return out


@functools.lru_cache(maxsize=2048)
def command_records(commands: tuple[Command, ...]) -> list[dict[str, Any]]:
    # Classification is cached per SQL text, so the same Command objects come back for repeated
    # statements; their record form is cached too. The msgpack packer never mutates it.
    return [c.to_record() for c in commands]
