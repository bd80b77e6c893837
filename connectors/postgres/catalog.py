"""What the target's catalog says about the relations a statement names, for column lineage.

Masking follows data, not names: ``SELECT x FROM v`` shows a card number when ``v`` is a view over
``customers.card``. The lineage analyser (``lineage.py``) therefore needs, for each relation a
statement names, its columns in ``attnum`` order and, for views, their definition. This module is
the sans-IO half of getting that: it writes the one query that loads a batch of relations, reads
its rows, and caches the answers. The relay owns the connection and the clock: it runs
:func:`relations_query` on the session's own backend connection (so ``search_path`` and the
session's temporary schema resolve names exactly as they will for the agent's statement), hands
the rows to :func:`parse_relation_rows`, and passes ``now`` in.

The query is written for a hostile session (HOSTILE C.14): the agent may have put a schema that
shadows builtins ahead of ``pg_catalog``, so every function, operator and type is written
``pg_catalog``-qualified (``OPERATOR(pg_catalog.=)``), no construct that looks an operator up by
name (``IN``, ``USING``, simple ``CASE``) is used, and names travel as hex digits decoded by the
server, so no quoting rule or string-literal setting can change what is asked.

Views: ``pg_get_viewdef`` prints a relation unqualified exactly when it is visible in the current
search path. The query reports, with each view, the schema each unqualified name resolved to at
that moment, so the definition is later read the way it was printed whatever the search path has
become. Views' dependencies are loaded in the same round trip (transitively, bounded). On
PostgreSQL 15 ``pg_get_viewdef`` itself runs an SPI query with an unqualified ``=``: with a
schema ahead of ``pg_catalog`` an agent's ``=(oid, oid)`` would run inside it and could choose
which definition comes back. So definitions are read only when ``pg_catalog`` is searched
first; otherwise ``view_sql`` is NULL and lineage through views is unknown (the relay denies).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import ProtocolError

#: Names one query may ask for; the analyser asks for far fewer.
MAX_BATCH = 256
#: View-of-view levels whose dependencies one query follows.
MAX_DEPENDENCY_DEPTH = 16
#: Rows of a catalog answer read at most (a relation has at most 1600 columns).
MAX_ROWS = 500_000
#: A view definition longer than this is refused (lineage would be unknown).
MAX_VIEW_SQL = 1 << 20
#: How deep composites, arrays and domains are followed for a column's field names, and how
#: long their list (hex, comma-separated) may be.
MAX_FIELD_DEPTH = 8
MAX_FIELDS_TEXT = 1 << 20
_WIDTH = 6  # every row: kind and five text fields


class Missing(enum.Enum):
    """Why :meth:`Catalog.relation` has no :class:`Relation` to give."""

    NOT_FOUND = "not found"  # the server resolves the name to nothing
    NOT_LOADED = "not loaded"  # nobody has asked the server yet (or the answer expired)


NOT_FOUND = Missing.NOT_FOUND
NOT_LOADED = Missing.NOT_LOADED


@dataclass(frozen=True, slots=True)
class Column:
    """One user column (no system or dropped columns), as ``pg_attribute`` describes it.

    ``fields``: the names of every attribute its type holds, through composites, arrays and
    domains, at any depth (``snapshot customers`` holds ``ssn``): a glob matching one of them
    makes the column as sensitive as the field."""

    name: str
    attnum: int
    type_oid: int
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Relation:
    """A table, view, materialised view, foreign or partitioned table, sequence, ...

    ``kind`` is ``pg_class.relkind``. ``view_sql`` is ``pg_get_viewdef`` of a view or
    materialised view. ``view_names`` maps each relation name that ``view_sql`` writes
    unqualified to the schema it resolved to when the text was produced.
    """

    oid: int
    schema: str
    name: str
    kind: str
    columns: tuple[Column, ...]
    view_sql: str | None = None
    view_names: tuple[tuple[str, str], ...] = ()

    @property
    def qualified(self) -> str:
        return _qualified((self.schema, self.name))

    def column_name(self, column: str) -> str:
        """``schema.relation.column``: how violations and outputs name a base column."""
        return _qualified((self.schema, self.name, column))


@dataclass(frozen=True, slots=True)
class RelationName:
    """A relation as a statement names it: ``schema`` is None for an unqualified name."""

    schema: str | None
    name: str


class Catalog(Protocol):
    """What the lineage analyser reads. :class:`CatalogCache` is the implementation."""

    def relation(self, schema: str | None, name: str) -> Relation | Missing:
        """The relation ``schema.name`` (or ``name`` through the search path) denotes."""
        ...

    def relation_by_oid(self, oid: int) -> Relation | Missing:
        """The relation with this OID, if loaded."""
        ...

    def search_path_safe(self) -> bool | None:
        """Whether ``pg_catalog`` comes first in the search path (for functions, operators and
        view definitions); None when not loaded yet."""
        ...

    def resolves_to_builtin(self, kind: str, name: str) -> bool | None:
        """Whether an unqualified ``kind`` ("function", "operator", "type") of this name can
        only be the builtin: False when a schema precedes pg_catalog, or when a schema the
        server searches holds one of that name that no extension installed (PostgreSQL picks
        the best argument match across schemas, and searches pg_temp first for types); None
        when not loaded yet."""
        ...


def _qualified(parts: Iterable[str]) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' if "." in p or '"' in p else p for p in parts)


def _ident(name: str) -> str:
    """``name`` as a quoted identifier: always quoted, so no keyword or case rule applies."""
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    """A text value as hex digits the server decodes: no quoting rule can touch it."""
    hexed = value.encode("utf-8").hex()
    return f"pg_catalog.convert_from(pg_catalog.decode('{hexed}', 'hex'), 'UTF8')"


# Objects in a searched schema, not installed by an extension, named as a builtin is: they may
# be picked instead of it. (kind, catalog, name column, namespace column)
_SHADOWING = (
    ("function", "pg_proc", "proname", "pronamespace"),
    ("operator", "pg_operator", "oprname", "oprnamespace"),
    ("type", "pg_type", "typname", "typnamespace"),
)


def _shadowing(eq: str) -> str:
    builtin_ns = "'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid"
    parts = []
    for kind, table, name, namespace in _SHADOWING:
        parts.append(f"""SELECT DISTINCT 'x', '{kind}', x.{name}::pg_catalog.text, NULL, NULL, NULL
FROM pg_catalog.{table} x
JOIN pg_catalog.pg_namespace n ON n.oid {eq} x.{namespace}
JOIN pg_catalog.unnest(pg_catalog.current_schemas(true)) AS sp(nsp) ON sp.nsp {eq} n.nspname
WHERE n.nspname OPERATOR(pg_catalog.<>) 'pg_catalog'
  AND EXISTS (SELECT FROM pg_catalog.{table} b
    WHERE b.{namespace} {eq} {builtin_ns} AND b.{name} {eq} x.{name})
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend e
    WHERE e.classid {eq} 'pg_catalog.{table}'::pg_catalog.regclass::pg_catalog.oid
    AND e.objid {eq} x.oid AND e.deptype {eq} 'e'::pg_catalog."char")""")
    return "\nUNION ALL\n".join(parts)


def relations_query(names: Iterable[RelationName]) -> str:
    """One SQL text that loads ``names`` (and, transitively, what their views read).

    Unqualified names resolve through ``pg_catalog.to_regclass`` in the session that runs the
    query, as the server resolves them in a statement. Every row has six text columns; give
    them to :func:`parse_relation_rows`. With no names it still reports the search path check.
    """
    wanted = list(dict.fromkeys(names))
    if len(wanted) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} relations per catalog query")
    values = []
    for item in wanted:
        if not item.name or "\x00" in item.name or "\x00" in (item.schema or ""):
            raise ValueError("relation names are non-empty and hold no NUL")
        regclass = (
            _ident(item.name)
            if item.schema is None
            else (_ident(item.schema) + "." + _ident(item.name))
        )
        schema = "NULL::pg_catalog.text" if item.schema is None else _text(item.schema)
        values.append(f"({schema}, {_text(item.name)}, {_text(regclass)})")
    if values:
        wanted_sql = "VALUES " + ", ".join(values)
    else:
        null = "NULL::pg_catalog.text"
        wanted_sql = f"SELECT {null}, {null}, {null} WHERE false"
    eq = "OPERATOR(pg_catalog.=)"
    rewrite = "'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid"
    pg_class = "'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid"
    shadowing = _shadowing(eq)
    return f"""WITH RECURSIVE
wanted(schema_name, rel_name, reg) AS ({wanted_sql}),
resolved AS (
  SELECT w.schema_name, w.rel_name, pg_catalog.to_regclass(w.reg)::pg_catalog.oid AS rel_oid
  FROM wanted w),
closure(rel_oid, depth) AS (
  SELECT r.rel_oid, 0 FROM resolved r WHERE r.rel_oid IS NOT NULL
  UNION
  SELECT d.refobjid, c.depth OPERATOR(pg_catalog.+) 1
  FROM closure c
  JOIN pg_catalog.pg_rewrite rw ON rw.ev_class {eq} c.rel_oid
    AND rw.ev_type {eq} '1'::pg_catalog."char"
  JOIN pg_catalog.pg_depend d ON d.classid {eq} {rewrite} AND d.objid {eq} rw.oid
    AND d.refclassid {eq} {pg_class}
    AND d.refobjid OPERATOR(pg_catalog.<>) c.rel_oid
  WHERE c.depth OPERATOR(pg_catalog.<) {MAX_DEPENDENCY_DEPTH}),
rels AS (SELECT DISTINCT closure.rel_oid FROM closure),
fieldwalk(rel_oid, attnum, type_oid, field_name, depth) AS (
  SELECT a.attrelid, a.attnum, a.atttypid, NULL::pg_catalog.name, 0
  FROM rels
  JOIN pg_catalog.pg_attribute a ON a.attrelid {eq} rels.rel_oid
  WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
  UNION
  SELECT f.rel_oid, f.attnum, inner_type.type_oid, inner_type.field_name,
    f.depth OPERATOR(pg_catalog.+) 1
  FROM fieldwalk f
  JOIN pg_catalog.pg_type t ON t.oid {eq} f.type_oid
  CROSS JOIN LATERAL (
    SELECT t.typbasetype, NULL::pg_catalog.name WHERE t.typtype {eq} 'd'::pg_catalog."char"
    UNION ALL
    SELECT t.typelem, NULL::pg_catalog.name
    WHERE t.typelem OPERATOR(pg_catalog.<>) 0::pg_catalog.oid
      AND t.typcategory {eq} 'A'::pg_catalog."char"
    UNION ALL
    SELECT fa.atttypid, fa.attname FROM pg_catalog.pg_attribute fa
    WHERE t.typrelid OPERATOR(pg_catalog.<>) 0::pg_catalog.oid
      AND fa.attrelid {eq} t.typrelid
      AND fa.attnum OPERATOR(pg_catalog.>) 0 AND NOT fa.attisdropped
  ) AS inner_type(type_oid, field_name)
  WHERE f.depth OPERATOR(pg_catalog.<) {MAX_FIELD_DEPTH}),
path(first_schema) AS (SELECT (SELECT s.nsp::pg_catalog.text
  FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY AS s(nsp, pos)
  WHERE NOT pg_catalog.starts_with(s.nsp::pg_catalog.text, 'pg_temp')
  ORDER BY s.pos LIMIT 1))
SELECT 'k'::pg_catalog.text, r.schema_name, r.rel_name, r.rel_oid::pg_catalog.text,
  NULL::pg_catalog.text, NULL::pg_catalog.text
FROM resolved r
UNION ALL
SELECT 'r', c.oid::pg_catalog.text, n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
  c.relkind::pg_catalog.text,
  CASE WHEN (c.relkind {eq} 'v'::pg_catalog."char" OR c.relkind {eq} 'm'::pg_catalog."char")
    AND path.first_schema {eq} 'pg_catalog' THEN pg_catalog.pg_get_viewdef(c.oid) END
FROM rels
CROSS JOIN path
JOIN pg_catalog.pg_class c ON c.oid {eq} rels.rel_oid
JOIN pg_catalog.pg_namespace n ON n.oid {eq} c.relnamespace
UNION ALL
SELECT 'c', a.attrelid::pg_catalog.text, a.attnum::pg_catalog.text, a.attname::pg_catalog.text,
  a.atttypid::pg_catalog.text,
  (SELECT pg_catalog.string_agg(DISTINCT pg_catalog.encode(pg_catalog.convert_to(
      f.field_name::pg_catalog.text, 'UTF8'), 'hex'), ',')
   FROM fieldwalk f WHERE f.rel_oid {eq} a.attrelid AND f.attnum {eq} a.attnum
     AND f.field_name IS NOT NULL)
FROM rels
JOIN pg_catalog.pg_attribute a ON a.attrelid {eq} rels.rel_oid
WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
UNION ALL
SELECT DISTINCT 'v', rw.ev_class::pg_catalog.text, dc.relname::pg_catalog.text,
  dn.nspname::pg_catalog.text, NULL, NULL
FROM rels
JOIN pg_catalog.pg_rewrite rw ON rw.ev_class {eq} rels.rel_oid
  AND rw.ev_type {eq} '1'::pg_catalog."char"
JOIN pg_catalog.pg_depend d ON d.classid {eq} {rewrite} AND d.objid {eq} rw.oid
  AND d.refclassid {eq} {pg_class}
  AND d.refobjid OPERATOR(pg_catalog.<>) rels.rel_oid
JOIN pg_catalog.pg_class dc ON dc.oid {eq} d.refobjid
JOIN pg_catalog.pg_namespace dn ON dn.oid {eq} dc.relnamespace
WHERE pg_catalog.pg_table_is_visible(dc.oid)
UNION ALL
{shadowing}
UNION ALL
SELECT 's', path.first_schema, NULL, NULL, NULL, NULL FROM path"""


class CatalogError(ProtocolError):
    """The catalog answer is not what :func:`relations_query` asks for (a hostile target)."""


@dataclass(frozen=True, slots=True)
class CatalogAnswer:
    """What one catalog query said: name resolutions, the relations, the search path check."""

    names: tuple[tuple[RelationName, int | None], ...]
    relations: tuple[Relation, ...]
    search_path_safe: bool
    shadowed: frozenset[tuple[str, str]] = frozenset()  # (kind, name) a builtin may lose to


def _int(value: str | None, what: str) -> int:
    if value is None or not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 12:
        raise CatalogError(f"catalog answer: {what} is not a number")
    return int(value)


def _str(value: str | None, what: str) -> str:
    if value is None:
        raise CatalogError(f"catalog answer: {what} is missing")
    return value


def _field_names(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if len(value) > MAX_FIELDS_TEXT:
        raise CatalogError("catalog answer: too many composite fields")
    try:
        return tuple(bytes.fromhex(part).decode("utf-8") for part in value.split(","))
    except ValueError as exc:
        raise CatalogError("catalog answer: a composite field name is not hex") from exc


def parse_relation_rows(rows: Iterable[Sequence[str | None]]) -> CatalogAnswer:
    """Read the rows of :func:`relations_query` (text values, NULL as None).

    Raises :class:`CatalogError` for rows the query cannot have produced: the relay then knows
    nothing about these relations, and the analyser keeps asking (and the relay denies).
    """
    names: list[tuple[RelationName, int | None]] = []
    heads: dict[int, tuple[str, str, str, str | None]] = {}
    columns: dict[int, dict[int, Column]] = {}
    visible: dict[int, dict[str, str]] = {}
    safe: bool | None = None
    shadowed: set[tuple[str, str]] = set()
    for count, row in enumerate(rows):
        if count >= MAX_ROWS:
            raise CatalogError("catalog answer has too many rows")
        if len(row) != _WIDTH:
            raise CatalogError("catalog answer row has the wrong width")
        kind, a, b, c, d, e = row
        if kind == "k":
            oid = None if c is None else _int(c, "relation oid")
            names.append((RelationName(a, _str(b, "relation name")), oid))
        elif kind == "r":
            oid = _int(a, "relation oid")
            if e is not None and len(e) > MAX_VIEW_SQL:
                raise CatalogError("catalog answer: view definition too long")
            heads[oid] = (_str(b, "schema"), _str(c, "relation name"), _str(d, "relkind"), e)
        elif kind == "c":
            oid, attnum = _int(a, "column relation"), _int(b, "attnum")
            if attnum <= 0:
                raise CatalogError("catalog answer: system or invalid column number")
            column = Column(_str(c, "column name"), attnum, _int(d, "type oid"),
                            _field_names(e))
            if columns.setdefault(oid, {}).setdefault(attnum, column) is not column:
                raise CatalogError("catalog answer: duplicate column number")
        elif kind == "v":
            visible.setdefault(_int(a, "view oid"), {})[_str(b, "name")] = _str(c, "schema")
        elif kind == "x":
            if a not in ("function", "operator", "type"):
                raise CatalogError("catalog answer: unknown kind of object")
            shadowed.add((a, _str(b, "name")))
        elif kind == "s":
            safe = a == "pg_catalog"
        else:
            raise CatalogError("catalog answer row of unknown kind")
    if safe is None:
        raise CatalogError("catalog answer lacks the search path check")
    relations = []
    for oid, (schema, name, relkind, view_sql) in heads.items():
        cols = columns.get(oid, {})
        relations.append(
            Relation(
                oid,
                schema,
                name,
                relkind,
                tuple(cols[n] for n in sorted(cols)),
                view_sql,
                tuple(sorted(visible.get(oid, {}).items())),
            )
        )
    known = {r.oid for r in relations}
    for _, oid in names:
        if oid is not None and oid not in known:
            raise CatalogError("catalog answer resolves a name to a relation it does not describe")
    return CatalogAnswer(tuple(names), tuple(relations), safe, frozenset(shadowed))


class CatalogCache:
    """A :class:`Catalog` for one session, filled from catalog answers.

    Answers live ``ttl`` seconds (``negative_ttl`` for "not found", so a table created by another
    session is seen soon); at most ``max_relations`` relations are kept, the oldest dropped first.
    Time is what :meth:`advance` was last told. Call :meth:`invalidate` after any statement that
    may change what a name means (DDL, ``SET search_path``/``ROLE``, ``DISCARD``, the end of a
    transaction that did one of these): a stale answer reads the wrong columns.
    """

    __slots__ = ("_earliest", "_names", "_now", "_relations", "_safe", "max_relations", "memo",
                 "negative_ttl", "ttl")  # fmt: skip

    def __init__(
        self, *, ttl: float = 30.0, negative_ttl: float = 2.0, max_relations: int = 4096
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_relations = max_relations
        self._now = float("-inf")
        # name -> (oid or None for not found, expiry); oid -> (relation, expiry). Insertion
        # order is age order: storing again moves an entry to the end.
        self._names: dict[tuple[str | None, str], tuple[int | None, float]] = {}
        self._relations: dict[int, tuple[Relation, float]] = {}
        self._safe: tuple[bool, frozenset[tuple[str, str]], float] | None = None
        self._earliest = float("inf")  # the first moment an entry expires
        #: Results derived from these answers (the lineage analyser's, per statement): emptied
        #: whenever an answer may change, on a store, an invalidation or an expiry.
        self.memo: dict[object, object] = {}

    def advance(self, now: float) -> None:
        """Tell the cache the time (monotonic seconds); it never moves backwards."""
        self._now = max(self._now, now)
        if self._now >= self._earliest:
            self._earliest = float("inf")
            self.memo.clear()

    def invalidate(self) -> None:
        """Forget everything: the next statement reloads what it names."""
        self._names.clear()
        self._relations.clear()
        self._safe = None
        self.memo.clear()

    def store(self, answer: CatalogAnswer, now: float) -> None:
        self.advance(now)
        expiry = self._now + self.ttl
        for relation in answer.relations:
            self._relations.pop(relation.oid, None)
            self._relations[relation.oid] = (relation, expiry)
            # A view's dependencies are looked up by qualified name: make those hit too.
            self._put_name((relation.schema, relation.name), relation.oid, expiry)
        for name, oid in answer.names:
            ttl = self.ttl if oid is not None else self.negative_ttl
            self._put_name((name.schema, name.name), oid, self._now + ttl)
        self._safe = (answer.search_path_safe, answer.shadowed, expiry)
        self._earliest = min(self._earliest, expiry, self._now + self.negative_ttl)
        self.memo.clear()
        while len(self._relations) > self.max_relations:
            del self._relations[next(iter(self._relations))]
        while len(self._names) > 2 * self.max_relations:
            del self._names[next(iter(self._names))]

    def _put_name(self, key: tuple[str | None, str], oid: int | None, expiry: float) -> None:
        self._names.pop(key, None)
        self._names[key] = (oid, expiry)

    def relation(self, schema: str | None, name: str) -> Relation | Missing:
        entry = self._names.get((schema, name))
        if entry is None or entry[1] <= self._now:
            return NOT_LOADED
        if entry[0] is None:
            return NOT_FOUND
        return self.relation_by_oid(entry[0])

    def relation_by_oid(self, oid: int) -> Relation | Missing:
        entry = self._relations.get(oid)
        if entry is None or entry[1] <= self._now:
            return NOT_LOADED
        return entry[0]

    def search_path_safe(self) -> bool | None:
        if self._safe is None or self._safe[2] <= self._now:
            return None
        return self._safe[0]

    def resolves_to_builtin(self, kind: str, name: str) -> bool | None:
        if self._safe is None or self._safe[2] <= self._now:
            return None
        return self._safe[0] and (kind, name) not in self._safe[1]

    def __len__(self) -> int:
        return len(self._relations)
