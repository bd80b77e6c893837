"""Turn PostgreSQL SQL text into :class:`~gateway.model.Command` values the policy can judge.

The parser is PostgreSQL's own (libpg_query through pglast), so statement splitting, quoting,
dollar quotes and nested comments are decided as the server decides them (HOSTILE G.38). We ask
for the JSON parse tree and walk plain dicts with an explicit stack: on pglast 8 ``parse_sql_json``
+ ``json.loads`` costs ~12 us for a pgbench SELECT where ``parse_sql`` (building pglast node
objects) costs ~85 us, and an explicit stack cannot overflow Python's. Results are cached.

The scheme, for rule writers:

* **kinds** name the statement as SQL does, lowercase. CREATE/ALTER/DROP carry the generic verb and
  a specific kind (``{"drop", "drop_table"}``, ``{"create", "create_index"}``, ``{"alter",
  "alter_role"}``); SET/RESET add ``set_role``, ``set_session_authorization``, ``set_transaction``.
  Statements that run another one (PREPARE, DECLARE, EXPLAIN ANALYZE, CREATE TABLE AS,
  COPY (query), CREATE SCHEMA's elements) also carry the inner statement's kinds.
* **categories**: READ only when nothing else applies; any other effect found anywhere in the
  statement replaces it (``SELECT nextval('s')`` is WRITE, not READ+WRITE).
* **objects**: ``schema.table`` or ``table`` as the server folds them (a part holding a dot or a
  quote is re-quoted, so names stay unambiguous); ``function:<name>`` for each call that is a side
  effect or unknown; ``operator:<name>`` for each operator that is not a builtin one;
  ``prepared:<name>`` for PREPARE, EXECUTE and DEALLOCATE.
* **flags**: no_where, writable_cte, locking, into, side_effect_function, unknown_function,
  user_operator, dynamic_sql, large_object, server_file, replication, explain_analyze,
  copy_program, copy_file, copy_to_stdout (the relay must mask CopyData), copy_from_stdin,
  execute_prepared, search_path, lexer_setting, sensitive_setting, read_write, multi_statement;
  parse_error with too_large, too_deep or nul_character; classifier_error.
* **PREPARE/EXECUTE**: ``PREPARE p AS <stmt>`` is classified as ``<stmt>`` plus kind ``prepare``.
  ``EXECUTE p`` alone is UNKNOWN with flag ``execute_prepared`` and object ``prepared:p``; a caller
  that remembers what each name was prepared as resolves it with :func:`classify_with_prepared`
  or :func:`resolve_execute`.

Not seen here: code that runs implicitly (triggers, rules, views, RLS policies, column defaults,
casts, type I/O functions, builtin operator symbols overloaded for user types), builtins shadowed
by a user overload in ``search_path`` (flagged ``search_path`` when the path changes), and column
lineage for masking: ``SELECT reverse(card)`` is a plain READ here; masking what is derived from
a masked column is the masking engine's job.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pglast.ast
from pglast import parser as pg_parser

from connectors.postgres import functions
from gateway.model import Aspect, Category, Command

PROTOCOL = "postgres"
# As large as the largest message a client may send ([limits] max_message_bytes' default): a
# statement inlining a large value (psycopg2 does) is mostly one literal, whose tree is small.
MAX_SQL_CHARS = 16 << 20  # longer text is "too_large"
MAX_TREE_CHARS = 32 << 20  # JSON tree, 10-30x the SQL of dense code; decode+walk ~0.15 s/MiB
MAX_CACHED_SQL_CHARS = 16 << 10  # caps the cache near CACHE_SIZE x 16 KiB; longer: one-offs
CACHE_SIZE = 4096

_R, _W, _DDL, _DCL = Category.READ, Category.WRITE, Category.DDL, Category.DCL
_ADM, _TX, _SES, _UNK = Category.ADMIN, Category.TRANSACTION, Category.SESSION, Category.UNKNOWN

Node = dict[str, Any]
# A CTE scope: (name -> position in its WITH, names before this position are visible, outer scope).
# Chained rather than copied, so a WITH of n CTEs costs O(n), not O(n^2).
_Scope = tuple[dict[str, int], int, "_Scope | None"]
_Entry = tuple[str, Node, int, "_Scope | None"]  # node type, node, deferred, CTEs in scope


def _typed_fields() -> dict[str, dict[str, str]]:
    """Per node type, the fields whose C type is one concrete node type.

    libpg_query's JSON wraps a child as ``{"Type": {...}}`` only where the C field is a generic
    ``Node *`` or a list; a field declared e.g. ``RangeVar *relation`` holds the bare dict. The
    walker needs this table, read from pglast's own metadata, to know what a bare dict is.
    """
    table: dict[str, dict[str, str]] = {}
    for name in dir(pglast.ast):
        cls = getattr(pglast.ast, name)
        slots = getattr(cls, "__slots__", None)
        if not isinstance(cls, type) or not isinstance(slots, dict):
            continue
        fields = {}
        for field, info in slots.items():
            base = getattr(info, "c_type", "").removesuffix("*")
            if base not in ("Node", "List", "Expr", "char") and hasattr(pglast.ast, base):
                fields[field] = base
        if fields:
            table[name] = fields
    return table


def _pairs(text: str) -> dict[str, str]:
    """``"a=b c=d"`` -> ``{"a": "b", "c": "d"}``: compact tables of names."""
    return dict(entry.split("=", 1) for entry in text.split())


def _table(
    groups: dict[tuple[Category, ...], str],
) -> dict[str, tuple[tuple[str, ...], tuple[Category, ...]]]:
    """``{categories: "NodeType=kind ..."}`` -> ``{NodeType: (kinds, categories)}``.

    A ``create_``/``alter_``/``drop_`` kind also gets its bare verb.
    """
    table: dict[str, tuple[tuple[str, ...], tuple[Category, ...]]] = {}
    for categories, text in groups.items():
        for ntype, kind in _pairs(text).items():
            verb = kind.split("_", 1)[0]
            kinds = (verb, kind) if verb in ("create", "alter", "drop") else (kind,)
            table[ntype] = (kinds, categories)
    return table


_TYPED_FIELDS = _typed_fields()
# Statements whose classification does not depend on their content (beyond what the walk finds).
_FIXED = _table({
    (_W,): "TruncateStmt=truncate LockStmt=lock"
    " NotifyStmt=notify",  # NOTIFY wakes other sessions' listeners: it has an effect
    # LISTEN receives other sessions' notification payloads (masked like any value): a read.
    (_R,): "ListenStmt=listen",
    (_SES,): "UnlistenStmt=unlisten",
    (_TX,): "ConstraintsSetStmt=set_constraints",
    (_ADM,): "CheckPointStmt=checkpoint LoadStmt=load AlterSystemStmt=alter_system",
    (_UNK,): "DoStmt=do CallStmt=call",  # a procedure may do anything, even COMMIT
    (_DCL,): """
        CreateRoleStmt=create_role AlterRoleStmt=alter_role AlterRoleSetStmt=alter_role
        DropRoleStmt=drop_role ReassignOwnedStmt=reassign_owned
        AlterDefaultPrivilegesStmt=alter_default_privileges""",
    (_DDL, _DCL): "DropOwnedStmt=drop_owned CreatePolicyStmt=create_policy"
    " AlterPolicyStmt=alter_policy",  # row-level security policies are access control
    # Superuser territory: server code, the file system, outbound connections.
    (_DDL, _ADM): """
        CreateExtensionStmt=create_extension AlterExtensionStmt=alter_extension
        AlterExtensionContentsStmt=alter_extension CreatePLangStmt=create_language
        CreateEventTrigStmt=create_event_trigger AlterEventTrigStmt=alter_event_trigger
        CreateSubscriptionStmt=create_subscription AlterSubscriptionStmt=alter_subscription
        DropSubscriptionStmt=drop_subscription CreateTableSpaceStmt=create_tablespace
        DropTableSpaceStmt=drop_tablespace AlterTableSpaceOptionsStmt=alter_tablespace
        AlterTableMoveAllStmt=alter_table""",
    (_DDL,): """
        SecLabelStmt=security_label ClusterStmt=cluster ReindexStmt=reindex
        RefreshMatViewStmt=refresh_materialized_view ImportForeignSchemaStmt=import_foreign_schema
        CreateStmt=create_table CreateForeignTableStmt=create_foreign_table IndexStmt=create_index
        ViewStmt=create_view CreateSeqStmt=create_sequence CreateDomainStmt=create_domain
        CompositeTypeStmt=create_type CreateEnumStmt=create_type CreateRangeStmt=create_type
        CreateTrigStmt=create_trigger RuleStmt=create_rule CreateCastStmt=create_cast
        CreateConversionStmt=create_conversion CreateOpClassStmt=create_operator_class
        CreateOpFamilyStmt=create_operator_family CreateAmStmt=create_access_method
        CreateStatsStmt=create_statistics CreateTransformStmt=create_transform
        CreatePublicationStmt=create_publication CreatedbStmt=create_database
        CreateUserMappingStmt=create_user_mapping CreateFdwStmt=create_foreign_data_wrapper
        CreateForeignServerStmt=create_server AlterSeqStmt=alter_sequence AlterEnumStmt=alter_type
        AlterTypeStmt=alter_type AlterDomainStmt=alter_domain AlterCollationStmt=alter_collation
        AlterDatabaseStmt=alter_database AlterDatabaseSetStmt=alter_database
        AlterDatabaseRefreshCollStmt=alter_database AlterOpFamilyStmt=alter_operator_family
        AlterOperatorStmt=alter_operator AlterStatsStmt=alter_statistics
        AlterPublicationStmt=alter_publication AlterUserMappingStmt=alter_user_mapping
        AlterTSConfigurationStmt=alter_text_search_configuration
        AlterTSDictionaryStmt=alter_text_search_dictionary AlterFdwStmt=alter_foreign_data_wrapper
        AlterForeignServerStmt=alter_server DropUserMappingStmt=drop_user_mapping
        DropdbStmt=drop_database""",
})  # fmt: skip
_FIXED_FLAGS = {"DoStmt": "dynamic_sql", "LockStmt": "locking"}
# Nodes with nothing below them that can name a table or call a function.
_LEAVES = frozenset((
    "String", "Integer", "Float", "Boolean", "BitString", "A_Const", "ParamRef", "A_Star",
    "ColumnRef", "SQLValueFunction", "Alias", "RoleSpec", "AccessPriv",
))  # fmt: skip
_DML = frozenset(("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"))
_NESTED_KINDS = {
    "InsertStmt": "insert", "UpdateStmt": "update", "DeleteStmt": "delete", "MergeStmt": "merge",
    "NotifyStmt": "notify",
}  # fmt: skip
_OPERATOR_FIELDS = {"A_Expr": "name", "SortBy": "useOp", "SubLink": "operName"}
# Subtrees stored to run later (function bodies, view and rule definitions, policy expressions,
# column defaults) rather than now: they name objects but add no effect to this statement.
_DEFERRED_FIELDS = {
    ntype: frozenset(fields.split(","))
    for ntype, fields in _pairs("""
        CreateFunctionStmt=sql_body,parameters RuleStmt=actions,whereClause ViewStmt=query
        CreatePolicyStmt=qual,with_check AlterPolicyStmt=qual,with_check CreateTrigStmt=whenClause
        CreateStmt=tableElts CreateDomainStmt=constraints""").items()
}
_RELATION_TYPES = frozenset((
    "OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_INDEX", "OBJECT_SEQUENCE",
    "OBJECT_FOREIGN_TABLE",
))  # fmt: skip
_ROUTINE_TYPES = frozenset(
    ("OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE", "OBJECT_AGGREGATE")
)
_OBJECT_NAMES = _pairs("""
    MATVIEW=materialized_view FDW=foreign_data_wrapper FOREIGN_SERVER=server LARGEOBJECT=large_object
    TSCONFIGURATION=text_search_configuration TSDICTIONARY=text_search_dictionary
    TSPARSER=text_search_parser TSTEMPLATE=text_search_template OPCLASS=operator_class
    OPFAMILY=operator_family AMOP=operator_family AMPROC=operator_family STATISTIC_EXT=statistics
    TABCONSTRAINT=constraint DOMCONSTRAINT=domain_constraint DEFACL=default_privileges
    PUBLICATION_NAMESPACE=publication PUBLICATION_REL=publication PARAMETER_ACL=parameter""")
_TRANSACTION_KINDS = {  # the others are named by their enum: TRANS_STMT_COMMIT -> commit
    "TRANS_STMT_START": ("begin", "start_transaction"),
    "TRANS_STMT_PREPARE": ("prepare_transaction",),
    "TRANS_STMT_ROLLBACK_TO": ("rollback", "rollback_to_savepoint"),
}
_FALSE_WORDS = frozenset(("false", "off", "no", "0"))
_ACCESS_CMDS = frozenset((
    "AT_ChangeOwner", "AT_EnableRowSecurity", "AT_DisableRowSecurity", "AT_ForceRowSecurity",
    "AT_NoForceRowSecurity", "AT_DisableTrigAll", "AT_DisableTrigUser", "AT_DisableTrig",
))  # fmt: skip


class _Facts:
    """What one statement was found to be, accumulated while walking it."""

    __slots__ = ("aspects", "categories", "flags", "kinds", "objects")

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.categories: set[Category] = set()
        self.objects: set[str] = set()
        self.flags: set[str] = set()
        self.aspects: set[Aspect] = set()

    def add(self, kinds: Iterable[str], *categories: Category) -> None:
        """Kinds of this statement, each in each of ``categories``."""
        kinds = tuple(kinds)
        self.kinds.update(kinds)
        self.categories.update(categories)
        self.aspects.update(Aspect(k, c) for k in kinds for c in categories)

    def effect(self, name: str, category: Category, what: str) -> None:
        """A category caused by something that is not a kind (a function call, an operator)."""
        self.categories.add(category)
        self.aspects.add(Aspect(name, category, what))

    def command(self, text: str) -> Command:
        categories = self.categories
        if _R in categories and len(categories) > 1:
            categories = categories - {_R}  # READ means "nothing but reading"
        kinds, objects, flags = (
            frozenset(self.kinds),
            frozenset(self.objects),
            frozenset(self.flags),
        )
        return Command(PROTOCOL, text, kinds, frozenset(categories), objects, flags,
                       aspects=frozenset(self.aspects))


def _object_name(kind: Any) -> str:
    """``OBJECT_MATVIEW`` -> ``materialized_view``: the name SQL uses for the object type."""
    short = str(kind).removeprefix("OBJECT_")
    return _OBJECT_NAMES.get(short, short.lower())


def _strings(items: Any) -> list[str]:
    """The svals of a list of ``String`` nodes: how the parse tree spells names."""
    out = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("String"), dict):
            out.append(str(item["String"].get("sval", "")))
    return out


def _unwrap(wrapped: Any) -> tuple[str, Node] | None:
    if isinstance(wrapped, dict) and len(wrapped) == 1:
        ((ntype, node),) = wrapped.items()
        if isinstance(node, dict):
            return ntype, node
    return None


def _setting(name: str, value: str | None, facts: _Facts, *, kind: str = "set") -> None:
    effect = functions.setting_effect(name, value)
    if effect is not None:
        facts.flags.update(effect.flags)
        setting_kind = _setting_kind(name, effect, kind)
        for category in effect.categories:
            facts.kinds.add(setting_kind)
            facts.effect(setting_kind, category, f"{kind} {name} {effect.what}")


def _setting_kind(name: str, effect: functions.FunctionEffect, verb: str) -> str:
    """The kind a rule names to allow this setting: ``set_role``, ``set_lexer_setting``, ..."""
    name = name.lower()
    if functions.is_role_setting(name):
        return f"{verb}_{name}"
    return f"{verb}_" + next(iter(sorted(effect.flags - {"side_effect_function"})), "setting")


def _function_call(node: Node, deferred: int, facts: _Facts) -> None:
    found = functions.call_effect(_strings(node.get("funcname")), node.get("args") or [])
    if found is None:  # a pure builtin
        return
    name, effect = found
    facts.objects.add("function:" + name)
    if deferred:
        return
    if effect is None:
        facts.effect("function:" + name, _UNK, f'"{name}" is a function wardgate does not know')
        facts.flags.add("unknown_function")
    else:
        for category in effect.categories:
            facts.effect("function:" + name, category, f'"{name}" {effect.what}')
        facts.flags.update(effect.flags)


# deferred: how a subtree runs. NOW: as part of this statement. STORED: kept to run later (a rule's
# actions, a function body, a view): its statements' kinds count, its calls' effects do not.
# PLANNED: only planned (EXPLAIN without ANALYZE): it names objects and adds nothing else.
_NOW, _STORED, _PLANNED = 0, 1, 2


def _walk(ntype: str, root: Node, facts: _Facts, deferred: int = _NOW) -> None:
    """Visit every node under ``root`` with an explicit stack, collecting objects and effects."""
    stack: list[_Entry] = [(ntype, root, deferred, None)]
    push = stack.append
    while stack:
        ntype, node, deferred, ctes = stack.pop()
        if ntype in _LEAVES:
            continue
        if ntype == "RangeVar":
            relname = node.get("relname", "")
            # An unqualified name bound by an enclosing WITH is that CTE, not a table.
            if "schemaname" in node or not _is_cte(relname, ctes):
                parts = [node[k] for k in ("catalogname", "schemaname") if k in node]
                facts.objects.add(functions.qualified_name([*parts, relname]))
                if relname in functions.OTHER_SESSIONS_RELATIONS and not deferred:
                    # Every session reaches the target as one database user: these show the
                    # statements of every other identity's sessions.
                    facts.effect("reads_other_sessions", _ADM,
                                 f"{relname} shows other sessions' statements")
            continue
        if ntype == "FuncCall":
            _function_call(node, deferred, facts)
        elif ntype in _OPERATOR_FIELDS:  # a user-defined operator runs its function
            operator = _strings(node.get(_OPERATOR_FIELDS[ntype]))
            if operator and not functions.is_builtin_operator(operator):
                name = functions.qualified_name(operator)
                facts.objects.add("operator:" + name)
                if not deferred:
                    facts.effect("operator:" + name, _UNK, f"operator {name} is user-defined")
                    facts.flags.add("user_operator")
        elif ntype in _NESTED_KINDS and node is not root and deferred != _PLANNED:
            # A data-modifying statement inside another (WITH d AS (DELETE ...), a rule's
            # actions, a BEGIN ATOMIC body) is that statement too: rules on its kind apply.
            facts.add([_NESTED_KINDS[ntype], *_actions(node)], _W)
            facts.flags.add("writable_cte" if not deferred else "stored_dml")
            if ntype in ("UpdateStmt", "DeleteStmt") and "whereClause" not in node:
                facts.flags.add("no_where")
            if ntype != "NotifyStmt" and _targets_pg_settings(node):
                _settings_table_write(facts)
        elif ntype == "SelectStmt" and not deferred:
            if "lockingClause" in node:
                facts.add(["select_for_update"], _W)
                facts.flags.add("locking")
            if "intoClause" in node:
                facts.add(["select_into", "create", "create_table"], _W, _DDL)
                facts.flags.add("into")
        elif ntype == "VariableSetStmt" and node is not root:
            # ALTER DATABASE/ROLE/FUNCTION ... SET x = y: not this session, but the next ones
            # (or the function's calls) read strings as it says: flag it like SET.
            stored: str | None = None
            if node.get("kind") == "VAR_SET_VALUE":
                stored = functions.const_text((node.get("args") or [None])[0]) or "?"
            effect = functions.setting_effect(str(node.get("name", "")), stored)
            if effect is not None:
                facts.flags.update(effect.flags - {"role_change"})
        deferred_fields = _DEFERRED_FIELDS.get(ntype)
        typed = _TYPED_FIELDS.get(ntype)
        with_clause = node.get("withClause")
        if isinstance(with_clause, dict):
            ctes = _push_ctes(with_clause, stack, deferred, ctes)
        for key, value in node.items():
            vtype = type(value)
            if (vtype is not dict and vtype is not list) or value is with_clause:
                continue
            child_deferred = deferred
            if not deferred and deferred_fields is not None and key in deferred_fields:
                child_deferred = _STORED
            # A statement's target (or SELECT INTO's new table) is a real table, never a CTE.
            child_ctes = None if key == "relation" or key == "rel" else ctes
            if vtype is dict:
                child_type = typed.get(key) if typed is not None else None
                if child_type is not None:
                    push((child_type, value, child_deferred, child_ctes))
                    continue
                value = (value,)
            for item in value:
                if type(item) is not dict:
                    continue
                if len(item) == 1:  # {"NodeType": {...}}: a wrapped node
                    ((child_type, child),) = item.items()
                    if type(child) is dict and child_type[:1].isupper():
                        push((child_type, child, child_deferred, child_ctes))
                        continue
                push(("?", item, child_deferred, child_ctes))  # unnamed: still look inside


def _is_cte(name: str, scope: _Scope | None) -> bool:
    while scope is not None:
        names, visible, scope = scope
        position = names.get(name)
        if position is not None and position < visible:
            return True
    return False


def _push_ctes(
    with_clause: Node, stack: list[_Entry], deferred: int, outer: _Scope | None
) -> _Scope:
    """Push each CTE body with the names it can see; return the scope the main query sees."""
    entries = [
        e["CommonTableExpr"] for e in with_clause.get("ctes") or () if "CommonTableExpr" in e
    ]
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        names.setdefault(str(entry.get("ctename", "")), index)
    recursive = bool(with_clause.get("recursive"))
    for index, entry in enumerate(entries):
        # Without RECURSIVE a CTE body sees only earlier CTEs: its own name there is a table.
        visible = (names, len(entries) if recursive else index, outer)
        pair = _unwrap(entry.get("ctequery"))
        if pair is not None:
            stack.append((pair[0], pair[1], deferred, visible))
        for key in ("search_clause", "cycle_clause"):
            if isinstance(entry.get(key), dict):
                stack.append(("?", entry[key], deferred, visible))
    return (names, len(entries), outer)


def _statement(ntype: str, node: Node, facts: _Facts) -> None:
    """Add one statement's kinds and categories to ``facts`` and walk what it runs."""
    handler = _HANDLERS.get(ntype)
    if handler is not None:
        handler(ntype, node, facts)
        return
    fixed = _FIXED.get(ntype)
    if fixed is not None:
        facts.add(fixed[0], *fixed[1])
        if ntype in _FIXED_FLAGS:
            facts.flags.add(_FIXED_FLAGS[ntype])
    else:  # a statement this module does not know: fail closed
        facts.add(["".join("_" + c.lower() if c.isupper() else c for c in ntype)[1:]], _UNK)
    _walk(ntype, node, facts)


def _nested(wrapped: Any, facts: _Facts) -> None:
    """Classify a statement that another one runs (PREPARE, COPY (...), DECLARE, ...)."""
    pair = _unwrap(wrapped)
    if pair is None:
        facts.add(["unparseable"], _UNK)
    else:
        _statement(pair[0], pair[1], facts)


def _select(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["select"], _R)
    _walk(ntype, node, facts)  # SELECT INTO and FOR UPDATE are found by the walk


def _update_delete(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add([ntype.removesuffix("Stmt").lower()], _W)
    if "whereClause" not in node:
        facts.flags.add("no_where")
    if _targets_pg_settings(node):
        _settings_table_write(facts)
    _walk(ntype, node, facts)


def _insert_merge(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add([ntype.removesuffix("Stmt").lower(), *_actions(node)], _W)
    if _targets_pg_settings(node):
        _settings_table_write(facts)
    _walk(ntype, node, facts)


_MERGE_ACTIONS = {"CMD_UPDATE": "update", "CMD_DELETE": "delete", "CMD_INSERT": "insert"}


def _actions(node: Node) -> tuple[str, ...]:
    """What an INSERT or MERGE also does to existing rows: ``INSERT ... ON CONFLICT DO UPDATE``
    updates, ``MERGE ... WHEN MATCHED THEN DELETE`` deletes; rules on those kinds apply."""
    found: list[str] = []
    conflict = node.get("onConflictClause")
    if isinstance(conflict, dict) and conflict.get("action") == "ONCONFLICT_UPDATE":
        found.append("update")
    for clause in node.get("mergeWhenClauses") or ():
        action = _MERGE_ACTIONS.get(str((clause.get("MergeWhenClause") or {}).get("commandType")))
        if action is not None:
            found.append(action)
    return tuple(found)


def _targets_pg_settings(node: Node) -> bool:
    relation = node.get("relation")
    if not isinstance(relation, dict):
        return False
    schema = relation.get("schemaname")
    return relation.get("relname") == "pg_settings" and schema in (None, "pg_catalog")


def _settings_table_write(facts: _Facts) -> None:
    """``UPDATE pg_settings SET setting = ...`` is ``set_config`` on whatever rows match: the
    names are data, so it may change any setting (role, client_encoding, ...)."""
    effect = functions.UNKNOWN_SETTING
    facts.flags.update(effect.flags)
    facts.kinds.add("update_pg_settings")
    for category in effect.categories:
        facts.effect("update_pg_settings", category, f"writing pg_settings {effect.what}")


def _copy(ntype: str, node: Node, facts: _Facts) -> None:
    is_from = bool(node.get("is_from"))
    kinds = ("copy", "copy_from" if is_from else "copy_to")
    if "filename" in node or node.get("is_program"):
        # The server's file system, or a shell command as the server's OS user.
        source = "copy_program" if node.get("is_program") else "copy_file"
        facts.add((*kinds, source), _ADM, _W)
        facts.flags.add(source)
    elif is_from:
        facts.add(kinds, _W)
        facts.flags.add("copy_from_stdin")
    else:
        facts.add(kinds, _R)
        facts.flags.add("copy_to_stdout")  # rows leave as CopyData: the relay must mask them
    if "query" in node:
        _nested(node["query"], facts)
    _walk(ntype, {k: v for k, v in node.items() if k != "query"}, facts)


def _explain(ntype: str, node: Node, facts: _Facts) -> None:
    facts.kinds.add("explain")
    analyze = False
    for option in node.get("options") or ():
        elem = option.get("DefElem", {}) if isinstance(option, dict) else {}
        if str(elem.get("defname", "")).lower() != "analyze":
            continue
        arg = _unwrap(elem.get("arg")) or ("String", {})  # a bare ANALYZE means true
        if arg[0] == "Boolean":
            value: object = arg[1].get("boolval", False)
        else:  # JSON omits a zero ival; a value we cannot read counts as true (fails closed)
            value = arg[1].get("ival", 0) if arg[0] == "Integer" else arg[1].get("sval", "true")
        analyze = analyze or str(value).lower() not in _FALSE_WORDS
    if analyze:
        facts.flags.add("explain_analyze")  # ANALYZE runs the statement for real
        _nested(node.get("query"), facts)
        return
    facts.add(["explain"], _R)
    pair = _unwrap(node.get("query"))
    if pair is not None:  # only planned: name its objects, add none of its effects
        _walk(pair[0], pair[1], facts, deferred=_PLANNED)


def _prepare(ntype: str, node: Node, facts: _Facts) -> None:
    facts.kinds.add("prepare")  # judged as what it prepares
    facts.objects.add("prepared:" + str(node.get("name", "")))
    _nested(node.get("query"), facts)
    _walk(ntype, {"argtypes": node.get("argtypes") or []}, facts)


_EXECUTE_UNRESOLVED = Aspect("execute", _UNK)


def _execute(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["execute"], _UNK)  # until the caller says what was prepared under this name
    facts.flags.add("execute_prepared")
    facts.objects.add("prepared:" + str(node.get("name", "")))
    _walk(ntype, node, facts)  # the parameters are expressions too


def _deallocate(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["deallocate"], _SES)
    if "name" in node and not node.get("isall"):
        facts.objects.add("prepared:" + str(node["name"]))


_CURSOR_OPT_HOLD = 0x0020  # PostgreSQL's CURSOR_OPT_HOLD: WITH HOLD


def _declare(ntype: str, node: Node, facts: _Facts) -> None:
    facts.kinds.add("declare")  # judged as its query
    facts.objects.add("cursor:" + str(node.get("portalname", "")))
    if int(node.get("options", 0) or 0) & _CURSOR_OPT_HOLD:
        facts.flags.add("holdable")
    _nested(node.get("query"), facts)  # the cursor's query runs as rows are fetched


def _create_table_as(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["create", "create_" + _object_name(node.get("objtype"))], _DDL, _W)
    _nested(node.get("query"), facts)
    if isinstance(node.get("into"), dict):
        _walk("IntoClause", node["into"], facts)


def _create_schema(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["create", "create_schema"], _DDL)
    for element in node.get("schemaElts") or ():  # CREATE SCHEMA s CREATE TABLE ... GRANT ...
        _nested(element, facts)


def _transaction(ntype: str, node: Node, facts: _Facts) -> None:
    kind = str(node.get("kind", ""))
    facts.add(_TRANSACTION_KINDS.get(kind, (kind.removeprefix("TRANS_STMT_").lower(),)), _TX)
    _transaction_modes(node.get("options"), facts)


def _transaction_modes(options: Any, facts: _Facts) -> None:
    """Flag READ WRITE: it undoes a read-only default a deployment may lean on."""
    for option in options if isinstance(options, list) else ():
        elem = option.get("DefElem", {}) if isinstance(option, dict) else {}
        read_only = functions.const_text(elem.get("arg"))
        if elem.get("defname") == "transaction_read_only" and read_only in ("0", "false"):
            facts.flags.add("read_write")


def _variable_set(ntype: str, node: Node, facts: _Facts) -> None:
    kind = str(node.get("kind", ""))
    name = str(node.get("name", "")).lower()
    verb = "reset" if kind.startswith("VAR_RESET") else "set"
    _transaction_modes(node.get("args") if kind == "VAR_SET_MULTI" else None, facts)
    if kind == "VAR_SET_MULTI" and name.startswith("transaction"):
        facts.add([verb, "set_transaction"], _TX)
        return
    facts.add([verb], _SES)
    if kind == "VAR_RESET_ALL":
        facts.flags.add("reset_all")  # client_encoding back to its start-up value, too
    value = None  # back to the default
    if kind == "VAR_SET_VALUE":
        value = functions.const_text((node.get("args") or [None])[0]) or "?"
    if name == "client_encoding" and not node.get("is_local"):
        # The relay answers this itself: the target stays UTF8, the client's edge converts.
        facts.flags.add("client_encoding")
        facts.objects.add("encoding:" + (value or ""))
        _walk(ntype, node, facts)
        return
    if functions.is_role_setting(name) and functions.setting_effect(name, value) is None:
        facts.add([f"reset_{name}"], _SES)  # back to the login identity
    _setting(name, value, facts, kind=verb)
    _walk(ntype, node, facts)


def _vacuum(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["vacuum" if node.get("is_vacuumcmd") else "analyze"], _ADM)
    _walk(ntype, node, facts)


def _show(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["show"], _R)
    if str(node.get("name", "")).lower() in ("client_encoding", "all"):
        facts.flags.add("shows_client_encoding")  # the relay reports the client's, not UTF8


def _fetch(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["move" if node.get("ismove") else "fetch"], _R)
    facts.objects.add("cursor:" + str(node.get("portalname", "")))


def _close(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["close"], _SES)
    if "portalname" in node:
        facts.objects.add("cursor:" + str(node["portalname"]))
    else:
        facts.flags.add("close_all")


def _discard(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["discard"], _SES)
    if node.get("target") == "DISCARD_ALL":
        facts.flags.add("discard_all")  # also deallocates every statement, closes every cursor


def _named_objects(objtype: Any, targets: Iterable[Any], facts: _Facts) -> None:
    """Objects named by lists of strings (DROP, COMMENT, GRANT ON FUNCTION), not RangeVars."""
    for target in targets:
        pair = _unwrap(target)
        if pair is None:
            continue
        if objtype in _RELATION_TYPES and pair[0] == "List":
            facts.objects.add(functions.qualified_name(_strings(pair[1].get("items"))))
        elif objtype in _ROUTINE_TYPES and pair[0] == "ObjectWithArgs":
            facts.objects.add(
                "function:" + functions.qualified_name(_strings(pair[1].get("objname")))
            )


def _drop(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["drop", "drop_" + _object_name(node.get("removeType"))], _DDL)
    _named_objects(node.get("removeType"), node.get("objects") or (), facts)


def _comment(ntype: str, node: Node, facts: _Facts) -> None:
    facts.add(["comment"], _DDL)
    _named_objects(node.get("objtype"), [node.get("object")], facts)


def _grant(ntype: str, node: Node, facts: _Facts) -> None:
    verb = "grant" if node.get("is_grant") else "revoke"
    facts.add([verb] if ntype == "GrantStmt" else [verb, verb + "_role"], _DCL)
    _named_objects(node.get("objtype"), node.get("objects") or (), facts)
    _walk(ntype, node, facts)


def _changes_access(node: Node) -> bool:
    """ALTER TABLE subcommands that change who may see or change the rows."""
    for cmd in node.get("cmds") or ():
        if isinstance(cmd, dict) and cmd.get("AlterTableCmd", {}).get("subtype") in _ACCESS_CMDS:
            return True
    return False


def _alter(type_key: str, *extra: str) -> Callable[[str, Node, _Facts], None]:
    def handler(ntype: str, node: Node, facts: _Facts) -> None:
        objtype = node.get(type_key)
        if objtype in ("OBJECT_COLUMN", "OBJECT_TABCONSTRAINT", "OBJECT_ATTRIBUTE"):
            objtype = node.get("relationType", objtype)  # ALTER TABLE t RENAME COLUMN c
        facts.add(["alter", "alter_" + _object_name(objtype), *extra], _DDL)
        if "alter_owner" in extra or _changes_access(node):
            # e.g. the new owner holds every privilege on the object
            facts.add(["alter_owner" if "alter_owner" in extra else "alter_access"], _DCL)
        _walk(ntype, node, facts)

    return handler


def _create_routine(ntype: str, node: Node, facts: _Facts) -> None:
    if ntype == "DefineStmt":  # CREATE AGGREGATE / OPERATOR / TYPE / COLLATION / TEXT SEARCH ...
        kind = "create_" + _object_name(node.get("kind"))
    else:
        kind = "create_procedure" if node.get("is_procedure") else "create_function"
    facts.add(["create", kind], _DDL)
    _walk(ntype, node, facts)


_HANDLERS: dict[str, Callable[[str, Node, _Facts], None]] = {
    "SelectStmt": _select, "UpdateStmt": _update_delete, "DeleteStmt": _update_delete,
    "InsertStmt": _insert_merge, "MergeStmt": _insert_merge,
    "CopyStmt": _copy, "ExplainStmt": _explain, "PrepareStmt": _prepare,
    "ExecuteStmt": _execute, "DeallocateStmt": _deallocate, "DeclareCursorStmt": _declare,
    "CreateTableAsStmt": _create_table_as, "CreateSchemaStmt": _create_schema,
    "TransactionStmt": _transaction, "VariableSetStmt": _variable_set, "VacuumStmt": _vacuum,
    "FetchStmt": _fetch, "VariableShowStmt": _show, "ClosePortalStmt": _close, "DiscardStmt": _discard, "DropStmt": _drop,
    "CommentStmt": _comment, "GrantStmt": _grant,
    "GrantRoleStmt": _grant, "CreateFunctionStmt": _create_routine, "DefineStmt": _create_routine,
    "AlterTableStmt": _alter("objtype"), "AlterFunctionStmt": _alter("objtype"),
    "RenameStmt": _alter("renameType", "rename"),
    "AlterObjectSchemaStmt": _alter("objectType", "set_schema"),
    "AlterOwnerStmt": _alter("objectType", "alter_owner"),
    "AlterObjectDependsStmt": _alter("objectType"),
}  # fmt: skip


def _failed(sql: str, *flags: str) -> tuple[Command, ...]:
    """The one Command for text we could not analyse: UNKNOWN, so policy fails closed."""
    flagset = frozenset(("parse_error", *flags))
    return (Command(PROTOCOL, sql, frozenset({"unparseable"}), frozenset({_UNK}), flags=flagset),)


def _slice(sql: str, encoded: bytes | None, location: int, length: int) -> str:
    """A statement's own text; libpg_query reports byte offsets into the UTF-8 encoding."""
    if encoded is None:  # ASCII: bytes and characters coincide
        return (sql[location : location + length] if length else sql[location:]).strip()
    raw = encoded[location : location + length] if length else encoded[location:]
    return raw.decode("utf-8", errors="replace").strip()


def _classify_uncached(sql: str) -> tuple[Command, ...]:
    if len(sql) > MAX_SQL_CHARS:
        return _failed(sql, "too_large")
    if "\x00" in sql:  # libpg_query stops at NUL: what follows would go unjudged
        return _failed(sql, "nul_character")
    try:
        tree_json = pg_parser.parse_sql_json(sql)
        if len(tree_json) > MAX_TREE_CHARS:
            return _failed(sql, "too_large")
        tree = json.loads(tree_json)
    except RecursionError:  # json's C decoder bounds its nesting by Python's recursion limit
        return _failed(sql, "too_deep")
    except pg_parser.ParseError as error:
        # libpg_query checks its own stack ("stack depth limit exceeded") and bison's.
        message = str(error)
        deep = "stack depth" in message or "memory exhausted" in message
        return _failed(sql, "too_deep") if deep else _failed(sql)
    except ValueError:  # lone surrogates (UnicodeEncodeError) cannot reach the parser
        return _failed(sql)
    raws = tree.get("stmts") or []
    encoded = None if sql.isascii() else sql.encode("utf-8")
    commands = []
    for raw in raws:
        text = _slice(sql, encoded, raw.get("stmt_location", 0), raw.get("stmt_len", 0))
        facts = _Facts()
        try:
            _nested(raw.get("stmt"), facts)
        except Exception:  # noqa: BLE001  # an unforeseen tree shape fails closed, never escapes
            facts.add(["unparseable"], _UNK)
            facts.flags.add("classifier_error")
        if len(raws) > 1:
            facts.flags.add("multi_statement")
        commands.append(facts.command(text))
    return tuple(commands)


_classify_cached = functools.lru_cache(maxsize=CACHE_SIZE)(_classify_uncached)


def classify(sql: str) -> tuple[Command, ...]:
    """One Command per statement in ``sql``, ``()`` when it holds none. Never raises.

    Results are cached by exact text (LRU, :data:`CACHE_SIZE` entries, texts up to
    :data:`MAX_CACHED_SQL_CHARS`), so a repeated statement costs a dict lookup. Unparseable text,
    text over :data:`MAX_SQL_CHARS`, text with NUL and nesting too deep to walk yield a single
    UNKNOWN Command of kind ``unparseable`` with flag ``parse_error`` (and ``too_large``,
    ``nul_character`` or ``too_deep``).
    """
    if len(sql) > MAX_CACHED_SQL_CHARS:
        return _classify_uncached(sql)
    return _classify_cached(sql)


def requested_encoding(command: Command) -> str | None:
    """For ``SET client_encoding TO x``: ``x`` (``""`` for RESET/DEFAULT); else None."""
    for obj in command.objects:
        if obj.startswith("encoding:"):
            return obj.removeprefix("encoding:")
    return None


def cursor_name(command: Command) -> str | None:
    """The cursor a DECLARE, FETCH, MOVE or CLOSE command names (None: CLOSE ALL / none)."""
    for obj in command.objects:
        if obj.startswith("cursor:"):
            return obj.removeprefix("cursor:")
    return None


def prepared_statement_name(command: Command) -> str | None:
    """The prepared-statement name a PREPARE, EXECUTE or DEALLOCATE command refers to."""
    for obj in command.objects:
        if obj.startswith("prepared:"):
            return obj.removeprefix("prepared:")
    return None


def resolve_execute(command: Command, prepared: Mapping[str, Command]) -> Command:
    """An EXECUTE command judged as what it runs, when ``prepared`` knows its name.

    ``prepared`` maps names to what was prepared under them: the Command of a SQL ``PREPARE``
    (its ``prepare`` kind is dropped here) or of the query of a protocol-level Parse. The caller
    must record only PREPAREs the server accepted and forget names on DEALLOCATE/DISCARD. An
    unknown name stays UNKNOWN; UNKNOWN earned by the EXECUTE's own parameters is kept.
    """
    name = prepared_statement_name(command)
    target = prepared.get(name) if name is not None else None
    if "execute_prepared" not in command.flags or target is None:
        return command
    return as_running(command, target)


def prepared_body(command: Command) -> Command:
    """What ``PREPARE p AS <stmt>`` holds under ``p``: ``<stmt>``'s classification, without the
    ``prepare`` kind (which is what lets a PREPARE of a held statement pass: it runs nothing)."""
    facts = _Facts()
    for aspect in command.aspects:
        facts.effect(aspect.name, aspect.category, aspect.what)
    facts.kinds.update(command.kinds - {"prepare"})
    facts.objects.update(command.objects)
    facts.flags.update(command.flags - {"multi_statement"})
    return facts.command(command.text)


def as_running(command: Command, target: Command) -> Command:
    """``command`` (``EXECUTE p``, ``FETCH c``) judged as what it makes the server run: the
    statement prepared or the cursor declared as ``target``, plus ``command``'s own aspects (calls
    in EXECUTE's parameters)."""
    facts = _Facts()
    for aspect in command.aspects:
        if aspect != _EXECUTE_UNRESOLVED:
            facts.effect(aspect.name, aspect.category, aspect.what)
    for aspect in target.aspects:
        facts.effect(aspect.name, aspect.category, aspect.what)
    facts.kinds.update(command.kinds | (target.kinds - {"prepare", "declare"}))
    facts.objects.update(command.objects | target.objects)
    facts.flags.update(command.flags | (target.flags - {"multi_statement", "holdable"}))
    return facts.command(command.text)


def classify_with_prepared(sql: str, prepared: Mapping[str, Command]) -> tuple[Command, ...]:
    """:func:`classify`, with each ``EXECUTE name`` resolved through ``prepared``.

    PREPARE and DEALLOCATE earlier in the same ``sql`` count too, in order, so
    ``PREPARE p AS DELETE FROM t; EXECUTE p`` is judged a DELETE twice. ``prepared`` itself is
    not modified: registering names that the server accepted is the caller's job.
    """
    known = dict(prepared)
    out = []
    for command in classify(sql):
        name = prepared_statement_name(command)
        if "execute_prepared" in command.flags:
            command = resolve_execute(command, known)
        elif "prepare" in command.kinds and name is not None:
            known[name] = command
        elif "deallocate" in command.kinds or "discard" in command.kinds:
            if name is None:  # DEALLOCATE ALL, DISCARD ALL/PLANS
                known.clear()
            else:
                known.pop(name, None)
        out.append(command)
    return tuple(out)
