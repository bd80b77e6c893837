"""Configuration for approvals: [approvals], [admin], [plugins.NAME], and the rule keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import AdminConfig, ApprovalsConfig, approval_warnings, load_config
from gateway.errors import ConfigError


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    conf = tmp_path / "conf.d"
    conf.mkdir(exist_ok=True)
    (conf / "50-test.toml").write_text(text, encoding="utf-8")
    return load_config(conf, environ={})


def test_defaults_without_the_tables(tmp_path: Path) -> None:
    config = load(tmp_path, "[gateway]\n")
    assert config.approvals == ApprovalsConfig()
    assert (config.approvals.timeout, config.approvals.max_pending_per_identity) == (300.0, 10)
    assert config.admin is None
    assert config.plugins == {}


def test_approvals_admin_and_plugin_tables(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[approvals]
approver_groups = ["dba", "oncall"]
timeout = 120
max_pending_per_identity = 3
max_grant_duration = 3600

[admin]
bind = "127.0.0.1:8443"

[plugins.webhook]
urls = ["https://hooks.example.com/x"]
timeout = 2.5
[plugins.webhook.headers]
X-Team = "db"
""",
    )
    assert config.approvals == ApprovalsConfig(frozenset({"dba", "oncall"}), 120.0, 3, 3600.0)
    assert config.admin == AdminConfig("127.0.0.1", 8443)
    assert config.plugins["webhook"] == {
        "urls": ["https://hooks.example.com/x"],
        "timeout": 2.5,
        "headers": {"X-Team": "db"},
    }
    assert config.origin(
        "plugins",
        "webhook",
        "urls",
    ).endswith("50-test.toml")


def test_rule_approval_keys(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[[rules]]
name = "two person drop"
sql = ["drop"]
action = "review"
min_approvals = 2
approver_groups = ["dba"]

[[rules]]
name = "writes with a grant"
sql = ["write"]
action = "allow"
grant = "write"
approver_groups = ["leads"]
""",
    )
    drop, writes = config.rules
    assert (drop.min_approvals, drop.approver_groups, drop.grant) == (2, frozenset({"dba"}), None)
    assert (writes.min_approvals, writes.approver_groups, writes.grant) == (
        1,
        frozenset({"leads"}),
        "write",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[rules]]\nname = "a"\naction = "allow"\nmin_approvals = 2\n',
            '[[rules]] "a" min_approvals: applies only to rules with action = "review"',
        ),
        (
            '[[rules]]\nname = "a"\naction = "review"\nmin_approvals = 0\n',
            "min_approvals: expected an integer >= 1",
        ),
        (
            '[[rules]]\nname = "a"\naction = "deny"\napprover_groups = ["x"]\n',
            "approver_groups: applies only to rules",
        ),
        ('[[rules]]\nname = "a"\naction = "allow"\ngrant = "w r"\n', "grant: use letters"),
        ("[approvals]\ntimeout = 0\n", "[approvals] timeout: expected a positive number"),
        ('[approvals]\napprover_group = ["x"]\n', "did you mean approver_groups?"),
        ("[admin]\n", "[admin] bind: required key is missing"),
        ('[admin]\nbind = "localhost"\n', '[admin] bind: expected "host:port"'),
        (
            (
                '[admin]\nbind = "127.0.0.1:1"\n'
                '[listeners.admin]\nprotocol = "postgres"\nbind = "127.0.0.1:2"\n'
            ),
            'the listener name "admin" is taken',
        ),
        ("[plugins]\nwebhook = 1\n", "[plugins] webhook: expected a table"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert "50-test.toml" in str(info.value)
    assert message in str(info.value)


def test_warning_when_held_commands_can_never_be_approved(tmp_path: Path) -> None:
    rules = '[[rules]]\nname = "held"\naction = "review"\n'
    assert "can never be approved" in approval_warnings(load(tmp_path, rules))[0]
    with_groups = rules + '[approvals]\napprover_groups = ["dba"]\n'
    assert approval_warnings(load(tmp_path, with_groups)) == []
    per_rule = rules + 'approver_groups = ["dba"]\n'
    assert approval_warnings(load(tmp_path, per_rule)) == []
