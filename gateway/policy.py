"""The rule engine: which identity may run which command on which target.

Rules come from ``[[rules]]`` in the configuration, in file order. A command is judged **aspect by
aspect**: an aspect is one thing the command is or does and the category it puts it in
(``select``/read, ``function:pg_sleep``/admin, ``set_role``/role; see :class:`gateway.model.Aspect`).

* A rule *claims* an aspect when its filters (groups, targets, protocols, flags, a held grant) match
  and its ``sql`` list names the aspect's kind or category (a rule without ``sql`` claims every
  aspect; a ``deny`` rule naming any kind of the command claims all of its aspects).
* An aspect's verdict is the strictest action among the rules claiming it (deny beats review beats
  allow); an aspect no rule claims gets the ``[policy]`` default.
* The command's verdict is the strictest verdict among its aspects. So a command is **allowed only
  when every one of its aspects is allowed**: ``SELECT pg_sleep(1)`` under a rule allowing ``read``
  is not allowed, because its ``pg_sleep`` aspect is ``admin``.
* Role and authorization changes (category ``role``) are never claimed by an ``allow`` rule that
  does not name them: a broad "may do anything" rule does not admit ``SET ROLE`` by accident.

The order of the files never widens access: a later ``allow`` cannot undo an earlier ``deny``.
Among rules with the same action the first in file order names the decision.

The engine is pure: no I/O, no clock. It is called for every statement, so each rule's sets are built
once and recent answers are cached (a Decision is immutable, so sharing one is safe).

A rule with ``grant = "NAME"`` applies only while the caller holds an approved, unexpired grant of
that name for the target. The engine does not know about time or approvals: the caller passes the
names of the grants it holds right now (``decide(..., grants=...)``). When a grant the caller does
not hold would allow a denied command, the denial says so and how to ask for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from gateway.model import Action, Aspect, Category, Command, Decision, Identity

DEFAULT_RULE_NAME = "policy.default"

# Bounded so a client cycling through distinct statement kinds or targets cannot grow memory; when
# full the cache is simply dropped, which costs one re-evaluation per key.
_CACHE_LIMIT = 4096
_MAX_DESCRIBED = 3  # aspects named in one denial; the rest are counted

_CacheKey = tuple[
    frozenset[str], str, str, frozenset[str], frozenset[Aspect], frozenset[str], frozenset[str]
]


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[rules]]`` entry. ``None`` in a filter means "anything".

    ``commands`` holds statement/command kinds (``select``, ``drop``, ``get``, ``exec``) and shared
    categories (``read``, ``ddl``, ...) in lower case; ``flags`` holds command flags
    (``no_where``, ``search_path``): the rule applies only to commands carrying one of them.
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
    flags: frozenset[str] | None = None

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

    def applies(
        self,
        groups: frozenset[str],
        target_name: str,
        command: Command,
        grants: frozenset[str] = frozenset(),
    ) -> bool:
        """Everything but the ``sql`` filter: caller, target, protocol, flags, grant."""
        if self.grant is not None and self.grant not in grants:
            return False
        if self.flags is not None and self.flags.isdisjoint(command.flags):
            return False
        return self.admits(groups, target_name, command.protocol)

    def claims(self, aspect: Aspect, command: Command) -> bool:
        """Whether the ``sql`` filter covers this aspect of ``command`` (filters aside)."""
        if self.commands is None:
            return self.action is not Action.ALLOW or aspect.category is not Category.ROLE
        if aspect.name.lower() in self.commands or str(aspect.category) in self.commands:
            return True
        # A deny rule naming any kind of the command denies the whole command. (A review rule
        # does not: approving its aspect must not let an aspect no rule allows run with it.)
        return self.action is Action.DENY and not self.commands.isdisjoint(
            k.lower() for k in command.kinds
        )

    def matches(
        self,
        identity: Identity,
        target_name: str,
        protocol: str,
        command: Command,
        grants: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether this rule claims any aspect of ``command`` (for tools listing rules)."""
        if not self.applies(identity.groups, target_name, command, grants):
            return False
        return any(self.claims(a, command) for a in _aspects(command))

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


def _aspects(command: Command) -> frozenset[Aspect]:
    found = command.all_aspects()
    if found:
        return found
    # A command that says nothing about itself is unknown, never vacuously allowed.
    return frozenset((Aspect("command", Category.UNKNOWN, "a command wardgate cannot classify"),))


@dataclass(frozen=True, slots=True)
class _Verdict:
    action: Action
    rule: Rule | None  # None: the default decided
    aspects: tuple[Aspect, ...]  # the aspects that got this verdict (for the reason)
    grants: tuple[str, ...] = ()  # grants the allowing rules relied on


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
            command.all_aspects(),
            command.flags,
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

    # -- evaluation -------------------------------------------------------------------------
    def _verdict(
        self, groups: frozenset[str], target_name: str, command: Command, grants: frozenset[str]
    ) -> _Verdict:
        applicable = [r for r in self._rules if r.applies(groups, target_name, command, grants)]
        aspects = sorted(_aspects(command), key=lambda a: (a.name, str(a.category)))
        per_aspect: list[tuple[Action, Rule | None, Aspect]] = []
        for aspect in aspects:
            best: Rule | None = None
            for rule in applicable:  # file order: the first of equal rules names the verdict
                if not rule.claims(aspect, command):
                    continue
                if best is None or rule.action.severity > best.action.severity:
                    best = rule
                    if best.action is Action.DENY:
                        break
                elif rule.action is best.action is Action.ALLOW and best.grant and not rule.grant:
                    best = rule  # an allow that needs no grant is the one relied on
            action = best.action if best is not None else self._default
            per_aspect.append((action, best, aspect))
        top = max(per_aspect, key=lambda p: p[0].severity)[0]
        if top is Action.ALLOW:
            used = [r for _, r, _ in per_aspect if r is not None]
            first = min(used, key=self._rules.index) if used else None
            grants_used = tuple(sorted({r.grant for r in used if r.grant is not None}))
            return _Verdict(Action.ALLOW, first, tuple(aspects), grants_used)
        worst = [(r, a) for action, r, a in per_aspect if action is top]
        by_rule = [(r, a) for r, a in worst if r is not None]
        if by_rule:  # a named rule explains itself better than the default
            rule = min((r for r, _ in by_rule), key=self._rules.index)
            return _Verdict(top, rule, tuple(a for r, a in by_rule if r is rule))
        return _Verdict(top, None, tuple(a for _, a in worst))

    def _evaluate(
        self,
        identity: Identity,
        target_name: str,
        command: Command,
        grants: frozenset[str] = frozenset(),
    ) -> Decision:
        verdict = self._verdict(identity.groups, target_name, command, grants)
        rule = verdict.rule
        if verdict.action is Action.ALLOW:
            if rule is None:  # the default allowed it
                return Decision(
                    Action.ALLOW, DEFAULT_RULE_NAME,
                    self._default_reason(target_name, verdict.aspects),
                )  # fmt: skip
            grant = verdict.grants[0] if verdict.grants else None
            return Decision(Action.ALLOW, rule.name, rule.explain(), grant)
        hint = self._grant_hint(identity, target_name, command, grants, verdict.action)
        if rule is None:
            reason = self._default_reason(target_name, verdict.aspects) + hint
            return Decision(verdict.action, DEFAULT_RULE_NAME, reason)
        reason = f"{rule.explain()}; {_described(verdict.aspects)}{hint}"
        return Decision(verdict.action, rule.name, reason, rule.grant)

    def _grant_hint(
        self,
        identity: Identity,
        target_name: str,
        command: Command,
        grants: frozenset[str],
        action: Action,
    ) -> str:
        """How to ask for a grant that would make this command less strictly judged."""
        missing = self._grant_names - grants
        if not missing:
            return ""
        with_all = self._verdict(identity.groups, target_name, command, grants | missing)
        if with_all.action.severity >= action.severity:
            return ""
        needed = [g for g in with_all.grants if g in missing] or sorted(missing)
        return (
            f'; a grant would allow it: wardgate access request --target "{target_name}" '
            f'--grant {needed[0]} --for 30m --reason "..."'
        )

    def _default_reason(self, target_name: str, aspects: Iterable[Aspect]) -> str:
        what = _described(aspects)
        where = f'on target "{target_name}" for your groups'
        if self._default is Action.DENY:
            return f"{what}; no rule allows it {where}; the default policy is deny"
        if self._default is Action.REVIEW:
            return f"{what}; no rule covers it {where}; the default policy holds it for review"
        return f"{what}; no rule covers it {where}; the default policy is allow"


def _described(aspects: Iterable[Aspect]) -> str:
    items = list(aspects)
    text = "; ".join(a.describe() for a in items[:_MAX_DESCRIBED])
    if len(items) > _MAX_DESCRIBED:
        text += f" and {len(items) - _MAX_DESCRIBED} more"
    return text
