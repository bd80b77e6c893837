"""The rule engine: which identity may run which command on which target.

Rules come from ``[[rules]]`` in the configuration, in file order. Every rule that matches a command
is collected and the strictest wins (deny beats review beats allow), so the order of the files never
widens access: a later ``allow`` cannot undo an earlier ``deny``. Among rules with the same action the
first in file order names the decision, which keeps the reported rule stable when files are added.

The engine is pure: no I/O, no clock. It is called for every statement, so each rule's sets are built
once and recent answers are cached (a Decision is immutable, so sharing one is safe).

A rule with ``grant = "NAME"`` applies only while the caller holds an approved, unexpired grant of
that name for the target. The engine does not know about time or approvals: the caller passes the
names of the grants it holds right now (``decide(..., grants=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from gateway.model import Action, Command, Decision, Identity

DEFAULT_RULE_NAME = "policy.default"

# Bounded so a client cycling through distinct statement kinds or targets cannot grow memory; when
# full the cache is simply dropped, which costs one re-evaluation per key.
_CACHE_LIMIT = 4096

_CacheKey = tuple[frozenset[str], str, str, frozenset[str], frozenset[str], frozenset[str]]


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[rules]]`` entry. ``None`` in a filter means "anything".

    ``commands`` holds statement/command kinds (``select``, ``drop``, ``get``, ``exec``) and shared
    categories (``read``, ``ddl``, ...) in lower case; a command matches when any of its kinds or
    categories is in the set.
    """

    name: str
    action: Action
    groups: frozenset[str] | None = None
    targets: tuple[str, ...] | None = None
    commands: frozenset[str] | None = None
    protocols: frozenset[str] | None = None
    reason: str = ""
    source: str = ""  # the file that defined the rule, for operators reading a decision
    grant: str | None = None  # applies only while the caller holds this grant for the target
    min_approvals: int = 1  # review rules: distinct approvers needed
    approver_groups: frozenset[str] | None = None  # review rules: None = [approvals] groups

    def matches(
        self,
        identity: Identity,
        target_name: str,
        protocol: str,
        command: Command,
        grants: frozenset[str] = frozenset(),
    ) -> bool:
        words = _command_words(command.kinds, command.categories)
        return self._matches(identity.groups, target_name, protocol, words, grants)

    def _matches(
        self,
        groups: frozenset[str],
        target_name: str,
        protocol: str,
        words: frozenset[str],
        grants: frozenset[str] = frozenset(),
    ) -> bool:
        if self.grant is not None and self.grant not in grants:
            return False
        if not self.admits(groups, target_name, protocol):
            return False
        if self.commands is not None:
            return not self.commands.isdisjoint(words)
        return True

    def admits(self, groups: frozenset[str], target_name: str, protocol: str) -> bool:
        """The caller/target filters alone (groups, protocols, targets): whether this rule can
        apply to anything this caller sends to this target."""
        if self.groups is not None and self.groups.isdisjoint(groups):
            return False
        if self.protocols is not None and protocol not in self.protocols:
            return False
        return self.targets is None or any(
            fnmatchcase(target_name, pattern) for pattern in self.targets
        )

    def explain(self) -> str:
        """The reason shown when this rule decides: the operator's text, or a generated one."""
        if self.reason:
            return self.reason
        verb = {
            Action.ALLOW: "allowed",
            Action.REVIEW: "held for review",
            Action.DENY: "denied",
        }[self.action]
        return f'{verb} by rule "{self.name}"'


def _command_words(kinds: frozenset[str], categories: Iterable[str]) -> frozenset[str]:
    # Rules are stored lower case; connectors may report kinds as the protocol spells them ("GET").
    words = {kind.lower() for kind in kinds}
    words.update(str(category) for category in categories)
    return frozenset(words)


class PolicyEngine:
    """Judges commands against an ordered set of rules and a default action."""

    def __init__(self, rules: Iterable[Rule], default: Action) -> None:
        self._rules: tuple[Rule, ...] = tuple(rules)
        self._default = default
        self._cache: dict[_CacheKey, Decision] = {}
        self._by_name = {rule.name: rule for rule in self._rules}
        # Only grants some rule tests can change a decision; keying the cache on those alone
        # keeps a caller's unrelated grants from multiplying cache entries.
        self._grant_names = frozenset(r.grant for r in self._rules if r.grant is not None)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    @property
    def default(self) -> Action:
        return self._default

    @property
    def grant_names(self) -> frozenset[str]:
        """Every grant some rule tests (what an access request may ask for)."""
        return self._grant_names

    def rule(self, name: str) -> Rule | None:
        return self._by_name.get(name)

    def may_reach(self, identity: Identity, target_name: str, protocol: str) -> bool:
        """Could anything this caller sends to this target be allowed (or reviewed)?

        Grants are not required here: a grant approved later applies to the open session.
        Connectors use it to refuse a connection no rule could ever serve.
        """
        if self._default is not Action.DENY:
            return True
        return any(
            rule.action is not Action.DENY and rule.admits(identity.groups, target_name, protocol)
            for rule in self._rules
        )

    def decide(
        self,
        identity: Identity,
        target_name: str,
        command: Command,
        grants: frozenset[str] = frozenset(),
    ) -> Decision:
        relevant = grants & self._grant_names if grants else frozenset()
        key: _CacheKey = (
            identity.groups,
            target_name,
            command.protocol,
            command.kinds,
            frozenset(str(c) for c in command.categories),
            relevant,
        )
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        decision = self._evaluate(identity, target_name, command, relevant)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = decision
        return decision

    def _evaluate(
        self,
        identity: Identity,
        target_name: str,
        command: Command,
        grants: frozenset[str] = frozenset(),
    ) -> Decision:
        words = _command_words(command.kinds, command.categories)
        best: Rule | None = None
        for rule in self._rules:
            if not rule._matches(identity.groups, target_name, command.protocol, words, grants):
                continue
            if best is None or rule.action.severity > best.action.severity:
                best = rule
                if best.action is Action.DENY:
                    break  # nothing is stricter, and later denies never displace the first
        if best is not None:
            return Decision(best.action, best.name, best.explain(), best.grant)
        return Decision(
            self._default, DEFAULT_RULE_NAME, self._default_reason(target_name, command)
        )

    def _default_reason(self, target_name: str, command: Command) -> str:
        what = ", ".join(sorted(command.kinds)) or "this command"
        if self._default is Action.DENY:
            return (
                f'no rule allows {what} on target "{target_name}" for your groups; '
                "the default policy is deny (ask an operator to add a rule)"
            )
        if self._default is Action.REVIEW:
            return (
                f'no rule covers {what} on target "{target_name}"; '
                "the default policy holds it for review"
            )
        return f'no rule covers {what} on target "{target_name}"; the default policy is allow'
