"""The rule engine: which rule decides, and why, for identity x target x command."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.model import Action, Category, Command, Decision, Identity
from gateway.policy import DEFAULT_RULE_NAME, PolicyEngine, Rule

ALLOW, REVIEW, DENY = Action.ALLOW, Action.REVIEW, Action.DENY


def who(*groups: str) -> Identity:
    return Identity(subject="agent-1", groups=frozenset(groups), expires_at=2e9, issuer="test")


def sql(*kinds: str, categories: tuple[Category, ...] = (), protocol: str = "postgres") -> Command:
    return Command(
        protocol=protocol,
        text=" ; ".join(kinds),
        kinds=frozenset(kinds),
        categories=frozenset(categories),
    )


SELECT = sql("select", categories=(Category.READ,))
DELETE = sql("delete", categories=(Category.WRITE,))
DROP = sql("drop", categories=(Category.DDL,))
HTTP_GET = sql("GET", categories=(Category.READ,), protocol="http")

# The shipped default policy, as conf.d/50-rules.toml writes it.
SHIPPED = (
    Rule("agents may read", ALLOW, frozenset({"ai-agents"}), ("pg-*",), frozenset({"read"})),
    Rule(
        "destructive changes need review",
        REVIEW,
        frozenset({"ai-agents"}),
        ("pg-*",),
        frozenset({"delete", "update", "truncate"}),
    ),
    Rule(
        "no ddl for agents",
        DENY,
        frozenset({"ai-agents"}),
        None,
        frozenset({"ddl"}),
        None,
        "agents may not change the schema",
    ),
    Rule("dbas may do anything", ALLOW, frozenset({"dba"})),
)


AGENT, DBA = ("ai-agents",), ("dba",)
DEFAULT = DEFAULT_RULE_NAME
READ_RULE = "agents may read"
REVIEW_RULE = "destructive changes need review"
DDL_RULE = "no ddl for agents"
DBA_RULE = "dbas may do anything"


@pytest.mark.parametrize(
    ("groups", "target", "command", "action", "rule"),
    [
        pytest.param(AGENT, "pg-demo", SELECT, ALLOW, READ_RULE, id="agent reads"),
        pytest.param(AGENT, "pg-demo", DELETE, REVIEW, REVIEW_RULE, id="agent delete reviewed"),
        pytest.param(AGENT, "pg-demo", DROP, DENY, DDL_RULE, id="agent drop denied"),
        pytest.param(AGENT, "mysql-x", SELECT, DENY, DEFAULT, id="unlisted target -> default"),
        pytest.param((), "pg-demo", SELECT, DENY, DEFAULT, id="no groups -> default"),
        pytest.param(("AI-Agents",), "pg-demo", SELECT, DENY, DEFAULT, id="groups case-sensitive"),
        pytest.param(DBA, "pg-demo", DROP, ALLOW, DBA_RULE, id="dba drops"),
        pytest.param(DBA, "anything", DELETE, ALLOW, DBA_RULE, id="dba on any target"),
        pytest.param(AGENT + DBA, "pg-demo", DROP, DENY, DDL_RULE, id="deny beats dba allow"),
        pytest.param(AGENT + DBA, "pg-demo", DELETE, REVIEW, REVIEW_RULE, id="review beats allow"),
    ],
)
def test_shipped_policy(
    groups: tuple[str, ...], target: str, command: Command, action: Action, rule: str
) -> None:
    decision = PolicyEngine(SHIPPED, DENY).decide(who(*groups), target, command)
    assert (decision.action, decision.rule) == (action, rule)


@pytest.mark.parametrize(
    ("rules", "action", "rule"),
    [
        pytest.param([Rule("d", DENY), Rule("a", ALLOW)], DENY, "d", id="deny, then allow"),
        pytest.param([Rule("a", ALLOW), Rule("d", DENY)], DENY, "d", id="allow, then deny"),
        pytest.param([Rule("a", ALLOW), Rule("r", REVIEW)], REVIEW, "r", id="allow, then review"),
        pytest.param([Rule("r", REVIEW), Rule("a", ALLOW)], REVIEW, "r", id="review, then allow"),
        pytest.param([Rule("r", REVIEW), Rule("d", DENY)], DENY, "d", id="review, then deny"),
        pytest.param([Rule("a1", ALLOW), Rule("a2", ALLOW)], ALLOW, "a1", id="first allow names"),
        pytest.param(
            [Rule("a", ALLOW), Rule("d1", DENY), Rule("d2", DENY)], DENY, "d1", id="first deny"
        ),
    ],
)
def test_strictest_wins_whatever_the_order(rules: list[Rule], action: Action, rule: str) -> None:
    decision = PolicyEngine(rules, ALLOW).decide(who(), "t", SELECT)
    assert (decision.action, decision.rule) == (action, rule)


@pytest.mark.parametrize("default", [ALLOW, REVIEW, DENY])
def test_no_match_gets_the_default(default: Action) -> None:
    engine = PolicyEngine([Rule("only dba", ALLOW, groups=frozenset({"dba"}))], default)
    decision = engine.decide(who("dev"), "t", DROP)
    assert (decision.action, decision.rule) == (default, DEFAULT)


def R(**filters: Any) -> Rule:  # a short name keeps each row of the table on one line
    return Rule("r", ALLOW, **filters)


@pytest.mark.parametrize(
    ("rule", "groups", "target", "command", "matches"),
    [
        pytest.param(R(), ("anyone",), "t", SELECT, True, id="no filters: anything"),
        pytest.param(R(groups=frozenset({"a", "b"})), ("b",), "t", SELECT, True, id="groups meet"),
        pytest.param(R(groups=frozenset({"a"})), ("b",), "t", SELECT, False, id="groups apart"),
        pytest.param(R(targets=("pg-*",)), (), "pg-prod", SELECT, True, id="glob matches"),
        pytest.param(R(targets=("pg-*",)), (), "my-pg", SELECT, False, id="glob anchored"),
        pytest.param(R(targets=("pg-*",)), (), "PG-x", SELECT, False, id="glob case-sensitive"),
        pytest.param(R(targets=("a", "pg-?")), (), "pg-1", SELECT, True, id="any glob"),
        pytest.param(R(commands=frozenset({"read"})), (), "t", SELECT, True, id="category"),
        pytest.param(R(commands=frozenset({"select"})), (), "t", SELECT, True, id="kind"),
        pytest.param(R(commands=frozenset({"select"})), (), "t", DELETE, False, id="other kind"),
        pytest.param(R(commands=frozenset({"read"})), (), "t", DELETE, False, id="other category"),
        pytest.param(R(commands=frozenset({"get"})), (), "api", HTTP_GET, True, id="GET vs get"),
        pytest.param(R(protocols=frozenset({"http"})), (), "api", HTTP_GET, True, id="protocol"),
        pytest.param(R(protocols=frozenset({"http"})), (), "pg", SELECT, False, id="other proto"),
        pytest.param(
            R(groups=frozenset({"dev"}), targets=("pg-*",), commands=frozenset({"read"})),
            ("dev",),
            "pg-1",
            DELETE,
            False,
            id="every filter must match",
        ),
    ],
)
def test_rule_filters(
    rule: Rule, groups: tuple[str, ...], target: str, command: Command, matches: bool
) -> None:
    assert rule.matches(who(*groups), target, command.protocol, command) is matches
    # The engine must agree with the rule, from a cold and from a warm cache.
    engine = PolicyEngine([rule], DENY)
    for _ in range(2):
        assert (engine.decide(who(*groups), target, command).rule == "r") is matches


def test_multi_kind_command_matches_on_any_kind() -> None:
    engine = PolicyEngine([Rule("no drop", DENY, commands=frozenset({"drop"}))], ALLOW)
    decision = engine.decide(who(), "t", sql("select", "drop"))
    assert decision.action is DENY


def test_reason_is_the_rules_own_text_and_what_the_statement_is() -> None:
    engine = PolicyEngine(SHIPPED, DENY)
    assert engine.decide(who("ai-agents"), "pg-demo", DROP).reason == (
        "agents may not change the schema; the statement is drop (category ddl)"
    )


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (DENY, 'denied by rule "r"'),
        (REVIEW, 'held for review by rule "r"'),
        (ALLOW, 'allowed by rule "r"'),
    ],
)
def test_generated_reason_names_the_rule(action: Action, expected: str) -> None:
    reason = PolicyEngine([Rule("r", action)], DENY).decide(who(), "t", SELECT).reason
    assert reason.split("; the statement is ")[0] == expected


def test_default_deny_reason_helps_the_agent() -> None:
    decision = PolicyEngine([], DENY).decide(who(), "pg-demo", DROP)
    assert decision == Decision(DENY, DEFAULT_RULE_NAME, decision.reason)
    assert "drop" in decision.reason
    assert '"pg-demo"' in decision.reason
    assert "default policy is deny" in decision.reason


def test_cache_keys_on_groups_so_one_identity_cannot_leak_to_another() -> None:
    engine = PolicyEngine(SHIPPED, DENY)
    assert engine.decide(who("dba"), "pg-demo", DROP).action is ALLOW
    assert engine.decide(who("ai-agents"), "pg-demo", DROP).action is DENY
    assert engine.decide(who(), "pg-demo", DROP).action is DENY


def test_cache_stays_bounded_and_correct_past_its_limit() -> None:
    engine = PolicyEngine([Rule("a", ALLOW, targets=("keep",))], DENY)
    for i in range(5000):
        assert engine.decide(who(), f"t{i}", SELECT).action is DENY
    assert len(engine._cache) <= 4096
    assert engine.decide(who(), "keep", SELECT).action is ALLOW


@pytest.mark.parametrize(
    ("groups", "target", "protocol", "default", "expected"),
    [
        ({"ai-agents"}, "pg-prod", "postgres", Action.DENY, True),    # allowing rule admits
        ({"ai-agents"}, "db-other", "postgres", Action.DENY, False),  # target glob excludes
        ({"visitors"}, "pg-prod", "postgres", Action.DENY, False),    # no group of any rule
        ({"ai-agents"}, "pg-prod", "mysql", Action.DENY, False),      # protocol filter
        ({"auditors"}, "pg-prod", "postgres", Action.DENY, True),     # a review rule counts
        ({"blocked"}, "pg-prod", "postgres", Action.DENY, False),     # only a deny rule matches
        ({"writers"}, "pg-prod", "postgres", Action.DENY, True),      # grant rule: grant can come later
        ({"visitors"}, "pg-prod", "postgres", Action.ALLOW, True),    # open default
    ],
)
def test_may_reach_uses_the_rules_caller_and_target_filters(
    groups: set[str], target: str, protocol: str, default: Action, expected: bool
) -> None:
    engine = PolicyEngine(
        [
            Rule("agents", Action.ALLOW, groups=frozenset({"ai-agents"}), targets=("pg-*",),
                 protocols=frozenset({"postgres"})),
            Rule("audit", Action.REVIEW, groups=frozenset({"auditors"})),
            Rule("nope", Action.DENY, groups=frozenset({"blocked"})),
            Rule("granted", Action.ALLOW, groups=frozenset({"writers"}), grant="write"),
        ],
        default,
    )
    assert engine.may_reach(who(*groups), target, protocol) is expected
