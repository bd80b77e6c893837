"""Column lineage of writes: data-modifying statements, new tables, DDL that reads values.

A masked value may be written only where reading it back is masked too: an exact copy into a
column a glob names (or a view column whose lineage is masked). Writing a constant is not a
read. Anything else (``INSERT INTO t SELECT card``, ``UPDATE ... SET name = card``, a masked
column computed into another, ``CREATE TABLE x AS SELECT card AS n``) is a copy violation.

DDL reads values too: a CHECK or UNIQUE constraint added to a table, a unique index, fails on
the existing rows (an oracle); an expression index or ``ALTER COLUMN ... USING`` can fail with
the value in the message; a row security policy filters every later read; extended statistics
publish sample values; renaming a masked column to a name no glob matches unmasks it.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from . import functions
from .lineage_model import NONE, OPAQUE, Ctes, Item, Lin, Node, Rel, Scope, derive, strings, unwrap
from .lineage_query import Run

Column = Callable[[str], tuple[Lin | None, str]]  # a target column: its lineage, its name


def _target(run: Run, node: Node) -> tuple[Item, Rel, Column]:
    """The relation a statement writes (never a CTE), and how to name its columns."""
    relation_node = node.get("relation") or {}
    name = str(relation_node.get("relname", ""))
    schema = relation_node.get("schemaname")
    alias = (relation_node.get("alias") or {}).get("aliasname")
    rel, relation = run.relation_rel(schema, name)
    label = relation.qualified if relation else functions.qualified_name(
        [schema, name] if schema else [name])  # fmt: skip
    owner = None if alias else (relation.schema if relation else schema)
    item = Item(alias or name, rel, schema=owner, label=label, system=relation is not None)

    def column(col: str) -> tuple[Lin | None, str]:
        found = [lin for n, lin in rel.cols if n == col]
        qualified = relation.column_name(col) if relation else f"{label}.{col}"
        return (found[0] if found else None), qualified

    return item, rel, column


def _write(run: Run, column: Column, name: str, value: Lin) -> None:
    dest, qualified = column(name)
    masked = bool(dest.masked) if dest is not None else run.masked_name(name)
    run.copied(value, qualified, masked)


def _returning(run: Run, node: Node, scope: Scope) -> Rel | None:
    clause = node.get("returningClause")
    exprs = (clause or {}).get("exprs") if isinstance(clause, dict) else None
    exprs = exprs or node.get("returningList")
    if not exprs:
        return None
    # PostgreSQL 18 names the old and new row versions OLD and NEW in RETURNING.
    target = scope.items[0]
    extra = [target.hidden() for _ in range(2)]
    extra[0].refname, extra[1].refname = "old", "new"
    extra = [e for e in extra if all(i.refname != e.refname for i in scope.items)]
    return run.targets(exprs, Scope(scope.items + extra, scope.parent, scope.ctes),
                       top=id(node) in run.top_nodes)


def dml(run: Run, ntype: str, node: Node, outer: Scope | None, ctes: Ctes | None) -> Rel | None:
    ctes = run.with_clause(node.get("withClause"), outer, ctes)
    item, rel, column = _target(run, node)
    scope = Scope([item], outer, ctes)
    if ntype == "InsertStmt":
        _insert(run, node, scope, rel, column)
    elif ntype == "MergeStmt":
        _merge(run, node, scope, rel, column)
    else:
        key = "fromClause" if ntype == "UpdateStmt" else "usingClause"
        for entry in node.get(key) or []:
            scope.items.extend(run.from_item(entry, scope, ctes, outer).items)
        if ntype == "UpdateStmt":
            _assign(run, node.get("targetList") or [], scope, column)
        run.predicate(node.get("whereClause"), scope, "WHERE")
    return _returning(run, node, scope)


class Statement(Run):
    """A :class:`Run` that also reads data-modifying statements nested in WITH."""

    def dml(self, ntype: str, node: Node, outer: Scope | None, ctes: Ctes | None) -> Rel:
        return dml(self, ntype, node, outer, ctes) or Rel([])


def _insert(run: Run, node: Node, scope: Scope, rel: Rel, column: Column) -> None:
    names = [str(unwrap(c)[1].get("name", "")) for c in node.get("cols") or []]
    if not names:
        names = [n for n, _ in rel.cols]
    stype, source = unwrap(node.get("selectStmt"))
    values = run.select(source, scope.parent, scope.ctes) if stype == "SelectStmt" else Rel([])
    inserted: dict[str, Lin] = {}
    for index, (_, lin) in enumerate(values.cols):
        if index < len(names):
            _write(run, column, names[index], lin)
            inserted[names[index]] = lin
        else:
            run.copied(lin, f"{scope.items[0].label} (a column not listed)", False)
    if values.open or (rel.open and len(values.cols) > len(names)):
        run.copied(values.rest, f"{scope.items[0].label} (a column not listed)", False)
    conflict = node.get("onConflictClause")
    if isinstance(conflict, dict):
        _on_conflict(run, conflict, scope, rel, column, inserted)


def _on_conflict(
    run: Run, clause: Node, scope: Scope, rel: Rel, column: Column, inserted: dict[str, Lin]
) -> None:
    infer = clause.get("infer") or {}
    for entry in infer.get("indexElems") or []:
        _, elem = unwrap(entry)
        if "name" in elem:
            run.violation(run.column([{"String": {"sval": elem["name"]}}], scope), "ON CONFLICT")
        run.predicate(elem.get("expr"), scope, "ON CONFLICT")
    run.predicate(infer.get("whereClause"), scope, "ON CONFLICT")
    # EXCLUDED is the row proposed for insertion: what was inserted, defaults elsewhere.
    proposed = [(n, inserted.get(n, NONE)) for n, _ in rel.cols]
    excluded = Item("excluded", Rel(proposed, rel.open, derive(list(inserted.values()))))
    inner = Scope([*scope.items, excluded], scope.parent, scope.ctes)
    _assign(run, clause.get("targetList") or [], inner, column)
    run.predicate(clause.get("whereClause"), inner, "ON CONFLICT ... WHERE")


def _assign(run: Run, targets: list[Any], scope: Scope, column: Column) -> None:
    """UPDATE/ON CONFLICT/MERGE SET lists: each value is written into its column."""
    sources: dict[int, Rel] = {}
    for entry in targets:
        _, target = unwrap(entry)
        vtype, value = unwrap(target.get("val"))
        if vtype == "MultiAssignRef":
            stype, source = unwrap(value.get("source"))
            index = int(value.get("colno", 1)) - 1
            if stype == "SubLink":
                key = id(source)
                if key not in sources:
                    _, sub = unwrap(source.get("subselect"))
                    sources[key] = run.select(sub, scope, scope.ctes)
                cols = sources[key].cols
                lin = derive([cols[index][1] if index < len(cols) else sources[key].rest])
            else:
                args = source.get("args") or []
                lin = run.expr(args[index], scope) if index < len(args) else OPAQUE
        else:
            lin = run.expr(target.get("val"), scope)
        indirection = target.get("indirection") or []
        if indirection:  # a[i] = v / comp.f = v: the column becomes a mix of old and new
            lin = derive([lin, *(run.expr(i, scope) for i in indirection)])
        _write(run, column, str(target.get("name", "")), lin)


def _merge(run: Run, node: Node, scope: Scope, rel: Rel, column: Column) -> None:
    source = run.from_item(node.get("sourceRelation"), Scope([], scope.parent, scope.ctes),
                           scope.ctes, scope.parent)  # fmt: skip
    scope.items.extend(source.items)
    run.predicate(node.get("joinCondition"), scope, "MERGE ... ON")
    for entry in node.get("mergeWhenClauses") or []:
        _, when = unwrap(entry)
        run.predicate(when.get("condition"), scope, "MERGE ... WHEN")
        if when.get("commandType") == "CMD_UPDATE":
            _assign(run, when.get("targetList") or [], scope, column)
        elif when.get("commandType") == "CMD_INSERT":
            names = [str(unwrap(t)[1].get("name", "")) for t in when.get("targetList") or []]
            names = names or [n for n, _ in rel.cols]
            for index, value in enumerate(when.get("values") or []):
                name = names[index] if index < len(names) else "?"
                _write(run, column, name, run.expr(value, scope))


# -- new tables and DDL ---------------------------------------------------------------------


def copy_into(run: Run, rel: Rel, into: Node, objtype: str = "OBJECT_TABLE") -> None:
    """CREATE TABLE AS / SELECT INTO: each output becomes a column of a new table."""
    if objtype == "OBJECT_MATVIEW" or into.get("skipData"):
        return  # a materialised view is read through its definition; NO DATA copies nothing
    target = into.get("rel") or {}
    table = functions.qualified_name(
        [p for p in (target.get("schemaname"), target.get("relname", "")) if p])  # fmt: skip
    names = strings(into.get("colNames"))
    for index, (name, lin) in enumerate(rel.cols):
        sure = index < len(names) or rel.sure[index]
        name = names[index] if index < len(names) else name
        run.copied(lin, f"{table}.{name}", sure and run.masked_name(name))
    run.copied(rel.rest, table, False)


def _table_scope(run: Run, relation_node: Any) -> Scope:
    """The columns of the table a DDL statement works on, for its expressions."""
    _, target = unwrap(relation_node)
    name = str(target.get("relname", ""))
    rel, relation = run.relation_rel(target.get("schemaname"), name)
    return Scope([Item(name, rel, label=relation.qualified if relation else name)], None, None)


def ddl(run: Run, ntype: str, node: Node) -> None:
    """DDL that reads column values now or later: constraints and unique indexes fail on the
    existing rows (an oracle), expressions can fail showing a value, policies filter rows."""
    if ntype == "RenameStmt" and node.get("renameType") == "OBJECT_COLUMN":
        # Globs name columns: a masked column renamed to a name no glob matches is unmasked.
        old, new = str(node.get("subname", "")), str(node.get("newname", ""))
        target = node.get("relation") or {}
        _, relation = run.relation_rel(target.get("schemaname"), str(target.get("relname", "")))
        if relation is not None and relation.kind in ("v", "m"):
            return  # a view column is masked by what it reads, whatever it is called
        if run.masked_name(old) and not run.masked_name(new):
            label = (
                relation.column_name(old)
                if relation
                else functions.qualified_name(
                    [p for p in (target.get("schemaname"), target.get("relname", ""), old) if p]
                )
            )
            run.violations[f"masked column {label} is renamed to {new}, which no masking "
                           "rule names"] = None  # fmt: skip
    elif ntype == "AlterTableStmt":
        scope = _table_scope(run, {"RangeVar": node.get("relation") or {}})
        for entry in node.get("cmds") or []:
            _, cmd = unwrap(entry)
            _alter_table_cmd(run, cmd, scope)
    elif ntype == "IndexStmt":
        scope = _table_scope(run, {"RangeVar": node.get("relation") or {}})
        for entry in [*(node.get("indexParams") or []), *(node.get("indexIncludingParams") or [])]:
            _, elem = unwrap(entry)
            run.predicate(elem.get("expr"), scope, "an index expression")
            if "name" in elem and node.get("unique"):
                run.violation(_named(run, elem["name"], scope), "a unique index")
        run.predicate(node.get("whereClause"), scope, "an index predicate")
    elif ntype in ("CreatePolicyStmt", "AlterPolicyStmt"):
        scope = _table_scope(run, {"RangeVar": node.get("table") or {}})
        for key in ("qual", "with_check"):
            run.predicate(node.get(key), scope, "a row security policy")
    elif ntype == "CreateStatsStmt":
        relations = node.get("relations") or []
        scope = _table_scope(run, relations[0]) if relations else Scope([], None, None)
        for entry in node.get("exprs") or []:
            _, elem = unwrap(entry)
            use = "extended statistics, which pg_stats_ext shows"
            run.predicate(elem.get("expr"), scope, use)
            if "name" in elem:
                run.violation(_named(run, elem["name"], scope), use)


def _named(run: Run, name: str, scope: Scope) -> Lin:
    return run.column([{"String": {"sval": name}}], scope)


def _alter_table_cmd(run: Run, cmd: Node, scope: Scope) -> None:
    subtype = cmd.get("subtype")
    dtype, definition = unwrap(cmd.get("def"))
    if subtype == "AT_AddColumn" and dtype == "ColumnDef":
        name = str(definition.get("colname", ""))
        for entry in definition.get("constraints") or []:
            _, constraint = unwrap(entry)
            value = run.expr(constraint.get("raw_expr"), scope)
            if constraint.get("contype") == "CONSTR_GENERATED":
                run.copied(value, f"{scope.items[0].label}.{name}", False)
            else:
                run.violation(value, "a constraint")
    elif subtype == "AT_AddConstraint" and dtype == "Constraint":
        run.predicate(definition.get("raw_expr"), scope, "a constraint")
        for key in ("keys", "fk_attrs", "including"):
            for name in strings(definition.get(key)):
                run.violation(_named(run, name, scope), "a constraint")
        for exclusion in definition.get("exclusions") or []:
            _, pair = unwrap(exclusion)
            for item in pair.get("items") or []:
                itype, elem = unwrap(item)
                if itype == "IndexElem":
                    run.predicate(elem.get("expr"), scope, "a constraint")
                    if "name" in elem:
                        run.violation(_named(run, elem["name"], scope), "a constraint")
    elif subtype == "AT_AlterColumnType" and dtype == "ColumnDef":
        run.predicate(definition.get("raw_default"), scope, "ALTER COLUMN ... TYPE ... USING")
    elif subtype == "AT_SetExpression":
        name = str(cmd.get("name", ""))
        value = run.expr(cmd.get("def"), scope)
        run.copied(value, f"{scope.items[0].label}.{name}", run.masked_name(name))


#: Relation kinds a rename can give a name that shadows a permanent relation from pg_temp.
_RENAMED_RELATIONS = frozenset(("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_SEQUENCE",
                                "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE"))  # fmt: skip


def temp_objects(ntype: str, node: Node, temp_relations: Container[str]
                 ) -> tuple[tuple[str, str], ...]:  # fmt: skip
    """The objects this statement may create in the session's own ``pg_temp`` schema, as
    ``("relation", name)`` or ``("type", name)``. The catalog connection cannot see them, and
    PostgreSQL searches ``pg_temp`` first for relations and types: such a name may shadow a
    table or a builtin type the catalog connection describes. When unsure, it says yes (a name
    counted as temporary only masks more)."""
    def temp(rangevar: Any) -> str | None:
        if not isinstance(rangevar, dict):
            return None
        name = str(rangevar.get("relname", ""))
        schema = rangevar.get("schemaname")
        if rangevar.get("relpersistence") == "t" or schema == "pg_temp":
            return name
        return None

    def temp_type(names: list[str]) -> str | None:
        return names[-1] if len(names) == 2 and names[0] == "pg_temp" else None

    found: list[tuple[str, str]] = []
    if ntype == "CreateStmt" or ntype == "CreateForeignTableStmt":
        name = temp(node.get("relation") or (node.get("base") or {}).get("relation"))
        found += [("relation", name)] if name else []
    elif ntype == "CreateTableAsStmt":
        name = temp((node.get("into") or {}).get("rel"))
        found += [("relation", name)] if name else []
    elif ntype == "SelectStmt" and isinstance(node.get("intoClause"), dict):
        name = temp(node["intoClause"].get("rel"))
        found += [("relation", name)] if name else []
    elif ntype == "CreateSeqStmt":
        name = temp(node.get("sequence"))
        found += [("relation", name)] if name else []
    elif ntype == "ViewStmt":
        view = node.get("view") or {}
        name = temp(view)
        if name is None and view.get("schemaname") is None and temp_relations:
            # A view over a temporary relation is made temporary by the server (with a notice).
            name = str(view.get("relname", ""))
        found += [("relation", name)] if name else []
    elif ntype == "RenameStmt":
        target = node.get("relation")
        if node.get("renameType") in _RENAMED_RELATIONS and isinstance(target, dict):
            old = str(target.get("relname", ""))
            if target.get("schemaname") == "pg_temp" or (
                    target.get("schemaname") is None and old in temp_relations):
                found.append(("relation", str(node.get("newname", ""))))
        elif node.get("renameType") in ("OBJECT_TYPE", "OBJECT_DOMAIN"):
            names = node.get("object")
            names = names.get("List", {}).get("items") if isinstance(names, dict) else names
            if temp_type(strings(names)) is not None:
                found.append(("type", str(node.get("newname", ""))))
    elif ntype == "CompositeTypeStmt":
        name = temp(node.get("typevar"))
        found += [("type", name)] if name else []
    elif ntype in ("CreateEnumStmt", "CreateRangeStmt"):
        name = temp_type(strings(node.get("typeName")))
        found += [("type", name)] if name else []
    elif ntype == "CreateDomainStmt":
        name = temp_type(strings(node.get("domainname")))
        found += [("type", name)] if name else []
    elif ntype == "DefineStmt" and node.get("kind") == "OBJECT_TYPE":
        name = temp_type(strings(node.get("defnames")))
        found += [("type", name)] if name else []
    return tuple(found)
