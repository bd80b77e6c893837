"""A catalog for lineage unit tests: relations declared in a few lines, resolved as a server
with ``search_path = public`` would (temp schema first, pg_catalog implicitly)."""

from __future__ import annotations

from collections.abc import Iterable

from connectors.postgres.catalog import (
    NOT_FOUND,
    NOT_LOADED,
    Column,
    Missing,
    Relation,
)

TEXT, INT, NUMERIC = 25, 23, 1700


class FakeCatalog:
    """``tables``: "schema.name" -> "col type, col type" (type: text|int|numeric);
    ``views``: "schema.name" -> (columns, SELECT text). ``unloaded`` names answer NOT_LOADED
    until :meth:`load` is called with them, which records the request."""

    def __init__(self, tables: dict[str, str], views: dict[str, tuple[str, str]] | None = None,
                 *, search_path: Iterable[str] = ("public",), safe: bool | None = True,
                 unloaded: Iterable[str] = ()) -> None:
        self.search_path = list(search_path)
        self.safe = safe
        self.relations: dict[tuple[str, str], Relation] = {}
        self.unloaded = set(unloaded)
        self.requests: list[tuple[str | None, str]] = []
        oid = 16000
        types = {"text": TEXT, "int": INT, "numeric": NUMERIC}
        for qualified, spec in tables.items():
            schema, name = qualified.split(".")
            oid += 1
            columns = []
            for attnum, part in enumerate(spec.split(","), 1):
                col, typ = part.split()
                columns.append(Column(col, attnum, types[typ]))
            self.relations[(schema, name)] = Relation(oid, schema, name, "r", tuple(columns))
        for qualified, (cols, sql) in (views or {}).items():
            schema, name = qualified.split(".")
            oid += 1
            columns = tuple(Column(c.strip(), i, TEXT) for i, c in enumerate(cols.split(","), 1))
            kind = "m" if name.startswith("mv") else "v"
            self.relations[(schema, name)] = Relation(oid, schema, name, kind, columns, sql, ())
        visible = self._visible()
        for key, rel in list(self.relations.items()):
            if rel.view_sql is not None:
                self.relations[key] = Relation(rel.oid, rel.schema, rel.name, rel.kind,
                                               rel.columns, rel.view_sql, visible)

    def _visible(self) -> tuple[tuple[str, str], ...]:
        names: dict[str, str] = {}
        for schema in ["pg_catalog", *self.search_path]:
            for (s, n) in self.relations:
                if s == schema:
                    names.setdefault(n, s)
        return tuple(sorted(names.items()))

    def relation(self, schema: str | None, name: str) -> Relation | Missing:
        key = f"{schema}.{name}" if schema else name
        if key in self.unloaded:
            self.requests.append((schema, name))
            return NOT_LOADED
        if schema is not None:
            return self.relations.get((schema, name), NOT_FOUND)
        for s in ["pg_temp", "pg_catalog", *self.search_path]:
            if (s, name) in self.relations:
                return self.relations[(s, name)]
        return NOT_FOUND

    def relation_by_oid(self, oid: int) -> Relation | Missing:
        for rel in self.relations.values():
            if rel.oid == oid:
                return rel
        return NOT_FOUND

    def search_path_safe(self) -> bool | None:
        return self.safe

    def load(self, names: Iterable[object]) -> None:
        for n in names:
            key = f"{n.schema}.{n.name}" if n.schema else n.name  # type: ignore[attr-defined]
            self.unloaded.discard(key)
