"""Properties of the lineage analyser over generated statements (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.postgres.lineage import Analysis, analyze
from tests.unit.test_pg_lineage import (
    OUTPUTS,
    TABLES,
    VIEWS,
    VIOLATIONS,
    FakeCatalog,
    catalog,
    is_masked,
)

COLUMNS = ["id", "name", "email", "card", "ssn"]
MASKED = {"card", "ssn"}


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> tuple[str, bool]:
    """SQL over customers' columns, and whether it reads a masked one."""
    if depth >= 3 or draw(st.booleans()):
        if draw(st.booleans()):
            column = draw(st.sampled_from(COLUMNS))
            qualifier = draw(st.sampled_from(["", "c.", "(c)."]))
            return qualifier + column, column in MASKED
        return draw(st.sampled_from(["'x'", "1", "NULL", "$1", "now()"])), False
    parts = [draw(expressions(depth + 1)) for _ in range(draw(st.integers(1, 3)))]
    sqls = [p[0] for p in parts]
    reads = any(p[1] for p in parts)
    shape = draw(st.sampled_from(["func", "op", "case", "cast", "sublink", "coalesce", "agg"]))
    if shape == "func":
        return f"{draw(st.sampled_from(['upper', 'md5', 'concat', 'reverse']))}({sqls[0]}::text)", parts[0][1]
    if shape == "op":
        return "(" + " || ".join(f"{s}::text" for s in sqls) + ")", reads
    if shape == "case":
        return f"CASE WHEN {sqls[0]} IS NULL THEN {sqls[-1]}::text END", parts[0][1] or parts[-1][1]
    if shape == "cast":
        return f"({sqls[0]})::varchar", parts[0][1]
    if shape == "sublink":
        return f"(SELECT {sqls[0]})", parts[0][1]
    if shape == "coalesce":
        return "coalesce(" + ", ".join(f"{s}::text" for s in sqls) + ")", reads
    return f"(SELECT max({sqls[0]}::text) FROM customers c2 WHERE c2.id = c.id)", parts[0][1]


def masked_positions(sql: str, cat: FakeCatalog | None = None) -> tuple[int, ...]:
    result = analyze(sql, cat or catalog(), is_masked)
    assert isinstance(result, Analysis)
    (lineage,) = result.statements
    # Computed below the outputs is refused where it is formed (as a computed output is).
    computed = "not computed with"
    assert all(v.endswith(computed) for v in lineage.violations), (sql, lineage)
    assert lineage.unknown == (), (sql, lineage)
    return lineage.masked_positions()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(expressions(), min_size=1, max_size=4))
def test_an_output_is_masked_exactly_when_it_reads_a_masked_column(exprs: list[tuple[str, bool]]) -> None:
    select = "SELECT " + ", ".join(f"{e} AS o{i}" for i, (e, _) in enumerate(exprs))
    query = select + " FROM customers c"
    expected = tuple(i for i, (_, reads) in enumerate(exprs) if reads)
    assert masked_positions(query) == expected
    names = ", ".join(f"o{i}" for i in range(len(exprs)))
    renames = ", ".join(f"r{i}" for i in range(len(exprs)))
    wrappers = [
        f"SELECT * FROM ({query}) s",
        f"SELECT {renames} FROM ({query}) AS s({renames})",
        f"WITH w AS ({query}) SELECT * FROM w",
        f"WITH w({renames}) AS ({query}) SELECT w.* FROM w",
        f"SELECT * FROM ({query}) s UNION ALL SELECT {', '.join('NULL' for _ in exprs)}",
        f"SELECT s.* FROM customers x JOIN LATERAL ({query}) s ON true",
        f"SELECT (SELECT s FROM ({query}) s LIMIT 1) IS NULL, {names} FROM ({query}) t",
    ]
    for wrapped in wrappers[:-1]:
        assert masked_positions(wrapped) == expected, wrapped
    assert masked_positions(wrappers[-1]) == ((0,) if expected else ()) + tuple(
        i + 1 for i in expected)
    cols = ", ".join(f"o{i}" for i in range(len(exprs)))
    view = FakeCatalog(TABLES, {**VIEWS, "public.gen": (cols, query)})
    assert masked_positions("SELECT * FROM gen", view) == expected


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), st.sampled_from(["WHERE {} IS NULL", "ORDER BY {}", "GROUP BY {}",
                                       "LIMIT length(({})::text)"]))  # fmt: skip
def test_a_clause_is_a_violation_exactly_when_it_reads_a_masked_column(
    expr: tuple[str, bool], clause: str
) -> None:
    sql, reads = expr
    if "GROUP BY" in clause and "(SELECT" in sql:
        return  # a correlated sublink in GROUP BY is a server error, not a case
    statement = f"SELECT 1 FROM customers c {clause.format(sql)}"
    result = analyze(statement, catalog(), is_masked)
    assert isinstance(result, Analysis)
    assert bool(result.statements[0].violations) == reads, (statement, result)


TOKENS = ["SELECT", "FROM", "WHERE", "customers", "c", "card", "ssn", "id", "(", ")", ",", "*",
          "JOIN", "ON", "USING", "UNION", "ALL", "WITH", "AS", "x", "v", "LATERAL", "ORDER",
          "BY", "1", "'a'", "=", "||", "::", "text", ".", "VALUES", "INSERT", "INTO", "t",
          "UPDATE", "SET", "RETURNING", "GROUP", "row_to_json", "RECURSIVE", ";"]  # fmt: skip
CORPUS = [c.sql for c in OUTPUTS.values()] + [sql for sql, _ in VIOLATIONS.values()]


@settings(max_examples=400)
@given(st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join),
    st.tuples(st.sampled_from(CORPUS), st.integers(0, 200), st.integers(0, 20)).map(
        lambda t: t[0][: t[1]] + t[0][t[1] + t[2]:]),
    st.text(max_size=80),
))  # fmt: skip
def test_any_text_gives_an_answer_never_an_exception(sql: str) -> None:
    """Only answers come out: hostile or truncated statements are unknown, not crashes."""
    result = analyze(sql, catalog(), is_masked)
    assert isinstance(result, Analysis)
    for lineage in result.statements:
        for output in lineage.outputs or ():
            assert isinstance(output.masked, tuple)
