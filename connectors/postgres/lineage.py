"""Where masked columns flow: a masked column may be shown, never computed with.

Masking rewrites result values by column name and by content. A query can defeat both by deriving
a value from a masked column (``reverse(card)``, ``substr(card,1,8)||...``), by renaming it
(``card AS x``), by probing it (``WHERE card LIKE '4111%'``, ``ORDER BY card``), or by copying it
somewhere whose name is not masked (``INSERT INTO t SELECT card ...``). HOSTILE H.46/H.47.

The rule enforced here: a column whose name matches ``[masking] columns`` may appear only as a
plain, un-renamed output column of the statement the client reads (the top-level SELECT list or
a RETURNING list), where the masker sees it by name. Any other reference to it is reported, and
the relay denies the statement.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pglast.parser

_MAX_SQL = 1 << 20
_MAX_NODES = 200_000


def _column_name(node: dict[str, Any]) -> str | None:
    fields = node.get("fields") or []
    last = fields[-1] if fields else None
    if isinstance(last, dict) and "String" in last:
        return str(last["String"].get("sval", ""))
    return None  # A_Star: t.* keeps the real names, which the masker sees


def _plain_outputs(stmt: dict[str, Any]) -> set[int]:
    """ids of the ColumnRef nodes that are plain, un-renamed output columns of a top-level
    statement."""
    outputs: list[Any] = []
    if "SelectStmt" in stmt:
        select = stmt["SelectStmt"]
        if select.get("op", "SETOP_NONE") == "SETOP_NONE" and "intoClause" not in select:
            outputs = select.get("targetList") or []
    else:
        for kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
            if kind in stmt:
                body = stmt[kind]
                # PostgreSQL 18 wraps RETURNING in a clause (for OLD/NEW); older trees list it.
                clause = body.get("returningClause")
                outputs = (clause or {}).get("exprs") or body.get("returningList") or []
    plain: set[int] = set()
    for entry in outputs:
        target = entry.get("ResTarget", {}) if isinstance(entry, dict) else {}
        value = target.get("val", {})
        ref = value.get("ColumnRef") if isinstance(value, dict) else None
        if ref is None:
            continue
        name = _column_name(ref)
        alias = target.get("name")
        if alias is None or alias == name:
            plain.add(id(ref))
    return plain


def masked_column_uses(sql: str, is_masked: Callable[[str], bool]) -> list[str]:
    """Names of masked columns the statements in ``sql`` use other than as plain output."""
    return list(_uses(sql, is_masked))


@functools.lru_cache(maxsize=4096)
def _uses(sql: str, is_masked: Callable[[str], bool]) -> tuple[str, ...]:
    if len(sql) > _MAX_SQL:
        return ()
    try:
        tree = json.loads(pglast.parser.parse_sql_json(sql))
    except (pglast.parser.ParseError, ValueError, RecursionError):
        # unparseable or too deep: the classifier already made it "unknown"
        return ()
    found: list[str] = []
    for raw in tree.get("stmts", []):
        stmt = raw.get("stmt", {})
        plain = _plain_outputs(stmt)
        stack: list[Any] = [stmt]
        seen = 0
        while stack:
            node = stack.pop()
            seen += 1
            if seen > _MAX_NODES:
                return ("<statement too large to check>",)
            if isinstance(node, dict):
                ref = node.get("ColumnRef")
                if isinstance(ref, dict):
                    name = _column_name(ref)
                    if name is not None and id(ref) not in plain and is_masked(name) and name not in found:
                        found.append(name)
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return tuple(found)
