"""Is what the catalogue holds what the configuration needs? ``vocabsync migrate --check``.

Compares the installed functions, tables, triggers and (delta mode) lookup indexes with the
renderings of :mod:`vocabsync.db.triggers` for the configured mapping, channel and mode, and
lists every difference in words an operator can act on. ``vocabsync migrate`` repairs what the
check finds, except configuration problems (a mapped table or column that does not exist),
which no reinstall can fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from psycopg import sql

from vocabsync.config import Settings
from vocabsync.db.connection import AsyncConn
from vocabsync.db.lookup_indexes import LookupIndex, lookup_indexes, unindexed
from vocabsync.db.quoting import MAX_IDENTIFIER_BYTES, quote_ident, quote_literal
from vocabsync.db.triggers import (
    DEFAULT_TRIGGER_MODE,
    DELTA_FUNCTION_SIGNATURE,
    FAILURE_LOG_TABLE,
    FUNCTION_SIGNATURE,
    IDENTITY_FUNCTION_SIGNATURE,
    TRIGGER_MODES,
    TRIGGER_NAMES,
    TriggerMode,
    TriggerSpec,
    delta_function_body,
    function_body,
    identity_function_body,
    printed_when_condition,
    require_mode,
    trigger_specs,
)
from vocabsync.sources import SourceMap

# pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h).
TGTYPE_ROW: Final = 1
TGTYPE_BEFORE: Final = 2
TGTYPE_INSERT: Final = 4
TGTYPE_DELETE: Final = 8
TGTYPE_UPDATE: Final = 16
TGTYPE_TRUNCATE: Final = 32
TGTYPE_INSTEAD: Final = 64
EVENT_BITS: Final[dict[str, int]] = {
    "INSERT": TGTYPE_INSERT,
    "UPDATE": TGTYPE_UPDATE,
    "DELETE": TGTYPE_DELETE,
    "TRUNCATE": TGTYPE_TRUNCATE,
}

_TABLE_KINDS: Final[dict[str, str]] = {
    "v": "view",
    "m": "materialized view",
    "i": "index",
    "I": "partitioned index",
    "S": "sequence",
    "c": "composite type",
    "t": "TOAST table",
}
_TRIGGERABLE_KINDS: Final = frozenset({"r", "p", "f"})
_FOREIGN: Final = "f"


@dataclass(frozen=True, slots=True)
class InstalledTrigger:
    """What the catalogue says about one installed trigger."""

    tgtype: int
    enabled: str
    function_oid: int
    called: str
    has_when: bool
    update_of: frozenset[str]
    """The ``UPDATE OF`` columns (empty: any UPDATE)."""
    definition: str
    """``pg_get_triggerdef()``: the WHEN condition as PostgreSQL prints it."""
    arguments: tuple[str, ...] = ()
    old_table: str | None = None
    new_table: str | None = None


@dataclass(slots=True)
class TriggerCheck:
    """What is wrong with the installed triggers (and indexes); ``ok`` when nothing is."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    missing_tables: list[str] = field(default_factory=list)
    """Tables of the mapping that do not exist (or whose names PostgreSQL cannot hold)."""
    configuration_problems: list[str] = field(default_factory=list)
    """The problems (also in ``problems``) that reinstalling the triggers cannot fix: missing
    tables or columns, views. They need VOCABSYNC_SOURCES or the schema changed."""
    mode: TriggerMode = DEFAULT_TRIGGER_MODE
    """The mode checked for (the configured one)."""
    installed_mode: TriggerMode | None = None
    """The mode whose triggers are installed exactly as rendered on every table (whatever the
    functions look like); None when no mode's are."""
    before_update_tables: frozenset[str] = frozenset()
    """Tables of the mapping with BEFORE UPDATE row triggers (see ``trigger_specs``)."""
    index_problems: list[str] = field(default_factory=list)
    """Delta mode: vocabulary columns whose lookups no index serves (also in ``problems``);
    ``vocabsync migrate`` builds the indexes, concurrently."""
    missing_indexes: list[LookupIndex] = field(default_factory=list)

    @property
    def needs_reinstall(self) -> bool:
        """Do the functions or triggers differ from the rendering (what a reinstall fixes)?"""
        others = set(self.configuration_problems) | set(self.index_problems)
        return any(problem not in others for problem in self.problems)


_FUNCTION_QUERY: Final = """
SELECT p.oid, p.prosrc, p.proconfig, l.lanname::text, p.prorettype::pg_catalog.regtype::text,
       pg_catalog.obj_description(p.oid, 'pg_proc') IS NOT NULL
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE p.oid = pg_catalog.to_regprocedure(%s)
"""

_FAILURE_LOG_QUERY: Final = "SELECT pg_catalog.to_regclass(%s) IS NOT NULL"

# One row per (table, trigger name): the table (if it exists), its columns, the installed trigger
# of that name (if any), and whether the table (or a partition) has BEFORE UPDATE row triggers.
_BEFORE_UPDATE_ROW: Final = TGTYPE_ROW | TGTYPE_BEFORE | TGTYPE_UPDATE
_TRIGGERS_QUERY: Final = f"""
SELECT s.n,
       c.oid IS NOT NULL,
       c.relkind::text,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       tr.oid IS NOT NULL,
       tr.tgtype::int,
       tr.tgenabled::text,
       tr.tgfoid::int8,
       tr.tgfoid::pg_catalog.regprocedure::text,
       tr.tgqual IS NOT NULL,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = tr.tgrelid AND a.attnum = ANY (tr.tgattr::pg_catalog.int2[])),
       pg_catalog.pg_get_triggerdef(tr.oid),
       EXISTS (SELECT FROM pg_catalog.pg_trigger b
               WHERE (b.tgrelid = c.oid  -- a plain table is not in its own "partition tree"
                      OR b.tgrelid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(c.oid) p))
                 AND NOT b.tgisinternal
                 AND b.tgtype::int & {_BEFORE_UPDATE_ROW} = {_BEFORE_UPDATE_ROW}),
       tr.tgnargs::int,
       tr.tgargs,
       tr.tgoldtable::text,
       tr.tgnewtable::text
FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[]))
     WITH ORDINALITY AS s(quoted, trigger_name, n)
LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(s.quoted)
LEFT JOIN pg_catalog.pg_trigger tr
       ON tr.tgrelid = c.oid AND tr.tgname = s.trigger_name AND NOT tr.tgisinternal
ORDER BY s.n
"""

# The server's own quoting (only where needed, by its keyword list), as pg_get_triggerdef uses.
_QUOTE_QUERY: Final = """
SELECT pg_catalog.quote_ident(u.name)
FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS u(name, n)
ORDER BY u.n
"""


async def check_triggers(
    conn: AsyncConn,
    settings: Settings,
    *,
    mode: TriggerMode | None = None,
    check_indexes: bool = True,
) -> TriggerCheck:
    """Compare what is installed with what ``settings`` need; list every difference.

    Checks the mode's trigger function (present, a trigger function with the current rendering
    for ``settings.pg_channel`` and, in delta mode, the mapping: a function left from another
    channel would notify where nobody listens), the identity function and the failure log
    (present), every table and vocabulary column of the mapping, and each table's triggers for
    ``mode`` (default ``settings.trigger_mode``): timing, level, events, transition tables,
    enabled, the function and its arguments, the WHEN condition comparing exactly the mapped
    columns, and no trigger of another mode left behind. In delta mode also whether an index
    serves each column's lookups (unless ``check_indexes`` is false). Finds which mode, if any,
    is completely installed: when it is not the one checked for, that is the one problem
    reported about the triggers.
    """
    mode = settings.trigger_mode if mode is None else mode
    require_mode(mode)
    sources = settings.sources
    function_problems: list[str] = []
    config_problems: list[str] = []
    missing_tables: list[str] = []

    if mode == "delta":
        await _check_function(
            conn,
            DELTA_FUNCTION_SIGNATURE,
            delta_function_body(sources, settings.pg_channel),
            f"the channel {quote_literal(settings.pg_channel)} and VOCABSYNC_SOURCES (edited by "
            "hand, or the channel or the mapping changed since it was installed)",
            function_problems,
        )
    else:
        await _check_function(
            conn,
            FUNCTION_SIGNATURE,
            function_body(settings.pg_channel),
            f"channel {quote_literal(settings.pg_channel)} (edited by hand, or "
            "VOCABSYNC_PG_CHANNEL changed since it was installed)",
            function_problems,
        )
    await _check_function(
        conn,
        IDENTITY_FUNCTION_SIGNATURE,
        identity_function_body(),
        "this release (edited by hand, or from another release)",
        function_problems,
        returns="text",
        needs_comment=True,
    )
    cursor = await conn.execute(_FAILURE_LOG_QUERY, (FAILURE_LOG_TABLE,))
    row = await cursor.fetchone()
    if row is None or not row[0]:
        function_problems.append(
            f"table {FAILURE_LOG_TABLE} (where the function counts failed notifies) is missing"
        )

    checkable: list[str] = []
    for table in sources.tables:
        if _quote_or_none(table) is None:
            missing_tables.append(table)
            config_problems.append(
                f"table name {table!r} is not a valid PostgreSQL identifier (empty, NUL or over "
                f"{MAX_IDENTIFIER_BYTES} bytes): fix VOCABSYNC_SOURCES"
            )
        else:
            checkable.append(table)

    pairs = [(table, name) for table in checkable for name in TRIGGER_NAMES]
    cursor = await conn.execute(
        _TRIGGERS_QUERY, ([quote_ident(table) for table, _ in pairs], [n for _, n in pairs])
    )
    rows = await cursor.fetchall()
    present: list[str] = []
    foreign: set[str] = set()
    before_update_tables: set[str] = set()
    installed: dict[tuple[str, str], InstalledTrigger] = {}
    for (table, name), row in zip(pairs, rows, strict=True):
        (_, exists, relkind, columns, has_trigger, tgtype, enabled, tgfoid, called, has_when,
         update_of, definition, has_before_update, nargs, args, old_table,
         new_table) = row  # fmt: skip
        if not exists:
            if name == TRIGGER_NAMES[0]:
                missing_tables.append(table)
                config_problems.append(_missing_table_problem(sources, table))
            continue
        if name == TRIGGER_NAMES[0]:
            present.append(table)
            config_problems.extend(_table_problems(sources, table, relkind, columns, mode))
            if has_before_update:
                before_update_tables.add(table)
            if relkind == _FOREIGN:
                foreign.add(table)
        if has_trigger:
            installed[(table, name)] = InstalledTrigger(
                tgtype=tgtype,
                enabled=enabled,
                function_oid=int(tgfoid),
                called=called,
                has_when=has_when,
                update_of=frozenset(update_of or ()),
                definition=definition or "",
                arguments=_trigger_arguments(nargs, args),
                old_table=old_table,
                new_table=new_table,
            )

    function_oids = await _function_oids(conn)
    printed = await _server_quoted(
        conn, list(dict.fromkeys(c for t in present for c in sources.columns_of(t)))
    )
    specs = {
        m: [
            spec
            for spec in trigger_specs(sources, m, before_update_tables)
            if spec.table in present
        ]
        for m in TRIGGER_MODES
    }
    per_mode = {
        m: _mode_problems(m, specs, installed, printed, function_oids) for m in TRIGGER_MODES
    }
    installed_mode: TriggerMode | None = None
    if present and not config_problems:
        installed_mode = next((m for m in TRIGGER_MODES if not per_mode[m]), None)

    if installed_mode is not None and installed_mode != mode:
        trigger_problems = [
            f"the {installed_mode}-mode triggers are installed, but the configured mode is "
            f"{mode} (VOCABSYNC_TRIGGER_MODE or `vocabsync migrate --mode`): `vocabsync "
            "migrate` switches them"
        ]
    else:
        trigger_problems = per_mode[mode]

    missing_indexes: list[LookupIndex] = []
    if mode == "delta" and check_indexes and not config_problems:
        wanted = [
            i for i in lookup_indexes(sources) if i.table in present and i.table not in foreign
        ]
        missing_indexes = await unindexed(conn, wanted)
    index_problems = [
        f"no index serves the lookups of {index.describe()}: `vocabsync migrate` builds "
        f"{quote_ident(index.name)} (CREATE INDEX CONCURRENTLY)"
        for index in missing_indexes
    ]
    problems = config_problems + function_problems + trigger_problems + index_problems
    return TriggerCheck(
        ok=not problems,
        problems=problems,
        missing_tables=missing_tables,
        configuration_problems=config_problems,
        mode=mode,
        installed_mode=installed_mode,
        before_update_tables=frozenset(before_update_tables),
        index_problems=index_problems,
        missing_indexes=missing_indexes,
    )


def _trigger_arguments(nargs: int | None, raw: bytes | None) -> tuple[str, ...]:
    """``pg_trigger.tgargs``: ``nargs`` strings, each ending in a NUL byte."""
    if not nargs or raw is None:
        return ()
    return tuple(part.decode("utf-8", "replace") for part in bytes(raw).split(b"\x00")[:nargs])


async def _function_oids(conn: AsyncConn) -> dict[str, int | None]:
    """The OIDs of both trigger functions (None where one does not exist)."""
    signatures = [FUNCTION_SIGNATURE, DELTA_FUNCTION_SIGNATURE]
    cursor = await conn.execute(
        "SELECT pg_catalog.to_regprocedure(s)::int8 FROM pg_catalog.unnest(%s::text[])"
        " WITH ORDINALITY AS u(s, n) ORDER BY u.n",
        (signatures,),
    )
    rows = await cursor.fetchall()
    return {s: (None if r[0] is None else int(r[0])) for s, r in zip(signatures, rows, strict=True)}


async def _server_quoted(conn: AsyncConn, names: list[str]) -> dict[str, str]:
    """``names`` quoted by the server's ``quote_ident()``."""
    if not names:
        return {}
    cursor = await conn.execute(_QUOTE_QUERY, (names,))
    return {name: row[0] for name, row in zip(names, await cursor.fetchall(), strict=True)}


def _mode_problems(
    mode: TriggerMode,
    specs: Mapping[TriggerMode, list[TriggerSpec]],
    installed: Mapping[tuple[str, str], InstalledTrigger],
    printed: Mapping[str, str],
    function_oids: Mapping[str, int | None],
) -> list[str]:
    """What differs from ``mode``'s triggers on the existing tables, in table order."""
    problems: list[str] = []
    wanted = {(spec.table, spec.name): spec for spec in specs[mode]}
    for (table, name), spec in wanted.items():
        found = installed.get((table, name))
        if found is None:
            problems.append(f"trigger {name} on {quote_ident(table)} is missing")
            continue
        printed_when = None
        if spec.when_columns and all(column in printed for column in spec.when_columns):
            printed_when = printed_when_condition([printed[c] for c in spec.when_columns])
        problems.extend(_trigger_problems(spec, found, printed_when, function_oids))
    for table, name in installed:
        if (table, name) not in wanted:
            owners = [m for m in TRIGGER_MODES if any(s.name == name for s in specs[m])]
            problems.append(
                f"trigger {name} on {quote_ident(table)} is not part of {mode} mode (left over "
                f"from {' or '.join(owners) or 'an unknown'} mode)"
            )
    return problems


def _missing_table_problem(sources: SourceMap, table: str) -> str:
    fields = ", ".join(sources.fields_of(table))
    remedy = (
        "run `vocabsync migrate` (it creates the default tables) or fix VOCABSYNC_SOURCES"
        if sources.defaults_unchanged and table in SourceMap.default().tables
        else "fix VOCABSYNC_SOURCES or create the table"
    )
    return f"table {quote_ident(table)} (vocabulary fields: {fields}) does not exist: {remedy}"


def _quote_or_none(name: str) -> str | None:
    try:
        return quote_ident(name)
    except ValueError:
        return None


def _normalise(text: str) -> str:
    return " ".join(text.split())


async def _check_function(
    conn: AsyncConn,
    signature: str,
    body: str,
    expected_for: str,
    problems: list[str],
    *,
    returns: str = "trigger",
    needs_comment: bool = False,
) -> None:
    cursor = await conn.execute(_FUNCTION_QUERY, (signature,))
    row = await cursor.fetchone()
    if row is None:
        problems.append(f"function {signature} is missing")
        return
    _, source, config, language, return_type, has_comment = row
    if return_type != returns or language != "plpgsql":
        kind = "a PL/pgSQL trigger function" if returns == "trigger" else f"PL/pgSQL, {returns}"
        problems.append(f"function {signature} is not {kind} (language {language})")
    elif _normalise(source) != _normalise(body):
        problems.append(
            f"function {signature} differs from the expected definition for {expected_for}"
        )
    if list(config or []) != ['search_path=""']:
        problems.append(f"function {signature} does not have SET search_path = ''")
    if needs_comment and not has_comment:
        problems.append(
            f"function {signature} has no generation (its comment): versions could not tell "
            "this database from a copy"
        )


def _table_problems(
    sources: SourceMap, table: str, relkind: str, columns: Sequence[str], mode: TriggerMode
) -> list[str]:
    table_sql = quote_ident(table)
    problems: list[str] = []
    if relkind not in _TRIGGERABLE_KINDS:
        kind = _TABLE_KINDS.get(relkind, f"relation of kind {relkind!r}")
        problems.append(
            f"{table_sql} is a {kind}, not a table, so its changes cannot be followed: point "
            "VOCABSYNC_SOURCES at the table it reads from"
        )
    elif relkind == _FOREIGN and mode == "delta":
        problems.append(
            f"{table_sql} is a foreign table, which cannot have the transition tables delta "
            "mode reads: use VOCABSYNC_TRIGGER_MODE=precise"
        )
    for name in sources.fields_of(table):
        column = sources.sources[name].column
        if column not in columns:
            problems.append(
                f"column {table_sql}.{sql.Identifier(column).as_string()} (vocabulary field "
                f"{name}) does not exist: fix VOCABSYNC_SOURCES"
            )
    return problems


def _trigger_problems(
    spec: TriggerSpec,
    found: InstalledTrigger,
    printed_when: str | None,
    function_oids: Mapping[str, int | None],
) -> list[str]:
    """How one installed trigger differs from ``spec``; ``printed_when`` is its expected WHEN
    condition as the server prints it (None when it cannot be known: a column is missing)."""
    what = f"trigger {spec.name} on {quote_ident(spec.table)}"
    tgtype = found.tgtype
    problems: list[str] = []
    if tgtype & TGTYPE_INSTEAD:
        problems.append(f"{what} fires INSTEAD OF instead of AFTER")
    elif tgtype & TGTYPE_BEFORE:
        problems.append(f"{what} fires BEFORE instead of AFTER")
    is_row = bool(tgtype & TGTYPE_ROW)
    if is_row and not spec.for_each_row:
        problems.append(f"{what} is FOR EACH ROW instead of FOR EACH STATEMENT")
    elif spec.for_each_row and not is_row:
        problems.append(f"{what} is FOR EACH STATEMENT instead of FOR EACH ROW")
    missing = [event for event in spec.events if not tgtype & EVENT_BITS[event]]
    if missing:
        problems.append(f"{what} misses {', '.join(missing)}")
    extra = [e for e, bit in EVENT_BITS.items() if tgtype & bit and e not in spec.events]
    if extra:
        problems.append(f"{what} also fires on {', '.join(extra)}")
    problems.extend(_update_of_problems(spec, found.update_of))
    if (found.old_table, found.new_table) != (spec.old_table, spec.new_table):
        problems.append(f"{what} does not have the transition table {_referencing(spec)}")
    if not spec.when_columns:
        if found.has_when:
            problems.append(f"{what} has a WHEN condition")
    elif not found.has_when:
        problems.append(f"{what} has no WHEN condition, so it fires on every UPDATE")
    elif printed_when is None or f" WHEN ({printed_when}) EXECUTE " not in found.definition:
        columns = ", ".join(spec.when_columns)
        problems.append(
            f"{what} does not compare exactly the vocabulary columns ({columns}): "
            "VOCABSYNC_SOURCES changed since it was installed, or it was edited"
        )
    if found.enabled == "D":
        problems.append(f"{what} is disabled")
    elif found.enabled == "R":
        problems.append(f"{what} fires only in replica mode (ENABLE REPLICA TRIGGER)")
    expected_oid = function_oids.get(spec.function)
    if expected_oid is None or found.function_oid != expected_oid:
        problems.append(
            f"{what} calls another function ({found.called}) instead of {spec.function}"
        )
    elif found.arguments != spec.arguments:
        wanted = ", ".join(quote_literal(a) for a in spec.arguments) or "no arguments"
        problems.append(f"{what} passes other arguments to {spec.function} than {wanted}")
    return problems


def _referencing(spec: TriggerSpec) -> str:
    if spec.old_table:
        return f"REFERENCING OLD TABLE AS {spec.old_table}"
    if spec.new_table:
        return f"REFERENCING NEW TABLE AS {spec.new_table}"
    return "(none)"


def _update_of_problems(spec: TriggerSpec, installed: frozenset[str]) -> list[str]:
    what = f"trigger {spec.name} on {quote_ident(spec.table)}"
    if installed == frozenset(spec.update_of):
        return []
    if not spec.update_of and "UPDATE" in spec.events:
        if spec.for_each_row:
            return [
                f"{what} fires only on UPDATE OF some columns, but {quote_ident(spec.table)} has "
                "BEFORE UPDATE row triggers, which may change a vocabulary column that the "
                "UPDATE does not name"
            ]
        return [f"{what} fires only on UPDATE OF some columns"]
    if not spec.update_of:
        return [f"{what} fires only on UPDATE OF some columns"]
    if not installed:
        return [f"{what} fires on every UPDATE, not only on UPDATE OF the vocabulary columns"]
    return [
        f"{what} fires on UPDATE OF other columns ({', '.join(sorted(installed))}) than the "
        f"vocabulary columns ({', '.join(spec.update_of)})"
    ]
