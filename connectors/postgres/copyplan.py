"""How a ``COPY ... TO STDOUT`` statement's rows are masked, decided when it is judged.

Its options (format, delimiter, quoting) come from the statement; which columns hide whole, and
their types, from its lineage (``COPY t`` is every column of ``t``, ``COPY (query)`` the query's
outputs). The relay builds the masker from this plan when the server starts sending rows.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import pglast.parser

from gateway.model import Command

from .copydata import CopyOptions, UnsupportedCopy


@dataclass(frozen=True)
class CopyPlan:
    options: CopyOptions
    types: tuple[int, ...]  # per column, 0 where lineage gives no type (masked as opaque)
    masks: tuple[bool, ...]  # per column: hide it whole
    rest_masked: bool = True  # columns past those: hidden (the plan does not describe them)


@functools.lru_cache(maxsize=256)
def _copy_node(text: str) -> dict[str, Any] | None:
    try:
        tree = json.loads(pglast.parser.parse_sql_json(text))
    except (pglast.parser.ParseError, ValueError, RecursionError):
        return None
    statements = tree.get("stmts") or []
    node = statements[0].get("stmt") if len(statements) == 1 else None
    return node if isinstance(node, dict) and "CopyStmt" in node else None


def copy_plan(command: Command, lineage: Any) -> CopyPlan | str | None:
    """The plan for a COPY TO STDOUT ``command``; a str says why it cannot be masked (the
    statement is refused); None: not such a statement, or no lineage (masked line by line)."""
    if "copy_to_stdout" not in command.flags:
        return None
    node = _copy_node(command.text)
    if node is None:
        return "wardgate could not read this COPY statement's options"
    try:
        options = CopyOptions.from_statement(node)
    except UnsupportedCopy as exc:
        return str(exc)
    if options.encoding is not None and options.encoding.replace("-", "").lower() != "utf8":
        return ("COPY ... ENCODING is not supported through wardgate (it converts the client's "
                "encoding itself); leave the option out")
    if lineage is None:
        return None
    outputs = lineage.outputs or ()
    types = tuple(o.origin.type_oid if o.origin is not None else 0 for o in outputs)
    masks = tuple(lineage.masks(i) for i in range(len(outputs)))
    return CopyPlan(options, types, masks, lineage.rest_masked)
