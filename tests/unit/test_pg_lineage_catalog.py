"""connectors.postgres.catalog: the catalog query, reading its answer, and the session cache."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pglast.parser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.postgres.catalog import (
    MAX_BATCH,
    NOT_FOUND,
    NOT_LOADED,
    CatalogAnswer,
    CatalogCache,
    CatalogError,
    Column,
    Relation,
    RelationName,
    parse_relation_rows,
    relations_query,
)
from connectors.postgres.lineage import Analysis, NeedRelations, analyze

FIXED_LITERALS = {"hex", "UTF8", "k", "r", "c", "v", "s", "x", "e", "1", "m", "pg_temp", "d", "A", ",",
                  "pg_catalog", "pg_catalog.pg_rewrite", "pg_catalog.pg_class", "function",
                  "operator", "type", "pg_catalog.pg_proc", "pg_catalog.pg_operator",
                  "pg_catalog.pg_type"}  # fmt: skip


def _nodes(tree: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key[:1].isupper() and isinstance(value, dict):
                    yield key, value
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _names(items: Any) -> list[str]:
    return [i["String"]["sval"] for i in items or [] if "String" in i]


NAMES = [RelationName(None, "customers"), RelationName("public", "v"),
         RelationName("S", 'we"ird.name'), RelationName(None, "it's; DROP")]  # fmt: skip


def test_catalog_query_names_nothing_through_the_search_path() -> None:
    """HOSTILE C.14: every function, operator and type is pg_catalog-qualified, and no
    construct looks an operator up by name (IN, USING, simple CASE)."""
    tree = json.loads(pglast.parser.parse_sql_json(relations_query(NAMES)))
    seen = set()
    for ntype, node in _nodes(tree):
        seen.add(ntype)
        if ntype == "FuncCall":
            assert _names(node["funcname"])[0] == "pg_catalog", node["funcname"]
        elif ntype == "A_Expr":
            assert node["kind"] == "AEXPR_OP" and _names(node["name"])[0] == "pg_catalog", node
        elif ntype == "TypeCast":
            assert _names(node["typeName"]["names"])[0] == "pg_catalog", node
        elif ntype == "JoinExpr":
            assert "usingClause" not in node and not node.get("isNatural")
        elif ntype == "CaseExpr":
            assert "arg" not in node  # CASE x WHEN y compares with an unqualified =
        elif ntype == "SubLink":
            assert node["subLinkType"] in ("EXPR_SUBLINK", "EXISTS_SUBLINK")  # IN/ANY use =
    assert {"FuncCall", "A_Expr", "TypeCast"} <= seen


def test_catalog_query_literals_are_hex_or_fixed() -> None:
    """Names travel as hex digits: no quoting rule or string-literal setting can alter them."""
    literals = re.findall(r"'([^']*)'", relations_query(NAMES))
    assert literals
    for literal in literals:
        assert literal in FIXED_LITERALS or re.fullmatch(r"[0-9a-f]*", literal), literal


@given(st.lists(st.builds(RelationName, st.none() | st.text(min_size=1).filter(lambda s: "\x00" not in s),
                          st.text(min_size=1).filter(lambda s: "\x00" not in s)), max_size=5))  # fmt: skip
def test_any_names_make_one_parseable_statement(names: list[RelationName]) -> None:
    try:
        text = relations_query(names)
    except ValueError:  # lone surrogates cannot be encoded
        return
    tree = json.loads(pglast.parser.parse_sql_json(text))
    assert len(tree["stmts"]) == 1
    hexes = {bytes.fromhex(h).decode() for h in re.findall(r"decode\('([0-9a-f]*)'", text)}
    assert {n.name for n in names} <= hexes


def test_catalog_query_refuses_nul_and_oversized_batches() -> None:
    with pytest.raises(ValueError):
        relations_query([RelationName(None, "a\x00b")])
    with pytest.raises(ValueError):
        relations_query([RelationName(None, f"t{i}") for i in range(MAX_BATCH + 1)])


def test_empty_batch_still_reports_the_search_path() -> None:
    tree = json.loads(pglast.parser.parse_sql_json(relations_query([])))
    assert len(tree["stmts"]) == 1


# -- reading the answer -----------------------------------------------------------------------


def rows() -> list[tuple[str | None, ...]]:
    return [
        ("k", None, "customers", "10", None, None),
        ("k", None, "missing", None, None, None),
        ("r", "10", "public", "customers", "r", None),
        ("c", "10", "3", "card", "25", None),  # out of order: sorted by attnum
        ("c", "10", "1", "id", "23", None),
        ("r", "11", "public", "v", "v", " SELECT card AS x FROM customers;"),
        ("c", "11", "1", "x", "25", None),
        ("v", "11", "customers", "public", None, None),
        ("s", "pg_catalog", None, None, None, None),
    ]


def test_answer_is_read_into_relations() -> None:
    answer = parse_relation_rows(rows())
    assert dict(answer.names) == {RelationName(None, "customers"): 10,
                                  RelationName(None, "missing"): None}  # fmt: skip
    by_oid = {r.oid: r for r in answer.relations}
    assert by_oid[10].columns == (Column("id", 1, 23), Column("card", 3, 25))
    assert by_oid[11].view_names == (("customers", "public"),) and by_oid[11].kind == "v"
    assert answer.search_path_safe


def test_a_column_type_s_field_names_are_read() -> None:
    """``snapshot customers`` holds customers' fields: their names travel as hex."""
    snapshot = ("c", "10", "4", "snapshot", "16400",
                "ssn".encode().hex() + "," + "nümber".encode().hex())
    by_oid = {r.oid: r for r in parse_relation_rows([*rows(), snapshot]).relations}
    assert by_oid[10].columns[-1] == Column("snapshot", 4, 16400, ("ssn", "nümber"))


@pytest.mark.parametrize(("change", "why"), [
    (lambda r: r + [("c", "10", "4", "s", "25", "zz")], "not hex"),
    (lambda r: r + [("c", "10", "4", "s", "25", "ff")], "not hex"),  # not UTF-8 either
    (lambda r: r + [("x", None, None, None, None, None)], "unknown kind"),
    (lambda r: r + [("c", "10", "1")], "wrong width"),
    (lambda r: r + [("c", "10", "1", "dup", "25", None)], "duplicate column"),
    (lambda r: r + [("c", "10", "0", "ctid", "27", None)], "system or invalid"),
    (lambda r: r + [("c", "10", "-3", "x", "25", None)], "system or invalid"),
    (lambda r: r + [("c", "ten", "2", "x", "25", None)], "not a number"),
    (lambda r: r + [("c", "10", "2", "x", "1" * 40, None)], "not a number"),
    (lambda r: r + [("c", "10", "٣", "x", "25", None)], "not a number"),  # a non-ASCII digit
    (lambda r: r + [("k", None, "t", "99", None, None)], "does not describe"),
    (lambda r: r + [("r", "12", None, "t", "r", None)], "missing"),
    (lambda r: [x for x in r if x[0] != "s"], "search path"),
    (lambda r: r + [("r", "12", "public", "big", "v", "x" * (1 << 21))], "too long"),
])
def test_hostile_answers_are_refused(change: Any, why: str) -> None:
    """HOSTILE C.16: the target may be hostile; a malformed answer teaches the cache nothing."""
    with pytest.raises(CatalogError, match=why):
        parse_relation_rows(change(rows()))


def test_answer_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.postgres import catalog

    monkeypatch.setattr(catalog, "MAX_ROWS", 5)
    with pytest.raises(CatalogError, match="too many rows"):
        parse_relation_rows(iter(rows()))


# -- the cache ----------------------------------------------------------------------------------


def relation(oid: int, name: str) -> Relation:
    return Relation(oid, "public", name, "r", (Column("card", 1, 25),))


def answer(*pairs: tuple[str, int | None], safe: bool = True) -> CatalogAnswer:
    relations = tuple(relation(oid, name) for name, oid in pairs if oid is not None)
    return CatalogAnswer(tuple((RelationName(None, n), oid) for n, oid in pairs), relations, safe)


def test_cache_answers_until_the_ttl() -> None:
    cache = CatalogCache(ttl=10, negative_ttl=1)
    assert cache.relation(None, "t") is NOT_LOADED and cache.search_path_safe() is None
    cache.store(answer(("t", 1), ("gone", None)), now=100)
    assert cache.relation(None, "t") == relation(1, "t")
    assert cache.relation("public", "t") == relation(1, "t")  # a view's qualified lookup
    assert cache.relation(None, "gone") is NOT_FOUND
    assert cache.relation_by_oid(1) == relation(1, "t") and cache.search_path_safe() is True
    cache.advance(101.5)
    assert cache.relation(None, "gone") is NOT_LOADED  # "not found" is rechecked soon
    assert cache.relation(None, "t") == relation(1, "t")
    cache.advance(110)
    assert cache.relation(None, "t") is NOT_LOADED and cache.relation_by_oid(1) is NOT_LOADED
    assert cache.search_path_safe() is None
    cache.advance(50)  # time never goes back
    assert cache.relation(None, "t") is NOT_LOADED


def test_cache_is_bounded_oldest_first() -> None:
    cache = CatalogCache(max_relations=2)
    for oid, name in enumerate("abc", 1):
        cache.store(answer((name, oid)), now=0)
    assert cache.relation(None, "a") is NOT_LOADED  # its relation was dropped
    assert cache.relation(None, "c") == relation(3, "c") and len(cache) == 2


def test_invalidate_forgets_everything() -> None:
    cache = CatalogCache()
    cache.store(answer(("t", 1)), now=0)
    cache.invalidate()
    assert cache.relation(None, "t") is NOT_LOADED and cache.search_path_safe() is None


def test_memoised_analyses_go_when_answers_change() -> None:
    """A memoised analysis read the old answers: a store, invalidation or expiry drops it."""

    def is_masked(name: str) -> bool:
        return name == "card"

    cache = CatalogCache(ttl=10)
    cache.store(answer(("t", 1)), now=0)
    first = analyze("SELECT card FROM t", cache, is_masked)
    assert isinstance(first, Analysis) and first.statements[0].masked_positions() == (0,)
    assert analyze("SELECT card FROM t", cache, is_masked) is first
    assert analyze("SELECT card FROM t", cache, lambda n: False) is not first  # another masker
    cache.advance(20)
    assert not cache.memo
    assert isinstance(analyze("SELECT card FROM t", cache, is_masked), NeedRelations)
    cache.store(answer(("t", 1)), now=20)
    assert not cache.memo
    cache.store(answer(("t", 1)), now=20)
    analyze("SELECT card FROM t", cache, is_masked)
    cache.invalidate()
    assert not cache.memo


def test_masker_methods_share_memo_entries() -> None:
    """The relay passes ``masker.column_is_masked``: a new bound method each time, equal to
    the last, so repeated statements hit the memo."""

    class Masker:
        def column_is_masked(self, name: str) -> bool:
            return name == "card"

    masker = Masker()
    cache = CatalogCache()
    cache.store(answer(("t", 1)), now=0)
    first = analyze("SELECT card FROM t", cache, masker.column_is_masked)
    assert analyze("SELECT card FROM t", cache, masker.column_is_masked) is first
