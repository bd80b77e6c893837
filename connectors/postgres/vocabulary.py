"""Every kind and flag :mod:`connectors.postgres.classify` can put on a Command: what rules name.

Derived from the classifier's own tables wherever it has one (the fixed statements, the nested
kinds, transaction kinds, PostgreSQL's object types, the run-time settings and function effects of
:mod:`connectors.postgres.functions`), so a statement or function added there is a rule word at
once. What the handlers spell out literally is listed here; tests/unit/test_pg_vocabulary.py reads
classify.py's source to check that this list keeps up, and classifies a corpus of statements to
check that no kind or flag escapes the vocabulary.

The set errs towards too many words, never too few: a kind the classifier can produce but this
module lacks would make a correct rule a configuration error, while a word it never produces
only lets that one typo through. ``function:<name>``, ``operator:<name>`` and the like are
aspects, not kinds: rules name the categories such calls put a statement in.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import pglast.ast
import pglast.enums

from gateway.vocabulary import CommandVocabulary

from . import classify, functions


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Kinds the handlers in classify.py spell out (the create_/alter_/drop_ + object type ones are
# derived below).
_HANDLER_KINDS = _words("""
    select select_for_update select_into update delete insert merge update_pg_settings
    copy copy_from copy_to copy_program copy_file explain prepare execute deallocate declare
    create create_table create_schema create_function create_procedure alter rename set_schema
    alter_owner alter_access drop comment grant revoke grant_role revoke_role
    set reset set_transaction vacuum analyze show fetch move close discard unparseable
""")
# Flags the classifier adds itself (function and setting effects' flags are derived below).
_CLASSIFIER_FLAGS = _words("""
    no_where writable_cte stored_dml locking into unknown_function user_operator
    copy_program copy_file copy_from_stdin copy_to_stdout explain_analyze execute_prepared
    holdable read_write reset_all client_encoding shows_client_encoding close_all discard_all
    multi_statement classifier_error parse_error too_large too_deep nul_character
""")
_SETTING_VERBS = ("set", "reset")


def _object_kinds() -> set[str]:
    """``create_``/``alter_``/``drop_`` + every object type, as the classifier names them."""
    names = {classify._object_name(member.name) for member in pglast.enums.ObjectType}
    return {f"{verb}_{name}" for verb in ("create", "alter", "drop") for name in names}


def _transaction_kinds() -> set[str]:
    kinds: set[str] = set()
    for member in pglast.enums.TransactionStmtKind:
        default = (member.name.removeprefix("TRANS_STMT_").lower(),)
        kinds.update(classify._TRANSACTION_KINDS.get(member.name, default))
    return kinds


def _fallback_kinds() -> set[str]:
    """Statements the classifier has no entry for are named after their node type (UNKNOWN)."""
    known = classify._HANDLERS.keys() | classify._FIXED.keys()
    return {
        "".join("_" + c.lower() if c.isupper() else c for c in name)[1:]
        for name in dir(pglast.ast)
        if name.endswith("Stmt") and isinstance(getattr(pglast.ast, name), type)
        and name not in known
    }


def _setting_names() -> set[str]:
    """A name of every run-time parameter :func:`functions.setting_effect` tells apart."""
    return {
        *functions._ROLE_SETTINGS, "search_path", *functions._LEXER_SAFE_VALUES,
        *functions._ADMIN_SETTINGS, *(p + "x" for p in functions._ADMIN_SETTING_PREFIXES),
        "statement_timeout",  # an ordinary one: no effect beyond SESSION
    }


def _setting_effects() -> Iterable[tuple[str, str, functions.FunctionEffect]]:
    """(verb, name, effect) for each way SET/RESET of a parameter can add to SESSION."""
    for name in sorted(_setting_names()):
        # SET x = <constant or expression> ("?"), SET x TO DEFAULT and RESET x (None).
        for verb, value in (("set", "?"), ("set", None), ("reset", None)):
            effect = functions.setting_effect(name, value)
            if effect is not None:
                yield verb, name, effect


def _setting_kinds() -> set[str]:
    kinds = {f"{verb}_{name}" for verb in _SETTING_VERBS for name in functions._ROLE_SETTINGS}
    for verb, name, effect in _setting_effects():
        if effect.categories:  # an effect with no category adds flags only (search_path)
            kinds.add(classify._setting_kind(name, effect, verb))
    return kinds


def _effect_flags() -> set[str]:
    effects = [
        *functions.SIDE_EFFECTS.values(),
        *(effect for _, effect in functions.SIDE_EFFECT_PREFIXES),
        functions.UNKNOWN_SETTING,
        *(effect for _, _, effect in _setting_effects()),
    ]
    return {flag for effect in effects for flag in effect.flags}


def kinds() -> frozenset[str]:
    """Every kind a PostgreSQL Command can carry."""
    fixed = {kind for kinds, _ in classify._FIXED.values() for kind in kinds}
    return frozenset(
        fixed | set(classify._NESTED_KINDS.values()) | _HANDLER_KINDS | _object_kinds()
        | _transaction_kinds() | _setting_kinds() | _fallback_kinds()
    )


def flags() -> frozenset[str]:
    """Every flag a PostgreSQL Command can carry."""
    return frozenset(_CLASSIFIER_FLAGS | set(classify._FIXED_FLAGS.values()) | _effect_flags())


@functools.cache
def postgres_vocabulary() -> CommandVocabulary:
    return CommandVocabulary(classify.PROTOCOL, kinds(), flags())
