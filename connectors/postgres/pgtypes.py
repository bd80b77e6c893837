"""What a PostgreSQL type OID means for masking: a registry of type descriptions.

Masking by type needs to know, for every result column, how its values are written (text and
binary) and whether they can hold something sensitive. Builtin types have fixed OIDs (below
10000, the same in PostgreSQL 13 to 18), described here once. User types (enums, composites,
domains, ranges, extension types such as citext) have OIDs of their own in each database: the
registry answers ``None`` for them, and the caller asks the target's catalog with
:func:`types_query` and feeds the rows to :func:`parse_type_rows`.

A registry belongs to one target database (user OIDs mean nothing elsewhere).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from gateway.errors import ProtocolError

__all__ = [
    "BUILTIN",
    "Kind",
    "TypeDesc",
    "TypeRegistry",
    "parse_type_rows",
    "types_query",
    "user_types_query",
]


class Kind(enum.Enum):
    """How a type's values are masked (see values.py)."""

    TEXT = "text"  # strings: masked inline
    NUMBER = "number"  # a finding on the text form NULLs the value
    HARMLESS = "harmless"  # fixed layouts that cannot spell a card, an e-mail or a secret
    BOOL = "bool"
    JSON = "json"
    JSONB = "jsonb"
    BYTEA = "bytea"
    GEOMETRY = "geometry"  # points, boxes...: float8 coordinates, scanned like numbers
    ARRAY = "array"
    COMPOSITE = "composite"
    RANGE = "range"
    MULTIRANGE = "multirange"
    ENUM = "enum"
    OPAQUE = "opaque"  # formats we cannot read: scanned as text, NULLed in binary


@dataclass(frozen=True, slots=True)
class TypeDesc:
    """One type as masking sees it. Domains are described as their base type."""

    kind: Kind
    #: ARRAY: the element type; RANGE: the subtype; MULTIRANGE: the range type (0 = unknown).
    elem: int = 0
    #: COMPOSITE: field type OIDs in attnum order, dropped columns left out; None = unknown.
    fields: tuple[int, ...] | None = None
    #: ARRAY: the element type's delimiter in the text form (';' for box, ',' otherwise).
    delim: str = ","
    #: NUMBER, GEOMETRY, HARMLESS, BOOL: the builtin type whose binary layout the values have.
    base: int = 0

    def __post_init__(self) -> None:
        if len(self.delim) != 1:
            raise ValueError(f"an array delimiter is one character, not {self.delim!r}")
        if self.elem < 0 or self.base < 0:
            raise ValueError("type OIDs are unsigned")
        if self.fields is not None and any(f < 0 for f in self.fields):
            raise ValueError("type OIDs are unsigned")


def _scalars() -> dict[int, TypeDesc]:
    text = TypeDesc(Kind.TEXT)
    opaque = TypeDesc(Kind.OPAQUE)
    table: dict[int, TypeDesc] = {}
    # name, text, bpchar, varchar, refcursor, xml, cstring, unknown, pg_node_tree: their binary
    # form is the text itself. pg_node_tree can hold a default expression's constants.
    for oid in (19, 25, 1042, 1043, 1790, 142, 2275, 705, 194):
        table[oid] = text
    # int8 int2 int4 oid float4 float8 numeric money
    for oid in (20, 21, 23, 26, 700, 701, 1700, 790):
        table[oid] = TypeDesc(Kind.NUMBER, base=oid)
    for oid in (600, 601, 602, 603, 604, 628, 718):  # point lseg path box polygon line circle
        table[oid] = TypeDesc(Kind.GEOMETRY, base=oid)
    table[16] = TypeDesc(Kind.BOOL, base=16)
    table[17] = TypeDesc(Kind.BYTEA)
    table[114] = TypeDesc(Kind.JSON)
    table[3802] = TypeDesc(Kind.JSONB)
    # One byte ("char"), catalog references (reg*: object names, not data), row locations and
    # transaction ids, int2vector/oidvector (catalog columns), dates and times, addresses, uuid,
    # bit strings, snapshots, ACL items, void.
    for oid in (
        18, 24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 4191,
        27, 28, 29, 5069, 22, 30,
        1082, 1083, 1114, 1184, 1186, 1266,
        869, 650, 829, 774, 2950, 3220,
        1560, 1562, 2970, 5038, 1033, 2278,
    ):  # fmt: skip
        table[oid] = TypeDesc(Kind.HARMLESS, base=oid)  # base: for the binary size check
    # Full-text search values, jsonpath, extended statistics, BRIN summaries: readable only by
    # the server; their text is scanned and a finding NULLs them.
    for oid in (3614, 3615, 3642, 4072, 3361, 3402, 5017, 4600, 4601, 32):
        table[oid] = opaque
    table[2249] = TypeDesc(Kind.COMPOSITE)  # record: fields known only from the binary form
    table[2277] = TypeDesc(Kind.ARRAY)  # anyarray (pg_stats): element type from the value
    table[5078] = TypeDesc(Kind.ARRAY)  # anycompatiblearray
    # Ranges (subtype) and multiranges (PostgreSQL 14+, their range).
    for rng, sub in ((3904, 23), (3906, 1700), (3908, 1114), (3910, 1184), (3912, 1082),
                     (3926, 20)):
        table[rng] = TypeDesc(Kind.RANGE, elem=sub)
    for multi, rng in ((4451, 3904), (4532, 3906), (4533, 3908), (4534, 3910), (4535, 3912),
                       (4536, 3926)):
        table[multi] = TypeDesc(Kind.MULTIRANGE, elem=rng)
    return table


# array type -> element type, for every builtin element type that has an array type.
_ARRAYS = (
    (1000, 16), (1001, 17), (1002, 18), (1003, 19), (1005, 21), (1006, 22), (1007, 23),
    (1008, 24), (1009, 25), (1010, 27), (1011, 28), (1012, 29), (1013, 30), (1014, 1042),
    (1015, 1043), (1016, 20), (1017, 600), (1018, 601), (1019, 602), (1020, 603), (1021, 700),
    (1022, 701), (1027, 604), (1028, 26), (1034, 1033), (1040, 829), (1041, 869), (143, 142),
    (199, 114), (271, 5069), (629, 628), (651, 650), (719, 718), (775, 774), (791, 790),
    (1115, 1114), (1182, 1082), (1183, 1083), (1185, 1184), (1187, 1186), (1231, 1700),
    (1263, 2275), (1270, 1266), (1561, 1560), (1563, 1562), (2201, 1790), (2207, 2202),
    (2208, 2203), (2209, 2204), (2210, 2205), (2211, 2206), (2287, 2249), (2949, 2970),
    (2951, 2950), (3221, 3220), (3643, 3614), (3644, 3642), (3645, 3615), (3735, 3734),
    (3770, 3769), (3807, 3802), (3905, 3904), (3907, 3906), (3909, 3908), (3911, 3910),
    (3913, 3912), (3927, 3926), (4073, 4072), (4090, 4089), (4097, 4096), (4192, 4191),
    (5039, 5038), (6150, 4451), (6151, 4532), (6152, 4533), (6153, 4534), (6155, 4535),
    (6157, 4536),
)


def _builtin() -> Mapping[int, TypeDesc]:
    table = _scalars()
    for array, elem in _ARRAYS:
        table[array] = TypeDesc(Kind.ARRAY, elem=elem, delim=";" if elem == 603 else ",")
    return MappingProxyType(table)


#: Every builtin type masking knows, by OID (fixed across PostgreSQL 13-18).
BUILTIN: Mapping[int, TypeDesc] = _builtin()
#: Below this, OIDs are assigned by the PostgreSQL source (genbki); from it on, by initdb or
#: CREATE TYPE, so they differ between versions and databases.
FIRST_UNPINNED_OID = 10000
_MAX_USER_TYPES = 65536
_MAX_WALK = 4096


class TypeRegistry:
    """Builtin types plus the user types learned from one target database's catalog."""

    __slots__ = ("_generation", "_user")

    def __init__(self, types: Mapping[int, TypeDesc] | None = None) -> None:
        self._user: dict[int, TypeDesc] = {}
        self._generation = 0
        for oid, desc in (types or {}).items():
            self.add(oid, desc)

    def describe(self, oid: int) -> TypeDesc | None:
        """The type's description; None when unknown (the caller must ask the catalog)."""
        found = BUILTIN.get(oid)
        if found is not None:
            return found
        return self._user.get(oid)

    def add(self, oid: int, desc: TypeDesc) -> None:
        """Learn a user type. Builtin descriptions are never replaced."""
        if oid in BUILTIN or oid <= 0:
            return
        if len(self._user) >= _MAX_USER_TYPES and oid not in self._user:
            # A hostile catalog cannot grow the gateway without bound: forget and relearn.
            self._user.clear()
        self._user[oid] = desc

    @property
    def generation(self) -> int:
        """Changes each time user types are forgotten: what was looked up must be again."""
        return self._generation

    def forget_user_types(self) -> None:
        """After DDL (ALTER TYPE, ALTER TABLE ... ADD COLUMN), or when they are old: a composite
        whose fields changed would otherwise be NULLed against its old description."""
        if self._user:
            self._user.clear()
        self._generation += 1

    def add_all(self, descs: Mapping[int, TypeDesc]) -> None:
        for oid, desc in descs.items():
            self.add(oid, desc)

    def missing(self, oids: Iterable[int]) -> tuple[int, ...]:
        """The OIDs among ``oids`` and the types they are made of that the registry does not
        know, in first-seen order: what to pass to :func:`types_query`."""
        seen: set[int] = set()
        todo = deque(oids)
        out: list[int] = []
        while todo and len(seen) < _MAX_WALK:
            oid = todo.popleft()
            if oid in seen or oid <= 0:
                continue
            seen.add(oid)
            desc = self.describe(oid)
            if desc is None:
                out.append(oid)
                continue
            if desc.kind in (Kind.ARRAY, Kind.RANGE, Kind.MULTIRANGE) and desc.elem:
                todo.append(desc.elem)
            elif desc.kind is Kind.COMPOSITE and desc.fields:
                todo.extend(desc.fields)
        return tuple(out)


# --- the catalog query ---------------------------------------------------------------------------

_MAX_QUERY_OIDS = 1000
_MAX_QUERY_ROWS = 20000
_RECURSION_DEPTH = 8

# Every name is schema-qualified and every operator spelled OPERATOR(pg_catalog.x): an agent can
# set search_path so that its own "=" or function shadows the catalog's (HOSTILE C.14).
# The range behind a multirange is read through to_jsonb(pg_range row) because the column
# (rngmultitypid) only exists from PostgreSQL 14 on; on 13 the lookup is NULL, as it should be.
_QUERY = """\
WITH RECURSIVE wanted(oid, depth) AS (
    SELECT w.oid, 0 FROM ({seed}) AS w(oid)
  UNION
    SELECT d.oid, wanted.depth OPERATOR(pg_catalog.+) 1
    FROM wanted
    JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) wanted.oid
    CROSS JOIN LATERAL pg_catalog.unnest(
        ARRAY[t.typelem, t.typbasetype,
              (SELECT r.rngsubtype FROM pg_catalog.pg_range r
               WHERE r.rngtypid OPERATOR(pg_catalog.=) t.oid),
              (SELECT r.rngtypid FROM pg_catalog.pg_range r
               WHERE (pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.->>) 'rngmultitypid')
                     OPERATOR(pg_catalog.=) t.oid::pg_catalog.text)]
        OPERATOR(pg_catalog.||)
        ARRAY(SELECT a.atttypid FROM pg_catalog.pg_attribute a
              WHERE a.attrelid OPERATOR(pg_catalog.=) t.typrelid
                AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
    ) AS d(oid)
    WHERE wanted.depth OPERATOR(pg_catalog.<) {depth}
      AND d.oid IS NOT NULL AND d.oid OPERATOR(pg_catalog.<>) 0
)
SELECT t.oid::pg_catalog.text,
       t.typtype::pg_catalog.text,
       t.typcategory::pg_catalog.text,
       t.typelem::pg_catalog.text,
       t.typbasetype::pg_catalog.text,
       t.typdelim::pg_catalog.text,
       CASE WHEN t.typrelid OPERATOR(pg_catalog.<>) 0 THEN pg_catalog.array_to_string(
           ARRAY(SELECT a.atttypid FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) t.typrelid
                   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                 ORDER BY a.attnum), ' ') END,
       (SELECT r.rngsubtype::pg_catalog.text FROM pg_catalog.pg_range r
        WHERE r.rngtypid OPERATOR(pg_catalog.=) t.oid),
       (SELECT r.rngtypid::pg_catalog.text FROM pg_catalog.pg_range r
        WHERE (pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.->>) 'rngmultitypid')
              OPERATOR(pg_catalog.=) t.oid::pg_catalog.text)
FROM pg_catalog.pg_type t
WHERE t.oid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT DISTINCT wanted.oid FROM wanted))
LIMIT {limit}"""

_GIVEN_SEED = "SELECT o FROM pg_catalog.unnest('{{{oids}}}'::pg_catalog.oid[]) AS o"
# Every type created in the database except tables' row types and their arrays (a database with
# many tables has two of those per table; they are looked up when a result uses one).
_USER_SEED = """SELECT t.oid FROM pg_catalog.pg_type t
        LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.typrelid
        LEFT JOIN pg_catalog.pg_type e ON e.oid OPERATOR(pg_catalog.=) t.typelem
        LEFT JOIN pg_catalog.pg_class ec ON ec.oid OPERATOR(pg_catalog.=) e.typrelid
        WHERE t.oid OPERATOR(pg_catalog.>=) {first}
          AND (c.oid IS NULL OR c.relkind OPERATOR(pg_catalog.=) 'c')
          AND (ec.oid IS NULL OR ec.relkind OPERATOR(pg_catalog.=) 'c')"""

#: The columns each row of :func:`types_query` has, in order.
TYPE_ROW_COLUMNS = (
    "oid", "typtype", "typcategory", "typelem", "typbasetype", "typdelim", "fields",
    "rngsubtype", "multirange_of",
)  # fmt: skip


def types_query(oids: Iterable[int]) -> str:
    """One SQL statement describing ``oids`` and every type they are built from (array
    elements, domain bases, composite fields, range subtypes, a multirange's range).

    Each row has the columns of :data:`TYPE_ROW_COLUMNS`, all as text; feed them to
    :func:`parse_type_rows`. Only integers are interpolated, so the text cannot be injected.
    """
    wanted = sorted({int(o) for o in oids if 0 < int(o) < 1 << 32})
    if not wanted:
        raise ValueError("types_query needs at least one type OID")
    if len(wanted) > _MAX_QUERY_OIDS:
        raise ValueError(f"types_query takes at most {_MAX_QUERY_OIDS} OIDs at once")
    seed = _GIVEN_SEED.format(oids=",".join(str(o) for o in wanted))
    return _QUERY.format(seed=seed, depth=_RECURSION_DEPTH, limit=_MAX_QUERY_ROWS)


def user_types_query() -> str:
    """Like :func:`types_query` for every type created in the database (enums, domains,
    composite types, ranges, extension types and their arrays), tables' row types left out:
    what to run once when a session starts, so results rarely meet an unknown OID."""
    seed = _USER_SEED.format(first=FIRST_UNPINNED_OID)
    return _QUERY.format(seed=seed, depth=_RECURSION_DEPTH, limit=_MAX_QUERY_ROWS)


@dataclass(frozen=True, slots=True)
class _Row:
    oid: int
    typtype: str
    category: str
    elem: int
    base: int
    delim: str
    fields: tuple[int, ...] | None
    subtype: int
    range_of: int


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return str(value, "utf-8")
    return str(value)


def _oid(value: object, what: str) -> int:
    text = _text(value)
    if text is None or text == "":
        return 0
    if not text.isdigit() or len(text) > 10 or int(text) >= 1 << 32:
        raise TypeCatalogError(f"the type catalog answered {what} = {text!r}, not an OID")
    return int(text)


class TypeCatalogError(ProtocolError):
    """The target answered the type query with something that is not a type description."""


def _row(raw: Sequence[object]) -> _Row:
    if len(raw) != len(TYPE_ROW_COLUMNS):
        raise TypeCatalogError(
            f"a type catalog row has {len(raw)} columns, not {len(TYPE_ROW_COLUMNS)}"
        )
    fields_text = _text(raw[6])
    fields = (
        None
        if fields_text is None
        else tuple(_oid(f, "a field type") for f in fields_text.split())
    )
    delim = _text(raw[5]) or ","
    return _Row(
        oid=_oid(raw[0], "oid"),
        typtype=_text(raw[1]) or "",
        category=_text(raw[2]) or "",
        elem=_oid(raw[3], "typelem"),
        base=_oid(raw[4], "typbasetype"),
        delim=delim if len(delim) == 1 else ",",
        fields=fields,
        subtype=_oid(raw[7], "rngsubtype"),
        range_of=_oid(raw[8], "multirange_of"),
    )


def _own(row: _Row, rows: Mapping[int, _Row]) -> TypeDesc | None:
    """The description of one row, or None for a domain (resolved through its base)."""
    builtin = BUILTIN.get(row.oid)
    if builtin is not None:
        return builtin
    kind = row.typtype
    if kind == "d":
        return None
    if kind == "c":
        return TypeDesc(Kind.COMPOSITE, fields=row.fields)
    if kind == "e":
        return TypeDesc(Kind.ENUM)
    if kind == "r":
        return TypeDesc(Kind.RANGE, elem=row.subtype)
    if kind == "m":
        return TypeDesc(Kind.MULTIRANGE, elem=row.range_of)
    if kind == "b" and row.category == "A" and row.elem:
        elem_row = rows.get(row.elem)
        delim = elem_row.delim if elem_row is not None else row.delim
        return TypeDesc(Kind.ARRAY, elem=row.elem, delim=delim)
    if kind == "b" and row.category == "S":
        return TypeDesc(Kind.TEXT)  # citext and other string types send their text
    return TypeDesc(Kind.OPAQUE)


def parse_type_rows(rows: Iterable[Sequence[object]]) -> dict[int, TypeDesc]:
    """Descriptions, by OID, of the rows :func:`types_query` returned.

    Values may be ``str``, ``bytes`` or ``None`` (text-format results as any driver gives them).
    A domain gets the description of its base type (through chains of domains); a domain whose
    base is not described anywhere is opaque.
    """
    parsed: dict[int, _Row] = {}
    for raw in rows:
        row = _row(raw)
        if row.oid:
            parsed[row.oid] = row
    out: dict[int, TypeDesc] = {}
    for oid, row in parsed.items():
        desc = _own(row, parsed)
        current = row
        hops = 0
        while desc is None and hops < 32:  # a domain: follow the bases
            hops += 1
            base_desc = BUILTIN.get(current.base)
            if base_desc is not None:
                desc = base_desc
                break
            base_row = parsed.get(current.base)
            if base_row is None:
                break
            current = base_row
            desc = _own(base_row, parsed)
        out[oid] = desc if desc is not None else TypeDesc(Kind.OPAQUE)
    return out
