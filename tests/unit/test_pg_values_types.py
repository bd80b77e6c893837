"""The type registry and the catalog query (connectors/postgres/pgtypes.py)."""

from __future__ import annotations

import re

import pytest

from connectors.postgres.pgtypes import (
    BUILTIN,
    TYPE_ROW_COLUMNS,
    Kind,
    TypeCatalogError,
    TypeDesc,
    TypeRegistry,
    parse_type_rows,
    types_query,
    user_types_query,
)

BUILTIN_CASES = [
    (25, Kind.TEXT), (1043, Kind.TEXT), (20, Kind.NUMBER), (1700, Kind.NUMBER), (790, Kind.NUMBER),
    (16, Kind.BOOL), (1082, Kind.HARMLESS), (2950, Kind.HARMLESS), (114, Kind.JSON),
    (3802, Kind.JSONB), (17, Kind.BYTEA), (1009, Kind.ARRAY), (2249, Kind.COMPOSITE),
    (3926, Kind.RANGE), (4536, Kind.MULTIRANGE), (3614, Kind.OPAQUE), (600, Kind.GEOMETRY),
]


@pytest.mark.parametrize(("oid", "kind"), BUILTIN_CASES)
def test_builtin_types_are_described(oid: int, kind: Kind) -> None:
    desc = TypeRegistry().describe(oid)
    assert desc is not None and desc.kind is kind


def test_builtin_containers_name_what_they_contain() -> None:
    assert BUILTIN[1016] == TypeDesc(Kind.ARRAY, elem=20)
    assert BUILTIN[1020].delim == ";"  # box[]: boxes contain commas
    assert BUILTIN[3904].elem == 23 and BUILTIN[4451].elem == 3904
    assert BUILTIN[20].base == 20


def test_user_types_are_unknown_until_added_and_never_replace_builtins() -> None:
    reg = TypeRegistry()
    assert reg.describe(16400) is None
    reg.add(16400, TypeDesc(Kind.ENUM))
    reg.add(25, TypeDesc(Kind.OPAQUE))
    assert reg.describe(16400) == TypeDesc(Kind.ENUM)
    assert reg.describe(25) == TypeDesc(Kind.TEXT)


def test_missing_walks_into_containers() -> None:
    reg = TypeRegistry({
        16400: TypeDesc(Kind.ARRAY, elem=16401),
        16401: TypeDesc(Kind.COMPOSITE, fields=(23, 16402, 1009)),
    })
    assert reg.missing([25, 16400, 16403, 16403]) == (16403, 16402)


def test_types_query_is_fully_qualified_and_takes_only_integers() -> None:
    sql = types_query([16400, 16401, 16400])
    assert "'{16400,16401}'::pg_catalog.oid[]" in sql
    # No bare comparison operator and no unqualified catalog name: search_path cannot shadow.
    without_qualified = re.sub(r"OPERATOR\(pg_catalog\.[^)]+\)", "", sql)
    assert not re.search(r"[=<>]|\|\||->>", without_qualified)
    assert not re.search(r"(?<!pg_catalog\.)\bpg_(type|range|attribute|class)\b", sql)
    for name in ("unnest", "to_jsonb", "array_to_string"):
        assert f"pg_catalog.{name}(" in sql
    assert "OPERATOR(pg_catalog.=)" in user_types_query()
    with pytest.raises(ValueError):
        types_query([])
    with pytest.raises(ValueError):
        types_query(range(1, 2000))


def row(oid: int, typtype: str, category: str, elem: int = 0, base: int = 0, delim: str = ",",
        fields: str | None = None, subtype: int | None = None, range_of: int | None = None) -> tuple[object, ...]:
    return (str(oid), typtype, category, str(elem), str(base), delim, fields,
            None if subtype is None else str(subtype), None if range_of is None else str(range_of))


def test_parse_type_rows() -> None:
    rows = [
        row(16400, "e", "E"),
        row(16401, "b", "A", elem=16400),
        row(16402, "c", "C", fields="23 16400 16403"),
        row(16403, "d", "N", base=16404),  # a domain over a domain over int8
        row(16404, "d", "N", base=20),
        row(16405, "b", "S"),  # citext
        row(16406, "b", "U"),  # hstore
        row(16407, "r", "R", subtype=16405),
        row(16408, "m", "R", range_of=16407),
        row(16409, "d", "N", base=99999),  # a base nobody described
        row(16410, "b", "A", elem=603, delim=";"),
        (b"16411", b"c", b"C", b"0", b"0", b",", b"", None, None),  # bytes, no fields
    ]
    assert len(rows[0]) == len(TYPE_ROW_COLUMNS)
    out = parse_type_rows(rows)
    assert out[16400] == TypeDesc(Kind.ENUM)
    assert out[16401] == TypeDesc(Kind.ARRAY, elem=16400)
    assert out[16402] == TypeDesc(Kind.COMPOSITE, fields=(23, 16400, 16403))
    assert out[16403] == BUILTIN[20] and out[16404] == BUILTIN[20]
    assert out[16405].kind is Kind.TEXT and out[16406].kind is Kind.OPAQUE
    assert out[16407] == TypeDesc(Kind.RANGE, elem=16405)
    assert out[16408] == TypeDesc(Kind.MULTIRANGE, elem=16407)
    assert out[16409].kind is Kind.OPAQUE
    assert out[16411] == TypeDesc(Kind.COMPOSITE, fields=())


@pytest.mark.parametrize("bad", [
    ("1", "b"),  # too few columns
    row(16400, "e", "E")[:-1] + ("x",),  # not an OID
    ("-5",) + row(1, "b", "S")[1:],
    ("99999999999",) + row(1, "b", "S")[1:],
])
def test_malformed_catalog_rows_are_protocol_errors(bad: tuple[object, ...]) -> None:
    with pytest.raises(TypeCatalogError):
        parse_type_rows([bad])


def test_a_domain_cycle_ends_opaque() -> None:
    out = parse_type_rows([row(16400, "d", "N", base=16401), row(16401, "d", "N", base=16400)])
    assert out[16400].kind is Kind.OPAQUE


def test_the_registry_is_bounded() -> None:
    reg = TypeRegistry()
    for oid in range(20000, 20000 + 70000):
        reg.add(oid, TypeDesc(Kind.ENUM))
    assert sum(reg.describe(o) is not None for o in range(20000, 90000)) <= 65536
