"""connectors.postgres.vocabulary: every kind and flag the classifier produces is a declared rule
word (else a correct rule would be refused at start-up), and the declared words are real ones."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pglast.enums
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.postgres import classify as classify_module
from connectors.postgres import functions
from connectors.postgres.classify import classify, classify_with_prepared
from connectors.postgres.vocabulary import postgres_vocabulary
from gateway.model import Category, Command
from gateway.plugins import PluginHost
from gateway.vocabulary import CATEGORIES, CommandVocabulary, collect_vocabularies
from tests.unit.test_pg_classify import _SQL_PIECES, CASES

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = postgres_vocabulary()


def _outside(command: Command) -> set[str]:
    """The kinds and flags of ``command`` the vocabulary lacks (flags as ``flag:NAME``)."""
    return (set(command.kinds) - VOCABULARY.kinds) | {
        f"flag:{f}" for f in command.flags - VOCABULARY.flags
    }


def _string_constants(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def _test_file_corpus() -> list[str]:
    """Every string in the PostgreSQL and policy tests: thousands of statements, hostile ones
    included, and the non-SQL strings exercise the parse_error path."""
    paths = [
        *sorted((ROOT / "tests" / "unit").glob("test_pg_*.py")),
        *sorted((ROOT / "tests" / "unit").glob("test_policy*.py")),
        *sorted((ROOT / "tests" / "integration").glob("test_p*.py")),
    ]
    return [text for path in paths for text in _string_constants(path)]


def _sql_words(object_name: str) -> str:
    return object_name.replace("_", " ").upper()


def _generated_corpus() -> list[str]:
    """Statements over every object type, setting and side-effect function the tables know."""
    objects = sorted({classify_module._object_name(m.name) for m in pglast.enums.ObjectType})
    out: list[str] = []
    for name in objects:
        sql = _sql_words(name)
        out += [f"DROP {sql} x", f"DROP {sql} IF EXISTS x CASCADE", f"CREATE {sql} x",
                f"ALTER {sql} x RENAME TO y", f"ALTER {sql} x OWNER TO r",
                f"ALTER {sql} x SET SCHEMA s", f"COMMENT ON {sql} x IS 'c'",
                f"GRANT ALL ON {sql} x TO r", f"REVOKE ALL ON {sql} x FROM r"]
    settings_ = sorted({*functions._ROLE_SETTINGS, "search_path", *functions._LEXER_SAFE_VALUES,
                        *functions._ADMIN_SETTINGS, "log_statement", "debug_print_parse",
                        "track_io_timing", "statement_timeout", "application_name"})
    for name in settings_:
        out += [f"SET {name} = 'x'", f"SET LOCAL {name} = 'x'", f"SET {name} TO DEFAULT",
                f"RESET {name}", f"SELECT set_config('{name}', 'x', false)",
                f"ALTER ROLE r SET {name} = 'x'", (f"UPDATE pg_settings SET setting = 'x' "
                f"WHERE name = '{name}'")]
    out += ["SET ROLE NONE", "SET SESSION AUTHORIZATION DEFAULT", "RESET ALL",
            "SET TRANSACTION READ WRITE", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SELECT set_config(lower('ROLE'), 'x', false)"]
    for name in [*functions.SIDE_EFFECTS, *(p + "x" for p, _ in functions.SIDE_EFFECT_PREFIXES)]:
        out += [f"SELECT {name}(1)", f"CALL {name}()", f"WITH w AS (SELECT {name}()) SELECT 1"]
    out += ["BEGIN", "BEGIN READ WRITE", "START TRANSACTION READ ONLY", "COMMIT", "END",
            "ROLLBACK", "ABORT", "SAVEPOINT a", "RELEASE a", "ROLLBACK TO a",
            "PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'", "ROLLBACK PREPARED 'x'",
            "SELECT my_func()", "SELECT 1 === 2", "CLOSE ALL", "DISCARD ALL", "SHOW ALL",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "SELECT 1; SELECT 2", "SELEC 1",
            "SELECT 1\x00", "EXECUTE p(1)", "DEALLOCATE ALL"]
    return out


# --- completeness: nothing the classifier says escapes the vocabulary ------------------------


def test_no_kind_or_flag_of_the_classification_table_escapes_the_vocabulary() -> None:
    escaped = {case.sql: _outside(c) for case in CASES for c in classify(case.sql) if _outside(c)}
    assert escaped == {}


def test_no_kind_or_flag_of_thousands_of_test_statements_escapes_the_vocabulary() -> None:
    corpus = _test_file_corpus()
    assert len(corpus) > 2000  # the corpus is what makes this test mean something
    escaped = {sql[:80]: _outside(c) for sql in corpus for c in classify(sql) if _outside(c)}
    assert escaped == {}


def test_no_kind_or_flag_of_every_object_type_setting_and_function_escapes() -> None:
    escaped = {sql: _outside(c) for sql in _generated_corpus() for c in classify(sql)
               if _outside(c)}
    assert escaped == {}


def test_execute_resolved_through_prepared_statements_stays_inside() -> None:
    sql = ("PREPARE p AS DELETE FROM t; EXECUTE p; DECLARE c CURSOR FOR SELECT nextval('s'); "
           "PREPARE q AS UPDATE pg_settings SET setting = 1; EXECUTE q")
    assert [_outside(c) for c in classify_with_prepared(sql, {})] == [set()] * 5


@settings(max_examples=300, deadline=None)
@given(st.lists(_SQL_PIECES, max_size=30).map(" ".join))
def test_no_kind_or_flag_of_sql_like_text_escapes(sql: str) -> None:
    assert [_outside(c) for c in classify(sql)] == [set()] * len(classify(sql))


def _literal_words(call_names: dict[str, int]) -> set[str]:
    """String literals passed to the named calls in classify.py (from the argument numbered by
    ``call_names`` on), branches of ``a if x else b`` included: what the handlers spell out
    rather than derive."""
    words: set[str] = set()
    source = ROOT / "connectors" / "postgres" / "classify.py"
    for node in ast.walk(ast.parse(source.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        value = func.value if isinstance(func, ast.Attribute) else None
        owner = getattr(value, "attr", None) or getattr(value, "id", "")
        first = call_names.get(f"{owner}.{name}", call_names.get(name))
        if first is None:
            continue
        for arg in node.args[first:]:
            stack: list[ast.AST] = [arg]
            while stack:
                item = stack.pop()
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    words.add(item.value)
                elif isinstance(item, (ast.List, ast.Tuple)):
                    stack.extend(item.elts)
                elif isinstance(item, ast.IfExp):
                    stack.extend((item.body, item.orelse))
    return words


def test_every_flag_classify_py_spells_out_is_declared() -> None:
    flags = _literal_words({"flags.add": 0, "_failed": 1})
    assert flags and flags <= VOCABULARY.flags, sorted(flags - VOCABULARY.flags)


def test_every_kind_classify_py_spells_out_is_declared() -> None:
    kinds = _literal_words({"facts.add": 0, "kinds.add": 0, "_alter": 1})
    assert {"select", "update_pg_settings", "rename"} <= kinds
    assert kinds <= VOCABULARY.kinds, sorted(kinds - VOCABULARY.kinds)


# --- the words are real ones -----------------------------------------------------------------

KINDS = ["select", "insert", "update", "delete", "merge", "truncate", "drop", "drop_table",
         "create_index", "alter_role", "alter_owner", "set_role", "reset_role",
         "set_session_authorization", "set_lexer_setting", "set_sensitive_setting",
         "reset_sensitive_setting", "update_pg_settings", "begin", "start_transaction",
         "rollback_to_savepoint", "commit_prepared", "copy_to", "copy_program",
         "select_for_update", "select_into", "explain", "execute", "unparseable", "do", "call",
         "listen", "notify", "vacuum", "analyze", "create_materialized_view", "set_constraints",
         "create_text_search_configuration", "grant_role"]
NOT_KINDS = ["function:nextval", "operator:===", "prepared:p", "cursor:c", "set_search_path",
             "reset_lexer_setting", "read", "role", "selct", "SELECT"]
FLAGS = ["no_where", "search_path", "role_change", "lexer_setting", "sensitive_setting",
         "side_effect_function", "unknown_function", "user_operator", "dynamic_sql", "locking",
         "server_file", "large_object", "replication", "copy_to_stdout", "multi_statement",
         "parse_error", "too_deep", "classifier_error", "writable_cte", "stored_dml"]


@pytest.mark.parametrize("kind", KINDS)
def test_kind_is_declared(kind: str) -> None:
    assert kind in VOCABULARY.kinds


@pytest.mark.parametrize("word", NOT_KINDS)
def test_aspect_names_categories_and_typos_are_not_kinds(word: str) -> None:
    assert word not in VOCABULARY.kinds


@pytest.mark.parametrize("flag", FLAGS)
def test_flag_is_declared(flag: str) -> None:
    assert flag in VOCABULARY.flags


def test_no_kind_is_spelled_like_a_category() -> None:
    assert VOCABULARY.kinds.isdisjoint(CATEGORIES) and set(CATEGORIES) == {str(c) for c in Category}


def test_the_installed_plugin_declares_the_vocabulary_through_the_hook() -> None:
    host = PluginHost()
    host.load_entry_points()
    found = collect_vocabularies(host)
    assert found["postgres"] == VOCABULARY
    assert isinstance(found["postgres"], CommandVocabulary)
