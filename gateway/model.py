"""The value types every connector and plugin shares: Identity, Target, Command, Decision."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, as proven by a validated token."""

    subject: str
    groups: frozenset[str]
    expires_at: float  # unix seconds
    issuer: str
    method: str = "oidc"  # how it authenticated: "oidc" (a validated JWT)
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def to_record(self) -> dict[str, Any]:
        return {
            "sub": self.subject,
            "groups": sorted(self.groups),
            "iss": self.issuer,
            "exp": self.expires_at,
            "method": self.method,
        }


@dataclass(frozen=True, slots=True)
class Target:
    """A named backend the gateway dials with its own credentials."""

    name: str
    protocol: str
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # never logged, never recorded
    database: str | None = None
    tls: str = "prefer"  # disable | prefer | require | verify-full
    ca_file: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """What a recording may hold about the target (no secrets)."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "address": f"{self.host}:{self.port}",
            "database": self.database,
            "user": self.user,
        }


class Category(enum.StrEnum):
    """Protocol-independent categories rules can name."""

    READ = "read"
    WRITE = "write"
    DDL = "ddl"
    DCL = "dcl"
    ADMIN = "admin"
    TRANSACTION = "transaction"
    SESSION = "session"
    #: Changes of the role or session authorization the target runs statements as. No broad rule
    #: admits it by accident: an allow rule must name ``role`` (or the kind) to admit it.
    ROLE = "role"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Aspect:
    """One thing a command is or does, and the category it puts the command in.

    ``name`` is a kind (``select``, ``set_role``) or what else caused the category
    (``function:pg_sleep``); ``what`` is how a person reads it in a denial
    (``"pg_sleep" is a function with side effects``). A command is allowed only when every one of
    its aspects is allowed: see :mod:`gateway.policy`.
    """

    name: str
    category: Category
    what: str = ""

    def describe(self) -> str:
        """A clause for a denial: '"pg_sleep" is a function with side effects (category admin)',
        'the statement is drop_table (category ddl)'."""
        what = self.what or f"the statement is {self.name}"
        return f"{what} (category {self.category})"


@dataclass(frozen=True, slots=True)
class Command:
    """What a connector parsed out of the traffic, ready to be judged.

    ``kinds`` are protocol-specific names (``select``, ``delete``, ``drop``, ``GET``, ``exec``);
    ``categories`` are the shared :class:`Category` values. A multi-statement message yields one
    Command per statement; a connector judges each and blocks the message if any is denied.
    """

    protocol: str
    text: str
    kinds: frozenset[str]
    categories: frozenset[Category]
    objects: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()  # no_where, multi_statement, side_effect_function, ...
    params: tuple[Any, ...] = ()
    #: What put the command in each category. Empty: every kind in every category (for
    #: connectors whose kinds map to one category each).
    aspects: frozenset[Aspect] = frozenset()

    def all_aspects(self) -> frozenset[Aspect]:
        if self.aspects:
            return self.aspects
        return frozenset(Aspect(k, c) for k in self.kinds for c in self.categories)

    def to_record(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "text": self.text,
            "kinds": sorted(self.kinds),
            "categories": sorted(str(c) for c in self.categories),
            "objects": sorted(self.objects),
            "flags": sorted(self.flags),
        }


class Action(enum.StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    DENY = "deny"

    @property
    def severity(self) -> int:
        return {Action.ALLOW: 0, Action.REVIEW: 1, Action.DENY: 2}[self]


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one Command. A denial is a value, not an exception."""

    action: Action
    rule: str  # the rule that decided, or "policy.default", or "plugin:<name>"
    reason: str
    grant: str | None = None  # the grant the deciding rule required, when it required one

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW

    def to_record(self) -> dict[str, str]:
        record = {"action": str(self.action), "rule": self.rule, "reason": self.reason}
        if self.grant is not None:
            record["grant"] = self.grant
        return record

    @staticmethod
    def strictest(decisions: list[Decision]) -> Decision:
        """deny beats review beats allow; among equals the first wins."""
        best = decisions[0]
        for d in decisions[1:]:
            if d.action.severity > best.action.severity:
                best = d
        return best
