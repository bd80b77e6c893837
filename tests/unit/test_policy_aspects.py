"""The rule language says what it means: a command is allowed only when every one of its aspects
is allowed, role changes need a rule that names them, flags can be named, and denials explain."""

from __future__ import annotations

import pytest

from gateway.model import Action, Aspect, Category, Command, Identity
from gateway.policy import DEFAULT_RULE_NAME, PolicyEngine, Rule

ALLOW, REVIEW, DENY = Action.ALLOW, Action.REVIEW, Action.DENY
R, W, S, ADM, ROLE = Category.READ, Category.WRITE, Category.SESSION, Category.ADMIN, Category.ROLE
AGENTS = frozenset({"ai-agents"})


def who(*groups: str) -> Identity:
    return Identity(subject="agent-1", groups=frozenset(groups), expires_at=2e9, issuer="test")


def command(*aspects: Aspect, flags: tuple[str, ...] = ()) -> Command:
    return Command(
        protocol="postgres",
        text="...",
        kinds=frozenset(a.name for a in aspects if ":" not in a.name),
        categories=frozenset(a.category for a in aspects),
        flags=frozenset(flags),
        aspects=frozenset(aspects),
    )


SELECT = Aspect("select", R)
SLEEP = Aspect("function:pg_sleep", ADM, '"pg_sleep" is a function with side effects')
NEXTVAL = Aspect("function:nextval", W, '"nextval" is a function with side effects')
DELETE = Aspect("delete", W)
SET = Aspect("set", S)
SET_ROLE = Aspect("set_role", ROLE, "set_role changes the role statements run as")
SET_CONFIG_ROLE = Aspect("function:set_config", ROLE, '"set_config" changes the role')
LISTEN = Aspect("listen", R)

READ_SESSION = Rule("agents may read", ALLOW, AGENTS, commands=frozenset({"read", "session"}))
REVIEW_DELETE = Rule("deletes wait", REVIEW, AGENTS, commands=frozenset({"delete"}))
EVERYTHING = Rule("dbas may do anything", ALLOW, frozenset({"dba"}))


def decide(rules: list[Rule], cmd: Command, *groups: str, grants: frozenset[str] = frozenset(),
           default: Action = DENY) -> tuple[Action, str, str]:
    decision = PolicyEngine(rules, default).decide(who(*groups), "pg-demo", cmd, grants)
    return decision.action, decision.rule, decision.reason


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        pytest.param(command(SELECT), ALLOW, id="plain select"),
        pytest.param(command(SELECT, SLEEP), DENY, id="select calling pg_sleep"),
        pytest.param(command(SELECT, NEXTVAL), DENY, id="select writing a sequence"),
        pytest.param(command(SELECT, DELETE), REVIEW, id="writable CTE holding a delete"),
        pytest.param(command(SET), ALLOW, id="harmless setting"),
        pytest.param(command(SET, SET_ROLE), DENY, id="set role is not a session setting"),
        pytest.param(command(SELECT, SET_CONFIG_ROLE), DENY, id="set_config role"),
        pytest.param(command(LISTEN), ALLOW, id="listen reads notifications"),
    ],
)
def test_every_aspect_must_be_allowed(cmd: Command, expected: Action) -> None:
    assert decide([READ_SESSION, REVIEW_DELETE], cmd, "ai-agents")[0] is expected


def test_denial_names_the_aspect_no_rule_allows_and_the_default() -> None:
    action, rule, reason = decide([READ_SESSION], command(SELECT, SLEEP), "ai-agents")
    assert (action, rule) == (DENY, DEFAULT_RULE_NAME)
    assert reason.startswith(
        '"pg_sleep" is a function with side effects (category admin); no rule allows it on '
        'target "pg-demo"'
    )
    assert "select" not in reason  # the allowed aspect is not blamed


def test_a_broad_allow_rule_does_not_admit_role_changes() -> None:
    assert decide([EVERYTHING], command(SET, SET_ROLE), "dba")[0] is DENY
    assert decide([EVERYTHING], command(SELECT, SET_CONFIG_ROLE), "dba")[0] is DENY
    assert decide([EVERYTHING], command(SELECT, SLEEP), "dba")[0] is ALLOW


def test_role_changes_are_allowed_by_a_rule_that_names_them() -> None:
    by_category = Rule("roles", ALLOW, frozenset({"dba"}), commands=frozenset({"role"}))
    by_kind = Rule("set role", ALLOW, frozenset({"dba"}), commands=frozenset({"set_role"}))
    assert decide([EVERYTHING, by_category], command(SET, SET_ROLE), "dba")[0] is ALLOW
    assert decide([EVERYTHING, by_kind], command(SET, SET_ROLE), "dba")[0] is ALLOW
    # the kind allows the SET ROLE statement, not a set_config call that changes the role
    assert decide([EVERYTHING, by_kind], command(SELECT, SET_CONFIG_ROLE), "dba")[0] is DENY


def test_a_broad_deny_rule_holds_role_changes_too() -> None:
    nothing = Rule("frozen", DENY, frozenset({"dba"}))
    assert decide([EVERYTHING, nothing], command(SET, SET_ROLE), "dba")[:2] == (DENY, "frozen")


def test_two_allow_rules_together_cover_a_command() -> None:
    writes = Rule("agents may write", ALLOW, AGENTS, commands=frozenset({"write"}))
    assert decide([READ_SESSION], command(SELECT, NEXTVAL), "ai-agents")[0] is DENY
    assert decide([READ_SESSION, writes], command(SELECT, NEXTVAL), "ai-agents")[0] is ALLOW


def test_a_kind_allows_only_its_own_aspect() -> None:
    select_only = Rule("select", ALLOW, AGENTS, commands=frozenset({"select"}))
    assert decide([select_only], command(SELECT), "ai-agents")[0] is ALLOW
    assert decide([select_only], command(SELECT, NEXTVAL), "ai-agents")[0] is DENY
    assert decide([select_only], command(SELECT, DELETE), "ai-agents")[0] is DENY


def test_review_of_one_aspect_and_default_deny_of_another_is_deny() -> None:
    # Approving the DELETE must not let the unallowed pg_sleep run with it.
    action, rule, reason = decide([READ_SESSION, REVIEW_DELETE], command(DELETE, SLEEP),
                                  "ai-agents")
    assert (action, rule) == (DENY, DEFAULT_RULE_NAME)
    assert "pg_sleep" in reason


@pytest.mark.parametrize(
    ("flags", "expected"),
    [((), ALLOW), (("search_path",), DENY), (("no_where", "search_path"), DENY)],
)
def test_a_rule_can_name_flags(flags: tuple[str, ...], expected: Action) -> None:
    keep_path = Rule("agents keep search_path", DENY, AGENTS, flags=frozenset({"search_path"}),
                     reason="changing search_path could shadow built-in functions")
    action, rule, reason = decide([READ_SESSION, keep_path], command(SET, flags=flags),
                                  "ai-agents")
    assert action is expected
    if expected is DENY:
        assert rule == "agents keep search_path"
        assert reason.startswith(
            "changing search_path could shadow built-in functions; the statement is set")


def test_flags_and_sql_filters_both_apply() -> None:
    no_where = Rule("no unbounded deletes", DENY, AGENTS, commands=frozenset({"delete"}),
                    flags=frozenset({"no_where"}))
    rules = [READ_SESSION, REVIEW_DELETE, no_where]
    assert decide(rules, command(DELETE), "ai-agents")[0] is REVIEW
    assert decide(rules, command(DELETE, flags=("no_where",)), "ai-agents")[0] is DENY
    assert decide(rules, command(SELECT, flags=("no_where",)), "ai-agents")[0] is ALLOW


def test_a_denial_a_grant_would_lift_says_how_to_ask() -> None:
    granted = Rule("writes with a grant", ALLOW, AGENTS, commands=frozenset({"write"}),
                   grant="write")
    action, _, reason = decide([READ_SESSION, granted], command(SELECT, NEXTVAL), "ai-agents")
    assert action is DENY
    assert reason.endswith(
        'a grant would allow it: wardgate access request --target "pg-demo" --grant write '
        '--for 30m --reason "..."'
    )
    action, rule, _ = decide([READ_SESSION, granted], command(SELECT, NEXTVAL), "ai-agents",
                             grants=frozenset({"write"}))
    assert (action, rule) == (ALLOW, "agents may read")


def test_allow_relying_on_a_grant_reports_the_grant() -> None:
    granted = Rule("writes with a grant", ALLOW, AGENTS, commands=frozenset({"write"}),
                   grant="write")
    engine = PolicyEngine([READ_SESSION, granted], DENY)
    decision = engine.decide(who("ai-agents"), "pg-demo", command(SELECT, NEXTVAL),
                             frozenset({"write"}))
    assert decision.grant == "write"
    assert engine.decide(who("ai-agents"), "pg-demo", command(SELECT),
                         frozenset({"write"})).grant is None


def test_no_hint_when_a_deny_rule_decides() -> None:
    granted = Rule("anything with a grant", ALLOW, AGENTS, grant="break-glass")
    wall = Rule("never sleep", DENY, AGENTS, commands=frozenset({"admin"}))
    _, rule, reason = decide([granted, wall], command(SELECT, SLEEP), "ai-agents")
    assert rule == "never sleep" and "grant" not in reason


def test_a_command_without_aspects_is_unknown_never_vacuously_allowed() -> None:
    empty = Command("postgres", "", frozenset(), frozenset())
    assert decide([READ_SESSION], empty, "ai-agents")[0] is DENY
    assert decide([EVERYTHING], empty, "dba")[0] is ALLOW
