"""Rules naming a kind, category or flag no protocol knows are refused, with the file, the rule,
the key, a did-you-mean and where to look the words up: a misspelt word in a deny rule would
otherwise be a rule that silently never matches."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from connectors.postgres.vocabulary import postgres_vocabulary
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError, PluginError
from gateway.hookspecs import hookimpl
from gateway.plugins import PluginHost
from gateway.vocabulary import (
    CommandVocabulary,
    check_rule_vocabulary,
    collect_vocabularies,
    format_vocabulary,
)

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = postgres_vocabulary()
# A second protocol, as a third-party connector would declare it.
MYSQL = CommandVocabulary("mysql", frozenset({"com_query", "exec", "select"}),
                          frozenset({"no_where", "local_infile"}))
HINT = "see `wardgate config check --vocabulary`"


def rules_dir(tmp_path: Path, rules: str) -> Path:
    conf = tmp_path / "conf.d"
    conf.mkdir(exist_ok=True)
    (conf / "50-rules.toml").write_text(textwrap.dedent(rules))
    return conf


def rule(**keys: object) -> str:
    lines = ['[[rules]]', 'name = "agents may read"', 'action = "deny"']
    for key, value in keys.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"


def check(tmp_path: Path, rules: str, *, installed: tuple[str, ...] = ("postgres", "mysql"),
          vocabularies: tuple[CommandVocabulary, ...] = (POSTGRES, MYSQL)) -> str | None:
    config = load_config(rules_dir(tmp_path, rules))
    try:
        check_rule_vocabulary(config, {v.protocol: v for v in vocabularies}, set(installed))
    except ConfigError as exc:
        return str(exc)
    return None


REFUSED = [
    # (rule keys, what the one-line error must say)
    ({"sql": ["selct"]},
     ('conf.d/50-rules.toml: [[rules]] "agents may read" sql: unknown kind or category "selct" '
      '(did you mean "select"?); categories: read, write, ddl, dcl, admin, transaction, session, '
      "role, unknown")),
    ({"commands": ["delte"]},
     ('[[rules]] "agents may read" commands: unknown kind or category "delte" (did you mean '
      '"delete"?)')),
    ({"sql": ["reads"]}, '"reads" (did you mean "read"?)'),
    ({"sql": ["select", "drop_tabel"]},
     ('"drop_tabel" (did you mean "drop_table"?); categories: read, write, ddl, dcl, admin, '
      "transaction, session, role, unknown; mysql/postgres kinds like it: drop_table, ")),
    ({"sql": ["set_rol"]}, '(did you mean "set_role"?)'),
    ({"flags": ["serch_path"]},
     ('[[rules]] "agents may read" flags: unknown flag "serch_path" (did you mean '
      '"search_path"?); mysql/postgres flags: classifier_error, ')),
    ({"sql": ["no_where"]},
     'sql: "no_where" is a flag, not a kind or category: write it as flags = ["no_where"]'),
    ({"flags": ["delete"]}, 'flags: "delete" is a kind, not a flag: write it in sql = ["delete"]'),
    ({"commands": ["admin"], "flags": ["write"]},
     'flags: "write" is a category, not a flag: write it in commands = ["write"]'),
    ({"sql": ["function:pg_sleep"]},
     'sql: "function:pg_sleep" is not a kind: rules cannot name single functions (function:...)'),
    ({"sql": ["operator:==="]}, '"operator:===" is not a kind'),
    # Restricted to one protocol: another protocol's words are not enough.
    ({"protocols": ["postgres"], "sql": ["exec"]},
     'sql: "exec" is a kind of protocol mysql, but this rule applies only to postgres'),
    ({"protocols": ["postgres"], "flags": ["local_infile"]},
     'flags: "local_infile" is a flag of protocol mysql, but this rule applies only to postgres'),
    ({"protocols": ["mysql"], "sql": ["drop_table"]},
     'sql: "drop_table" is a kind of protocol postgres, but this rule applies only to mysql'),
]


@pytest.mark.parametrize(("keys", "expected"), REFUSED, ids=[str(k) for k, _ in REFUSED])
def test_unknown_word_is_refused_with_file_rule_key_and_a_way_to_the_right_word(
    tmp_path: Path, keys: dict[str, object], expected: str
) -> None:
    error = check(tmp_path, rule(**keys))
    assert error is not None and expected in error


def test_an_unknown_kind_error_points_at_the_listing(tmp_path: Path) -> None:
    error = check(tmp_path, rule(sql=["selct"]))
    assert error is not None and error.endswith(HINT)
    assert f"{len(POSTGRES.kinds | MYSQL.kinds)} mysql/postgres kinds in all" in error


ACCEPTED = [
    {"sql": ["read", "transaction", "session"]},
    {"sql": ["SELECT", "Drop_Table"]},  # lower-cased when read, as the policy matches
    {"sql": ["set_role", "reset_role", "set_lexer_setting", "update_pg_settings"]},
    {"flags": ["search_path", "no_where"]},
    {"sql": ["delete"], "flags": ["no_where"]},
    {"sql": ["exec"]},  # no protocols: valid when any installed protocol knows it
    {"protocols": ["mysql"], "sql": ["exec", "write"], "flags": ["local_infile"]},
    {"protocols": ["postgres", "mysql"], "sql": ["exec", "drop_table"]},
    {"groups": ["dba"]},  # no sql and no flags: nothing to check
]


@pytest.mark.parametrize("keys", ACCEPTED, ids=[str(k) for k in ACCEPTED])
def test_known_words_are_accepted(tmp_path: Path, keys: dict[str, object]) -> None:
    assert check(tmp_path, rule(**keys)) is None


def test_a_word_only_an_uninstalled_protocol_knows_is_refused(tmp_path: Path) -> None:
    error = check(tmp_path, rule(sql=["exec"]), installed=("postgres",))
    assert error is not None and 'unknown kind or category "exec"' in error


def test_rules_that_may_apply_to_a_protocol_without_vocabulary_are_not_checked(
    tmp_path: Path,
) -> None:
    # The echo connector declares no words: "get" may be one of its kinds.
    assert check(tmp_path, rule(sql=["get"]), installed=("postgres", "echo")) is None
    error = check(tmp_path, rule(protocols=["postgres"], sql=["get"]),
                  installed=("postgres", "echo"))
    assert error is not None and 'unknown kind or category "get"' in error


def test_the_first_bad_rule_in_file_order_is_named(tmp_path: Path) -> None:
    rules = rule(sql=["read"]) + rule(sql=["delte"]).replace("agents may read", "second")
    error = check(tmp_path, rules)
    assert error is not None and '[[rules]] "second" sql: unknown kind or category "delte"' in error


def test_the_shipped_rules_name_only_known_words(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "conf.d", tmp_path / "conf.d")
    config = load_config(tmp_path / "conf.d")
    check_rule_vocabulary(config, {"postgres": POSTGRES}, {"postgres"})


@pytest.mark.parametrize(
    "bad",
    [{"protocol": "", "kinds": frozenset(), "flags": frozenset()},
     {"protocol": "x", "kinds": frozenset({"Select"}), "flags": frozenset()},
     {"protocol": "x", "kinds": frozenset({"a b"}), "flags": frozenset()},
     {"protocol": "x", "kinds": frozenset(), "flags": frozenset({""})},
     {"protocol": "x", "kinds": frozenset({"read"}), "flags": frozenset()}],
)
def test_a_connector_cannot_declare_words_a_rule_could_not_name_unambiguously(
    bad: dict[str, object],
) -> None:
    with pytest.raises(ValueError):
        CommandVocabulary(**bad)  # type: ignore[arg-type]


def test_the_listing_names_every_category_kind_and_flag_per_protocol() -> None:
    text = format_vocabulary({"postgres": POSTGRES, "mysql": MYSQL})
    words = set(text.split())
    assert POSTGRES.kinds <= words and POSTGRES.flags <= words and MYSQL.kinds <= words
    assert {"read", "write", "ddl", "dcl", "admin", "transaction", "session", "role",
            "unknown"} <= words
    assert text.index("mysql kinds") < text.index("postgres kinds")
    assert f"postgres kinds ({len(POSTGRES.kinds)}):" in text
    assert f"postgres flags ({len(POSTGRES.flags)}):" in text
    assert all(len(line) <= 100 for line in text.splitlines())


# --- the command line -------------------------------------------------------------------------


def write_conf(tmp_path: Path, rules: str) -> Path:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "10.toml").write_text(
        '[gateway]\ndata_dir = "var"\n'
        '[listeners.pg]\nprotocol = "postgres"\nbind = "127.0.0.1:0"\n'
        '[targets.pg-app]\nprotocol = "postgres"\naddress = "127.0.0.1:5432"\n'
    )
    (conf / "50-rules.toml").write_text(rules)
    return conf


@pytest.mark.parametrize("command", [["config", "check"], ["serve"]])
def test_config_check_and_serve_refuse_a_misspelt_rule_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    conf = write_conf(tmp_path, rule(sql=["selct"]))
    assert main(["-c", str(conf), *command]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if not line.startswith("wardgate: warning:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(
        f'wardgate: error: {conf}/50-rules.toml: [[rules]] "agents may read" sql: unknown kind '
        'or category "selct" (did you mean "select"?)'
    )
    assert lines[0].endswith(HINT)
    assert "listening" not in out


def test_config_check_accepts_known_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path, rule(sql=["delete", "ddl"], flags=["no_where"]))
    assert main(["-c", str(conf), "config", "check"]) == 0
    assert "ok (1 listener(s), 1 target(s), 1 rule(s))" in capsys.readouterr().out


def test_the_vocabulary_listing_works_while_the_configuration_is_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path, rule(sql=["selct"]) + "[bogus]\n")
    assert main(["-c", str(conf), "config", "check", "--vocabulary"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == format_vocabulary({"postgres": POSTGRES})
    assert "postgres kinds" in out and "select" in out.split() and "no_where" in out.split()


# --- collecting the plugins' vocabularies ----------------------------------------------------


class _Declares:
    def __init__(self, *answer: object) -> None:
        self.answer = list(answer)

    @hookimpl
    def wardgate_command_vocabulary(self) -> list[object]:
        return self.answer


def _host(*plugins: object) -> PluginHost:
    host = PluginHost()
    for number, plugin in enumerate(plugins):
        host.register(plugin, f"plugin-{number}")
    return host


def test_vocabularies_of_one_protocol_from_two_plugins_are_united() -> None:
    extra = CommandVocabulary("postgres", frozenset({"vacuum_full"}), frozenset({"hot"}))
    found = collect_vocabularies(_host(_Declares(POSTGRES), _Declares(extra, MYSQL)))
    assert found["postgres"].kinds == POSTGRES.kinds | {"vacuum_full"}
    assert found["postgres"].flags == POSTGRES.flags | {"hot"}
    assert found["mysql"] == MYSQL


def test_a_plugin_declaring_something_else_is_named() -> None:
    with pytest.raises(PluginError, match=r"plugin 'plugin-0' returned dict .*CommandVocabulary"):
        collect_vocabularies(_host(_Declares({"protocol": "x"})))


def test_a_plugin_failing_to_declare_is_named() -> None:
    class Broken:
        @hookimpl
        def wardgate_command_vocabulary(self) -> list[object]:
            raise RuntimeError("no tables")

    with pytest.raises(PluginError, match=r"'plugin-0' failed to declare .*no tables"):
        collect_vocabularies(_host(Broken()))
