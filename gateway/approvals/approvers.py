"""Who may decide what: approver groups per rule and per grant, and the refusals.

A review's approvers are the groups of the rule that held it (``approver_groups``), else the
global ``[approvals] approver_groups``; they are copied into the review when it is created, so a
configuration reload cannot change who may approve a command already waiting. A grant's approvers
are the ``approver_groups`` of the rules that test that grant, else the global groups. Nobody ever
decides their own request, whatever groups they hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.approvals.models import NotApproverRefused, SelfApprovalRefused
from gateway.model import Identity
from gateway.policy import Rule


@dataclass(frozen=True, slots=True)
class ReviewRule:
    """What a rule says about the reviews it causes."""

    min_approvals: int
    approver_groups: frozenset[str]


class Approvers:
    def __init__(
        self,
        default_groups: frozenset[str],
        rule_settings: Mapping[str, ReviewRule],
        grant_groups: Mapping[str, frozenset[str]],
    ) -> None:
        self.default_groups = default_groups
        self._rules = dict(rule_settings)
        self._grants = dict(grant_groups)
        every = set(default_groups)
        for settings in self._rules.values():
            every.update(settings.approver_groups)
        for groups in self._grants.values():
            every.update(groups)
        self.all_groups = frozenset(every)

    @classmethod
    def from_rules(cls, rules: Iterable[Rule], default_groups: frozenset[str]) -> Approvers:
        settings: dict[str, ReviewRule] = {}
        grant_groups: dict[str, set[str]] = {}
        for rule in rules:
            groups = rule.approver_groups if rule.approver_groups is not None else default_groups
            settings[rule.name] = ReviewRule(rule.min_approvals, frozenset(groups))
            if rule.grant is not None and rule.approver_groups is not None:
                grant_groups.setdefault(rule.grant, set()).update(rule.approver_groups)
        return cls(
            default_groups,
            settings,
            {name: frozenset(groups) for name, groups in grant_groups.items()},
        )

    def for_rule(self, rule_name: str) -> ReviewRule:
        """Decisions not made by a named rule (the default policy, a plugin) need one approval
        from the global groups."""
        return self._rules.get(rule_name) or ReviewRule(1, self.default_groups)

    def for_grant(self, grant: str) -> frozenset[str]:
        return self._grants.get(grant, self.default_groups)

    def is_approver(self, identity: Identity) -> bool:
        """May this identity see everyone's reviews and grants?"""
        return not self.all_groups.isdisjoint(identity.groups)

    @staticmethod
    def check(identity: Identity, requester: str, groups: frozenset[str], what: str) -> None:
        """Raise unless ``identity`` may decide ``what`` (``review r-…``) asked by ``requester``."""
        if identity.subject == requester:
            raise SelfApprovalRefused(
                f"{identity.subject} requested {what} and cannot decide it; another approver must"
            )
        if not groups:
            raise NotApproverRefused(
                f"nobody may decide {what}: no approver groups are configured "
                "(set [approvals] approver_groups, or approver_groups on the rule)"
            )
        if groups.isdisjoint(identity.groups):
            raise NotApproverRefused(
                f"{identity.subject} may not decide {what}: approvers are members of "
                + ", ".join(sorted(groups))
            )
