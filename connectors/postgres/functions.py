"""What calling a PostgreSQL function, or changing a run-time parameter, can do.

"It starts with SELECT" says nothing about what a statement does (HOSTILE G.41): a SELECT can
terminate backends, write server files or run SQL text of its own. The classifier therefore looks
every function call up here and gets one of three answers:

* a known **side effect** (:data:`SIDE_EFFECTS`, :data:`SIDE_EFFECT_PREFIXES`): the category the call
  adds (WRITE, ADMIN, SESSION, DCL, or UNKNOWN for calls that execute SQL text) and extra flags;
* a known **pure** builtin (:data:`PURE_FUNCTIONS`): computes a value from its arguments or reads
  session/catalog information, adds nothing;
* anything else: the classifier flags ``unknown_function`` and adds UNKNOWN, because a user-defined
  (or unlisted builtin) function may be volatile and write. The allowlist is deliberately finite:
  a name missing from it costs a review, a wrong entry in it would cost a bypass.

Names are matched after PostgreSQL's identifier folding (pglast gives folded names) and only when
unqualified or qualified with ``pg_catalog``; any other schema means a user function.

Run-time parameters (``SET x``, ``set_config('x', ...)``) are judged by :func:`setting_effect`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.model import Category


@dataclass(frozen=True, slots=True)
class FunctionEffect:
    """What one call adds to a statement's classification."""

    categories: frozenset[Category]
    flags: frozenset[str]
    #: How a denial describes the call, after its quoted name: "is a function with side effects".
    what: str = "is a function with side effects"


def _effect(
    *categories: Category, flags: tuple[str, ...] = (), what: str = ""
) -> FunctionEffect:
    return FunctionEffect(
        frozenset(categories),
        frozenset(("side_effect_function", *flags)),
        what or "is a function with side effects",
    )


_W = Category.WRITE
_A = Category.ADMIN
_S = Category.SESSION
_U = Category.UNKNOWN

_ADMIN = _effect(_A)
_OTHER_SESSIONS = _effect(_A, what="shows other sessions' statements")
_WRITE = _effect(_W)
_SERVER_FILE = _effect(_A, flags=("server_file",), what="reads the server's file system")
_LO_WRITE = _effect(_W, flags=("large_object",))
# Reading a large object bypasses table privileges and column masking (HOSTILE H.49): ADMIN.
_LO_READ = _effect(_A, flags=("large_object",), what="reads a large object")
_LO_FILE = _effect(_A, _W, flags=("large_object", "server_file"),
                   what="moves a large object to or from the server's file system")
_LOCK = _effect(_W, flags=("locking",))
# These run SQL text the classifier never sees, so nothing about them can be known.
_DYNAMIC = _effect(_U, flags=("dynamic_sql",), what="runs SQL text wardgate cannot see")
_REPLICATION = _effect(_A, flags=("replication",), what="changes replication state")

SIDE_EFFECTS: dict[str, FunctionEffect] = {
    # Other sessions and the server process.
    "pg_terminate_backend": _ADMIN,
    "pg_cancel_backend": _ADMIN,
    "pg_reload_conf": _ADMIN,
    "pg_rotate_logfile": _ADMIN,
    "pg_rotate_logfile_old": _ADMIN,
    "pg_log_backend_memory_contexts": _ADMIN,
    "pg_switch_wal": _ADMIN,
    "pg_promote": _ADMIN,
    "pg_create_restore_point": _ADMIN,
    "pg_backup_start": _ADMIN,
    "pg_backup_stop": _ADMIN,
    "pg_start_backup": _ADMIN,
    "pg_stop_backup": _ADMIN,
    "pg_import_system_collations": _ADMIN,
    "pg_nextoid": _ADMIN,
    "pg_extension_config_dump": _ADMIN,
    "pg_stop_making_pinned_objects": _ADMIN,
    "pg_stat_force_next_flush": _ADMIN,
    "brin_summarize_range": _ADMIN,
    "brin_summarize_new_values": _ADMIN,
    "brin_desummarize_range": _ADMIN,
    "gin_clean_pending_list": _ADMIN,
    "pg_truncate_visibility_map": _ADMIN,
    "pg_prewarm": _ADMIN,
    "pg_set_relation_stats": _ADMIN,
    "pg_set_attribute_stats": _ADMIN,
    "pg_clear_relation_stats": _ADMIN,
    "pg_clear_attribute_stats": _ADMIN,
    "pg_restore_relation_stats": _ADMIN,
    "pg_restore_attribute_stats": _ADMIN,
    # Holding a backend for a chosen time is a denial of service, not a read.
    "pg_sleep": _ADMIN,
    "pg_sleep_for": _ADMIN,
    "pg_sleep_until": _ADMIN,
    # The server's file system (pg_read_server_files & co.).
    "pg_read_file": _SERVER_FILE,
    "pg_read_file_old": _SERVER_FILE,
    "pg_read_binary_file": _SERVER_FILE,
    "pg_stat_file": _SERVER_FILE,
    # Other sessions' statement text: every session is the gateway's one database user.
    "pg_stat_get_activity": _OTHER_SESSIONS,
    "pg_stat_statements": _OTHER_SESSIONS,
    "pg_current_logfile": _SERVER_FILE,
    "pg_logdir_ls": _SERVER_FILE,
    # Large objects.
    "lo_import": _LO_FILE,
    "lo_export": _LO_FILE,
    "lo_create": _LO_WRITE,
    "lo_creat": _LO_WRITE,
    "lo_unlink": _LO_WRITE,
    "lo_put": _LO_WRITE,
    "lo_from_bytea": _LO_WRITE,
    "lowrite": _LO_WRITE,
    "lo_truncate": _LO_WRITE,
    "lo_truncate64": _LO_WRITE,
    "lo_get": _LO_READ,
    "loread": _LO_READ,
    "lo_open": _LO_READ,
    "lo_close": _LO_READ,
    "lo_lseek": _LO_READ,
    "lo_lseek64": _LO_READ,
    "lo_tell": _LO_READ,
    "lo_tell64": _LO_READ,
    # Database state outside tables.
    "nextval": _WRITE,
    "setval": _WRITE,
    "pg_notify": _WRITE,
    # Assigning a transaction id makes a read-only transaction a writing one.
    "txid_current": _WRITE,
    "pg_current_xact_id": _WRITE,
    # set_config('role', ...) is SET ROLE; the classifier adds DCL for role-like names.
    "set_config": _effect(_S, what="changes a run-time setting"),
    # SQL text executed by the server on the caller's behalf.
    "query_to_xml": _DYNAMIC,
    "query_to_xmlschema": _DYNAMIC,
    "query_to_xml_and_xmlschema": _DYNAMIC,
    "cursor_to_xml": _DYNAMIC,
    "cursor_to_xmlschema": _DYNAMIC,
    "ts_stat": _DYNAMIC,
    "ts_rewrite": _DYNAMIC,
    # These read whole tables named by a value, so the objects list cannot name them.
    "table_to_xml": _DYNAMIC,
    "table_to_xmlschema": _DYNAMIC,
    "table_to_xml_and_xmlschema": _DYNAMIC,
    "schema_to_xml": _DYNAMIC,
    "schema_to_xmlschema": _DYNAMIC,
    "schema_to_xml_and_xmlschema": _DYNAMIC,
    "database_to_xml": _DYNAMIC,
    "database_to_xmlschema": _DYNAMIC,
    "database_to_xml_and_xmlschema": _DYNAMIC,
}

# Families whose members keep growing between releases: matched by prefix, checked in order.
SIDE_EFFECT_PREFIXES: tuple[tuple[str, FunctionEffect], ...] = (
    ("dblink", _DYNAMIC),  # dblink, dblink_exec, dblink_connect, dblink_open, ...
    ("pg_advisory_", _LOCK),
    ("pg_try_advisory_", _LOCK),
    ("pg_ls_", _SERVER_FILE),  # pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...
    ("pg_file_", _SERVER_FILE),  # adminpack: pg_file_write, pg_file_rename, pg_file_unlink
    ("pg_read_", _SERVER_FILE),
    ("pg_stat_reset", _ADMIN),
    ("pg_stat_statements_reset", _ADMIN),
    ("pg_logical_", _REPLICATION),  # slot_get_changes consumes changes; emit_message writes WAL
    ("pg_replication_", _REPLICATION),  # replication origins and pg_replication_slot_advance
    ("pg_create_", _REPLICATION),  # pg_create_*_replication_slot
    ("pg_drop_replication", _REPLICATION),
    ("pg_copy_", _REPLICATION),  # pg_copy_*_replication_slot
    ("pg_sync_replication", _REPLICATION),
    ("pg_wal_replay_", _ADMIN),
    ("binary_upgrade_", _ADMIN),
    ("lo_", _LO_WRITE),  # any other large-object function: assume it writes
)


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Builtins that only compute a value or read session/catalog information. Grouped as in the
# PostgreSQL manual's "Functions and Operators" chapter so a reviewer can check each group.
PURE_FUNCTIONS: frozenset[str] = _names(
    # Aggregates and window functions.
    """
    count sum avg min max array_agg string_agg bool_and bool_or every bit_and bit_or bit_xor
    json_agg json_agg_strict jsonb_agg jsonb_agg_strict json_object_agg json_object_agg_strict
    json_object_agg_unique json_object_agg_unique_strict jsonb_object_agg jsonb_object_agg_strict
    jsonb_object_agg_unique jsonb_object_agg_unique_strict xmlagg any_value range_agg
    range_intersect_agg stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop
    covar_samp regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy
    regr_syy mode percentile_cont percentile_disc rank dense_rank percent_rank cume_dist
    row_number ntile lag lead first_value last_value nth_value grouping
    """
    # Comparison, mathematics, random numbers.
    """
    num_nonnulls num_nulls abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log
    log10 min_scale mod pi power pow radians round scale sign sqrt trim_scale trunc width_bucket
    random random_normal setseed acos acosd asin asind atan atand atan2 atan2d cos cosd cot cotd
    sin sind tan tand sinh cosh tanh asinh acosh atanh erf erfc gamma lgamma
    """
    # Strings, binary strings, bit strings, pattern matching, formatting.
    """
    ascii bit_length btrim char_length character_length chr concat concat_ws convert
    convert_from convert_to decode encode format initcap left length lower lpad ltrim md5
    normalize is_normalized octet_length overlay parse_ident pg_client_encoding position
    quote_ident quote_literal quote_nullable regexp_count regexp_instr regexp_like regexp_match
    regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table regexp_substr
    repeat replace reverse right rpad rtrim split_part starts_with string_to_array
    string_to_table strpos substr substring to_ascii to_hex to_bin to_oct translate upper casefold
    unistr unicode_assigned unicode_version sha224 sha256 sha384 sha512 crc32 crc32c get_bit
    get_byte set_bit set_byte bit_count similar_to_escape similar_escape like_escape
    to_char to_date to_number to_timestamp
    """
    # Date and time.
    """
    age clock_timestamp date_add date_bin date_part date_subtract date_trunc extract isfinite
    justify_days justify_hours justify_interval make_date make_interval make_time make_timestamp
    make_timestamptz now statement_timestamp timeofday transaction_timestamp timezone overlaps
    """
    # Casts written as calls, enums, geometry, network addresses, UUIDs.
    """
    int2 int4 int8 float4 float8 numeric text varchar bpchar bool date time timetz timestamp
    timestamptz interval bytea name oid regclass regtype regproc json jsonb uuid inet cidr
    macaddr macaddr8 money enum_first enum_last enum_range area center diameter height width
    isclosed isopen npoints pclose popen radius slope box circle line lseg path point polygon
    bound_box abbrev broadcast family host hostmask inet_merge inet_same_family masklen netmask
    network set_masklen macaddr8_set7bit gen_random_uuid uuidv4 uuidv7 uuid_extract_timestamp
    uuid_extract_version
    """
    # JSON and SQL/JSON.
    """
    to_json to_jsonb array_to_json row_to_json json_build_array json_build_object json_object
    jsonb_build_array jsonb_build_object jsonb_object json_array_elements
    json_array_elements_text jsonb_array_elements jsonb_array_elements_text json_array_length
    jsonb_array_length json_each json_each_text jsonb_each jsonb_each_text json_extract_path
    json_extract_path_text jsonb_extract_path jsonb_extract_path_text json_object_keys
    jsonb_object_keys json_populate_record jsonb_populate_record jsonb_populate_record_valid
    json_populate_recordset jsonb_populate_recordset json_to_record jsonb_to_record
    json_to_recordset jsonb_to_recordset json_strip_nulls jsonb_strip_nulls jsonb_set
    jsonb_set_lax jsonb_insert jsonb_pretty json_typeof jsonb_typeof jsonb_path_exists
    jsonb_path_match jsonb_path_query jsonb_path_query_array jsonb_path_query_first
    jsonb_path_exists_tz jsonb_path_match_tz jsonb_path_query_tz jsonb_path_query_array_tz
    jsonb_path_query_first_tz
    """
    # Arrays, ranges, set-returning functions.
    """
    array_append array_cat array_dims array_fill array_length array_lower array_ndims
    array_position array_positions array_prepend array_remove array_replace array_reverse
    array_sample array_shuffle array_sort array_to_string array_upper cardinality trim_array
    unnest generate_series generate_subscripts lower_inc upper_inc lower_inf upper_inf isempty
    range_merge multirange int4range int8range numrange tsrange tstzrange daterange
    int4multirange int8multirange nummultirange tsmultirange tstzmultirange datemultirange
    """
    # Text search (ts_stat/ts_rewrite run SQL text and are side effects above).
    """
    to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank
    ts_rank_cd ts_headline ts_delete ts_filter ts_lexize ts_debug ts_parse ts_token_type
    setweight strip numnode querytree tsvector_to_array array_to_tsvector get_current_ts_config
    tsquery_phrase
    """
    # XML (query_to_xml & co. are side effects above).
    """
    xmlcomment xmltext xml_is_well_formed xml_is_well_formed_document xml_is_well_formed_content
    xpath xpath_exists xmlexists
    """
    # Session and catalog information: reads, no state change.
    """
    current_database current_catalog current_query current_schema current_schemas current_user
    session_user system_user current_role user version current_setting pg_backend_pid
    pg_postmaster_start_time pg_conf_load_time inet_client_addr inet_client_port
    inet_server_addr inet_server_port pg_current_xact_id_if_assigned txid_current_if_assigned
    txid_current_snapshot pg_current_snapshot pg_snapshot_xmin pg_snapshot_xmax pg_snapshot_xip
    pg_visible_in_snapshot txid_snapshot_xmin txid_snapshot_xmax txid_snapshot_xip
    txid_visible_in_snapshot pg_xact_status txid_status pg_trigger_depth pg_jit_available
    pg_is_in_recovery pg_is_other_temp_schema pg_my_temp_schema pg_listening_channels
    pg_notification_queue_usage pg_blocking_pids pg_safe_snapshot_blocking_pids pg_typeof
    pg_column_size pg_column_compression pg_column_toast_chunk_id pg_relation_size
    pg_table_size pg_indexes_size pg_total_relation_size pg_database_size pg_tablespace_size
    pg_size_pretty pg_size_bytes pg_relation_filenode pg_get_viewdef pg_get_indexdef
    pg_get_constraintdef pg_get_functiondef pg_get_function_arguments pg_get_function_result
    pg_get_function_identity_arguments pg_get_triggerdef pg_get_ruledef pg_get_expr
    pg_get_serial_sequence pg_get_userbyid pg_get_keywords pg_get_statisticsobjdef
    pg_get_partkeydef pg_get_partition_constraintdef pg_get_replica_identity_index
    pg_options_to_table pg_tablespace_databases pg_collation_for format_type obj_description
    col_description shobj_description has_table_privilege has_column_privilege
    has_any_column_privilege has_database_privilege has_function_privilege
    has_schema_privilege has_sequence_privilege has_tablespace_privilege has_type_privilege
    has_language_privilege has_foreign_data_wrapper_privilege has_server_privilege
    has_parameter_privilege has_largeobject_privilege pg_has_role row_security_active
    pg_table_is_visible pg_type_is_visible pg_function_is_visible pg_operator_is_visible
    pg_opclass_is_visible pg_opfamily_is_visible pg_collation_is_visible
    pg_conversion_is_visible pg_statistics_obj_is_visible pg_ts_config_is_visible
    pg_ts_dict_is_visible pg_ts_parser_is_visible pg_ts_template_is_visible
    pg_encoding_to_char pg_char_to_encoding acldefault aclexplode makeaclitem
    pg_partition_tree pg_partition_ancestors pg_partition_root pg_describe_object
    pg_identify_object pg_identify_object_as_address pg_get_object_address to_regclass
    to_regtype to_regtypemod to_regproc to_regprocedure to_regnamespace to_regrole to_regoper
    to_regoperator to_regcollation pg_input_is_valid pg_input_error_info pg_index_column_has_property
    pg_index_has_property pg_indexam_has_property pg_settings_get_flags pg_lock_status
    pg_sequence_last_value currval lastval pg_tablespace_location pg_relation_is_publishable
    pg_relation_is_updatable pg_column_is_updatable hashtext hashtextextended
    getdatabaseencoding pg_is_wal_replay_paused
    """
    # The functions behind read-only system views (pg_settings, pg_cursors, ...): GUI clients
    # call some directly, and a view over a function missing here is masked whole (opaque).
    """
    pg_show_all_settings pg_cursor pg_prepared_statement pg_prepared_xact pg_timezone_names
    pg_timezone_abbrevs pg_available_extensions pg_available_extension_versions
    """
)
#: Views showing what other sessions run (pg_stat_statements is an extension's).
OTHER_SESSIONS_RELATIONS = frozenset(("pg_stat_activity", "pg_stat_statements"))

# information_schema's helper functions (used by its views and by JDBC/ODBC metadata calls):
# they compute from catalog rows. information_schema belongs to the bootstrap superuser, so no
# agent can put a function of its own there.
SQL_STANDARD_HELPERS: frozenset[str] = _names(
    """
    _pg_expandarray _pg_index_position _pg_truetypid _pg_truetypmod _pg_char_max_length
    _pg_char_octet_length _pg_numeric_precision _pg_numeric_precision_radix _pg_numeric_scale
    _pg_datetime_precision _pg_interval_type
    """
)
#: information_schema's domains (casts to them check nothing but a value's shape).
SQL_STANDARD_DOMAINS = frozenset(
    ("cardinal_number", "character_data", "sql_identifier", "time_stamp", "yes_or_no")
)

# Read-only accessor families (catalog definitions, statistics counters, privilege checks).
# Side-effect names are looked up first, so a prefix here cannot hide one.
PURE_PREFIXES = ("pg_get_", "pg_stat_get_", "has_")
#: ... but one backend's statistics accessors show what any session runs now (its statement
#: text, its client, its wait): every session is the gateway's one database user.
OTHER_SESSIONS_PREFIXES = ("pg_stat_get_backend_",)


# Operator names of pg_operator in a fresh cluster, plus the keyword names the parser gives
# BETWEEN. Any other operator is user-defined: its function may do anything. (A builtin symbol
# overloaded for a user type is not told apart here.)
BUILTIN_OPERATORS = _names(
    """
    !! !~ !~* !~~ !~~* # ## #- #> #>> % & && &< &<| &> * *< *<= *<> *= *> *>= + - -> ->> -|- /
    < <-> << <<= <<| <= <> <@ <^ = > >= >> >>= >^ ? ?# ?& ?- ?-| ?| ?|| @ @-@ @> @? @@ @@@ ^ ^@
    | |&> |/ |>> || ||/ ~ ~* ~<=~ ~<~ ~= ~>=~ ~>~ ~~ ~~* !=
    """
) | {"BETWEEN", "NOT BETWEEN", "BETWEEN SYMMETRIC", "NOT BETWEEN SYMMETRIC"}


def is_builtin_operator(parts: list[str]) -> bool:
    """Whether an operator name as written (``["="]``, ``["s", "==="]``) is a builtin one."""
    if len(parts) == 2 and parts[0] == "pg_catalog":
        parts = parts[1:]
    return len(parts) == 1 and parts[0] in BUILTIN_OPERATORS


def qualified_name(parts: Iterable[str]) -> str:
    """``schema.name`` as PostgreSQL folded it; a part holding a dot or quote is re-quoted."""
    return ".".join('"' + p.replace('"', '""') + '"' if "." in p or '"' in p else p for p in parts)


def const_text(wrapped: Any) -> str | None:
    """The text of a constant in the JSON parse tree, or None when it is an expression."""
    inner = wrapped.get("A_Const") if isinstance(wrapped, dict) and len(wrapped) == 1 else None
    for key, value in inner.items() if isinstance(inner, dict) else ():
        if isinstance(value, dict) and key in ("sval", "ival", "fval", "boolval"):
            return str(value.get(key, 0 if key == "ival" else "false"))  # JSON omits 0/false
    return None


def call_effect(parts: list[str], args: list[Any]) -> tuple[str, FunctionEffect | None] | None:
    """What calling the function named ``parts`` (as written) with ``args`` (JSON nodes) does.

    None for a known pure builtin; otherwise the name to report and the effect, where an effect
    of None means an unknown (possibly user-defined, possibly writing) function.
    """
    if len(parts) == 2 and parts[0] == "information_schema" and parts[1] in SQL_STANDARD_HELPERS:
        return None  # the SQL-standard views' own helpers, owned by the bootstrap superuser
    if len(parts) != 1 and (len(parts) != 2 or parts[0] != "pg_catalog"):
        return qualified_name(parts), None  # any other schema: a user function whatever its name
    name = parts[-1]
    effect = lookup(name)
    if effect is None and name.startswith(OTHER_SESSIONS_PREFIXES):
        return name, _OTHER_SESSIONS
    if effect is None:
        pure = name in PURE_FUNCTIONS or name.startswith(PURE_PREFIXES)
        return None if pure else (name, None)
    if name == "set_config":
        args = [*args, None, None]
        setting = const_text(args[0])
        # A computed name (lower('CLIENT_ENCODING'), a column) could be any setting.
        extra = (UNKNOWN_SETTING if setting is None
                 else setting_effect(setting, const_text(args[1]) or "?"))
        if extra is not None:
            effect = FunctionEffect(
                effect.categories | extra.categories, effect.flags | extra.flags, extra.what
            )
    return name, effect


def lookup(name: str) -> FunctionEffect | None:
    """The side effect of calling builtin ``name``, or None when it has none we know of."""
    effect = SIDE_EFFECTS.get(name)
    if effect is not None:
        return effect
    for prefix, prefixed_effect in SIDE_EFFECT_PREFIXES:
        if name.startswith(prefix):
            return prefixed_effect
    return None


_ROLE_SETTINGS = frozenset(("role", "session_authorization"))
# Our parser lexes as UTF-8 with standard_conforming_strings on. Other values would let the
# server read different statements than the gateway judged (HOSTILE G.43, G.44).
_LEXER_SAFE_VALUES: dict[str, frozenset[str]] = {
    "client_encoding": frozenset(("utf8", "unicode")),
    "standard_conforming_strings": frozenset(("on", "true", "t", "tr", "tru", "yes", "y", "1")),
    "backslash_quote": frozenset(),
}
# Settings that turn off protections or auditing, or load code: superuser territory.
_ADMIN_SETTINGS = _names(
    """
    session_replication_role default_transaction_read_only transaction_read_only row_security
    allow_system_table_mods ignore_system_indexes zero_damaged_pages ignore_checksum_failure
    lo_compat_privileges session_preload_libraries local_preload_libraries dynamic_library_path
    jit_provider
    """
)
_ADMIN_SETTING_PREFIXES = ("log_", "debug_", "track_")
_ROLE = FunctionEffect(frozenset((Category.ROLE,)), frozenset(("role_change",)),
                       "changes the role statements run as")
_SEARCH_PATH = FunctionEffect(frozenset(), frozenset(("search_path",)), "changes search_path")
_LEXER = FunctionEffect(frozenset((_A,)), frozenset(("lexer_setting",)),
                        "changes how the server reads strings")
_SENSITIVE = FunctionEffect(frozenset((_A,)), frozenset(("sensitive_setting",)),
                            "changes a protection or auditing setting")
#: A setting whose name is computed: it could be any of the above.
UNKNOWN_SETTING = FunctionEffect(
    frozenset((Category.ROLE, _A)), frozenset(("role_change", "lexer_setting", "search_path")),
    "changes a setting whose name wardgate cannot read",
)


def is_role_setting(name: str) -> bool:
    return name.lower() in _ROLE_SETTINGS


def setting_effect(name: str, value: str | None) -> FunctionEffect | None:
    """What setting run-time parameter ``name`` to ``value`` adds beyond SESSION, if anything.

    ``value`` is None for "back to the default" (RESET, SET ... TO DEFAULT) and "?" when it is
    not a constant. Parameter names are case-insensitive (``SET "Role"`` is ``SET ROLE``).
    """
    name = name.lower()
    if name in _ROLE_SETTINGS:
        # Back to the login identity (RESET ROLE, SET ROLE NONE, ... DEFAULT) widens nothing.
        # PostgreSQL compares with "none" exactly: SET ROLE 'NONE' names a role called NONE.
        back = value is None or (name == "role" and value == "none")
        return None if back else _ROLE
    if name == "search_path":
        return _SEARCH_PATH  # a user schema ahead of pg_catalog can shadow builtins
    safe_values = _LEXER_SAFE_VALUES.get(name)
    if safe_values is not None:
        if value is None or value.lower().replace("-", "").replace("_", "") in safe_values:
            return None
        return _LEXER
    if name in _ADMIN_SETTINGS or name.startswith(_ADMIN_SETTING_PREFIXES):
        return _SENSITIVE
    return None
