"""Masked columns in the relay: lineage decisions and the columns each result must hide.

The rule, for columns matched by ``[masking] columns`` (globs over table and view columns):

* an output that passes such a column through unchanged (renamed, through a view, a CTE, a
  subquery, ``*`` or ``t.*``) is shown masked, whatever it is called;
* an output *computed* from one (``reverse(card)``, ``c::text``, ``row_to_json(c)``, an
  aggregate) is denied: its value, an error about it (``ssn::int`` fails with the value in the
  message) or the time it takes could say what the column holds;
* any other use (a filter, a sort, a grouping, a copy into another table) is denied, and so is a
  statement whose lineage cannot be determined where a masked column might be involved.

Names matching a glob mask nothing by themselves (``SHOW password_encryption``): only lineage
does, except where a result's lineage is not known at all, where output names are matched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pglast.parser

from gateway.model import Action, Decision

from .backend import FieldDescription
from .catalog import Catalog, Missing, RelationName
from .lineage import Analysis, NeedRelations, StatementLineage, analyze

RULE = "wardgate.masking"
SYNTAX_RULE = "wardgate.syntax"  # answered with SQLSTATE 42601, as the server would
_UNPARSEABLE = "statement could not be parsed"  # lineage.analyze's word for it
#: Catalog loads one statement may ask for before it is refused (views reveal more names).
MAX_ROUNDS = 4


@dataclass(frozen=True)
class Verdict:
    """The lineage of each statement of a message, or why the message is refused."""

    statements: tuple[StatementLineage | None, ...]
    refusal: Decision | None = None


class SessionCatalog:
    """A target's shared catalog as one session reads it."""

    def __init__(self, shared: Catalog) -> None:
        self.shared = shared
        #: The session changed its search_path: unqualified names may not mean what the
        #: catalog connection resolves them to (relations are opaque, functions the agent's).
        self.search_path_changed = False
        #: Names the session may have made in its own pg_temp schema, which PostgreSQL searches
        #: first for relations and types and the catalog connection cannot see: such a relation
        #: is opaque (masked whole), such a type the agent's own.
        self.temp_relations: set[str] = set()
        self.temp_types: set[str] = set()

    @property
    def memo(self) -> Any:
        # Analyses are shared between sessions that read the catalog the same way.
        if self.search_path_changed or self.temp_relations or self.temp_types:
            return None
        return getattr(self.shared, "memo", None)

    def note_temp_objects(self, created: Sequence[tuple[str, str]]) -> None:
        for kind, name in created:
            (self.temp_relations if kind == "relation" else self.temp_types).add(name)

    def relation(self, schema: str | None, name: str) -> Any:
        if schema == "pg_temp" or (schema is None and name in self.temp_relations):
            return Missing.NOT_FOUND  # the session's own: opaque
        return self.shared.relation(schema, name)

    def resolves_to_builtin(self, kind: str, name: str) -> bool | None:
        if self.search_path_changed or (kind == "type" and name in self.temp_types):
            return False
        found: bool | None = self.shared.resolves_to_builtin(kind, name)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shared, name)


class ColumnGuard:
    """One session's view of masked-column lineage, over a target's shared catalog cache."""

    def __init__(self, catalog: Catalog, is_masked: Callable[[str], bool], *,
                 active: bool, typed: bool = False,
                 clock: Callable[[], float] | None = None) -> None:
        self.catalog: Any = SessionCatalog(catalog)
        self.is_masked = is_masked
        self.active = active  # column globs are configured
        self.typed = typed  # a real catalog is there (for COPY column types)
        self._clock = clock  # the clock the catalog's entries expire by
        self._rounds = 0

    def judge(self, sql: str, count: int, *, types_wanted: bool = False
              ) -> Verdict | NeedRelations:
        """Lineage for the ``count`` statements of ``sql``, or what to load first. Without column
        globs nothing is judged; ``types_wanted`` (a binary COPY) still reads the lineage when a
        catalog is there, for the types of its columns."""
        if not self.active:
            if not (types_wanted and self.typed):
                return Verdict((None,) * count)
            found = analyze(sql, self.catalog, _never_masked)
            if isinstance(found, NeedRelations):
                self._rounds += 1
                if self._rounds <= MAX_ROUNDS:
                    return found
                found = Analysis((None,) * count)  # type: ignore[arg-type]
            self._rounds = 0
            # No column is listed: nothing is hidden whole, whatever its source (a temporary
            # table's columns are opaque only for fear of listed ones); only the types count.
            return Verdict(tuple(_types_only(s) for s in found.statements))
        advance = getattr(self.catalog, "advance", None)
        if advance is not None and self._clock is not None:
            advance(self._clock())
        found = analyze(sql, self.catalog, self.is_masked)
        if isinstance(found, NeedRelations):
            self._rounds += 1
            if self._rounds <= MAX_ROUNDS:
                return found
            self._rounds = 0
            return Verdict((None,) * count, _refused(
                "the relations this statement reads could not all be resolved in the target's "
                "catalog, so wardgate cannot tell which columns it shows"))
        self._rounds = 0
        return self._verdict(found, sql)

    def search_path_changed(self) -> None:
        """Names may now resolve to objects the catalog connection does not resolve them to:
        for the rest of the session unqualified relations are opaque (masked) and unqualified
        functions, operators and types are taken for the agent's own."""
        self.catalog.search_path_changed = True

    def catalog_changed(self) -> None:
        """A statement that changes what names mean is forwarded: read the catalog again."""
        invalidate = getattr(self.catalog, "invalidate", None)
        if invalidate is not None:
            invalidate()

    def catalog_failed(self, why: str, count: int) -> Verdict:
        self._rounds = 0
        return Verdict((None,) * count, _refused(
            f"{why}; wardgate cannot tell which columns it would show"))

    def _verdict(self, analysis: Analysis, sql: str) -> Verdict:
        for lineage in analysis.statements:
            # Noted whether or not the statement runs: a name wrongly taken for temporary
            # only masks more.
            self.catalog.note_temp_objects(lineage.temp_objects)
            if lineage.unknown == (_UNPARSEABLE,):
                # The server would refuse it as a syntax error too (the parser is PostgreSQL's
                # own), unless it is newer syntax than libpg_query knows: never run it unseen.
                return Verdict(analysis.statements, Decision(
                    Action.DENY, SYNTAX_RULE, _syntax_error(sql)))
            problem = _problem(lineage)
            if problem is not None:
                return Verdict(analysis.statements, _refused(problem))
        return Verdict(analysis.statements)

    def column_masks(
        self, lineage: StatementLineage | None, fields: Sequence[FieldDescription]
    ) -> tuple[bool, ...] | None:
        """Per column of a result: hide it whole. None: lineage unknown, match names instead."""
        if not self.active or lineage is None:
            return None
        return tuple(lineage.masks(i) or self._origin_masked(f, lineage)
                     for i, f in enumerate(fields))

    def _origin_masked(self, field: FieldDescription, lineage: StatementLineage) -> bool:
        # The server's own word on where a column comes from, as a second opinion.
        if not field.table_oid:
            return False
        if field.table_oid not in lineage.relation_oids:
            # The server read a table the analysis never resolved a name to (a name that
            # means another table in this session): its columns are hidden (fail closed).
            return True
        relation = self.catalog.relation_by_oid(field.table_oid)
        if isinstance(relation, Missing):
            return False  # answers dropped since (DDL): the analysis stands
        for column in relation.columns:
            if column.attnum == field.column_attr:
                return self.is_masked(column.name) or any(map(self.is_masked, column.fields))
        return False


def _never_masked(name: str) -> bool:
    return False


def _types_only(lineage: StatementLineage | None) -> StatementLineage | None:
    if lineage is None:
        return None
    outputs = lineage.outputs
    if outputs is not None:
        outputs = tuple(replace(o, opaque=False) if o.opaque else o for o in outputs)
    return replace(lineage, outputs=outputs, rest_masked=False)


def _problem(lineage: StatementLineage) -> str | None:
    if lineage.violations:
        return lineage.violations[0]
    if lineage.unknown:
        return lineage.unknown[0]
    for position, output in enumerate(lineage.outputs or ()):
        if output.masked and not output.exact:
            return (f"output column {position + 1} ({output.name}) is computed from masked "
                    f"column {output.masked[0]}; masked columns may be shown as they are, "
                    "not computed with")
    inner = lineage.inner
    return _problem(inner) if inner is not None else None


def _syntax_error(sql: str) -> str:
    try:
        pglast.parser.parse_sql_json(sql)
    except pglast.parser.ParseError as error:
        return str(error)
    except (ValueError, RecursionError):
        pass
    return "syntax error: the statement could not be parsed"


def _refused(reason: str) -> Decision:
    return Decision(Action.DENY, RULE, reason)


__all__ = ["ColumnGuard", "NeedRelations", "RelationName", "Verdict"]
