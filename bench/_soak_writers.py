"""The soak's writers: threads committing a seeded mix of changes, and a ledger of what committed.

Each writer has its own connection (straight to PostgreSQL, never through a faulted link) and its
own ``random.Random``, and commits at a steady rate: single-row inserts, renames and deletes on
the five tables, multi-row inserts (a few, and now and then hundreds: the bridge reads such a
statement's columns whole), transactions of several statements, and TRUNCATEs. Rows get ids from
the writer's own range, so every row a writer touched can be looked up by id; child rows may
hang off the writer's own parents, so deleting a project cascades to its files and categories.

The :class:`Ledger` holds every row the writers believe exists, with its values. A statement
whose outcome is unknown (the connection broke before the answer: PostgreSQL restarted) is
resolved by reading those rows back once reconnected. New values are unique *markers*
(``soak ...``), so "a committed change was lost" is checkable: every marker the ledger holds
must be served by every instance, and no marker it dropped may be. Some values come from small
shared pools instead, so a term is often held by several rows (deleting one must keep it).

TRUNCATE wipes other writers' rows too, so it runs alone: a writer holds a shared lock around
each statement, a TRUNCATE the exclusive one, which orders it exactly against every other write.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

MARKER = "soak "
"""Every unique value starts with this (pool values do not)."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]  # vocabulary columns
    parent: tuple[str, str] | None  # (parent table, foreign key column)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("Project", ("project_name", "location"), None),
        Table("Expenses", ("file_name",), ("Project", "project_id")),
        Table("CashFlow", ("file_name",), ("Project", "project_id")),
        Table("ExpensesColumn", ("column_name",), ("Expenses", "expenses_id")),
        Table("CashFlowColumn", ("column_name",), ("CashFlow", "cashflow_id")),
    )
}
CHILDREN: dict[str, tuple[str, ...]] = {
    name: tuple(t.name for t in TABLES.values() if t.parent and t.parent[0] == name)
    for name in TABLES
}
FIELD_OF: dict[tuple[str, str], str] = {
    ("Project", "project_name"): "projects",
    ("Project", "location"): "project_locations",
    ("Expenses", "file_name"): "expense_files",
    ("CashFlow", "file_name"): "cashflow_files",
    ("ExpensesColumn", "column_name"): "expense_categories",
    ("CashFlowColumn", "column_name"): "cashflow_categories",
}
TRUNCATE_WEIGHTS = {
    "Project": 1,
    "Expenses": 2,
    "CashFlow": 2,
    "ExpensesColumn": 4,
    "CashFlowColumn": 4,
}
"""TRUNCATE ... CASCADE of "Project" empties all five tables, so it is the rarest."""
OPERATIONS = {"insert": 40, "rename": 25, "delete": 20, "transaction": 10, "truncate": 1}
ID_RANGE = 10_000_000_000
"""Writer w's rows have ids in [(w + 1) * ID_RANGE, (w + 2) * ID_RANGE)."""


def truncated_tables(table: str) -> set[str]:
    """What ``TRUNCATE table CASCADE`` empties: the table and every table referencing it."""
    out = {table}
    for child in CHILDREN[table]:
        out |= truncated_tables(child)
    return out


Key = tuple[str, int]  # (table, id)


@dataclass(slots=True)
class Row:
    values: dict[str, str | None]
    parent: int | None
    owner: int


class Ledger:
    """Rows the writers committed and believe exist (thread-safe)."""

    def __init__(self) -> None:
        self.rows: dict[Key, Row] = {}
        self.ever: set[str] = set()
        """Every marker ever committed (or possibly committed)."""
        self.lock = threading.Lock()
        self.commits = 0
        self.in_doubt = 0
        self._owned: dict[tuple[int, str], set[int]] = {}
        self._children: dict[tuple[str, int], set[int]] = {}

    def put(self, key: Key, row: Row) -> None:
        with self.lock:
            if key not in self.rows:
                self._owned.setdefault((row.owner, key[0]), set()).add(key[1])
                spec = TABLES[key[0]]
                if spec.parent is not None and row.parent is not None:
                    self._children.setdefault((key[0], row.parent), set()).add(key[1])
            self.rows[key] = row
            self.ever.update(v for v in row.values.values() if v and v.startswith(MARKER))

    def remove(self, key: Key) -> None:
        """The row and (ON DELETE CASCADE) every row under it."""
        with self.lock:
            self._remove(key)

    def _remove(self, key: Key) -> None:
        row = self.rows.pop(key, None)
        if row is None:
            return
        table, row_id = key
        self._owned.get((row.owner, table), set()).discard(row_id)
        if row.parent is not None:
            self._children.get((table, row.parent), set()).discard(row_id)
        for child in CHILDREN[table]:
            for child_id in list(self._children.pop((child, row_id), ())):
                self._remove((child, child_id))

    def truncate(self, tables: set[str]) -> None:
        with self.lock:
            for key in [k for k in self.rows if k[0] in tables]:
                self._remove(key)

    def own(self, owner: int, table: str) -> list[int]:
        with self.lock:
            return sorted(self._owned.get((owner, table), ()))

    def expected_markers(self) -> dict[str, set[str]]:
        """Per field, the markers that must be served."""
        out: dict[str, set[str]] = {name: set() for name in FIELD_OF.values()}
        with self.lock:
            for (table, _), row in self.rows.items():
                for column, value in row.values.items():
                    if value and value.startswith(MARKER):
                        out[FIELD_OF[(table, column)]].add(value)
        return out

    def gone_markers(self) -> set[str]:
        """Markers that were committed and then renamed, deleted or truncated away."""
        alive = set().union(*self.expected_markers().values())
        with self.lock:
            return self.ever - alive

    def reconcile(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Make the ledger hold exactly the writers' rows the database holds; returns what
        differed. For a promotion: commits the old primary acknowledged and never shipped to
        the standby are gone (their markers now count as removed: no instance may serve them),
        and rows whose deletion was lost that way are back. Writes must be paused."""
        found: dict[Key, Row] = {}
        for table in TABLES.values():
            parent = sql.Identifier(table.parent[1]) if table.parent else sql.SQL("NULL::bigint")
            query = sql.SQL("SELECT id, {}, {} FROM {} WHERE id >= %s").format(
                parent,
                sql.SQL(", ").join(map(sql.Identifier, table.columns)),
                sql.Identifier(table.name),
            )
            for row in conn.execute(query, (ID_RANGE,)).fetchall():
                values = dict(zip(table.columns, row[2:], strict=True))
                owner = int(row[0]) // ID_RANGE - 1
                parent_id = None if row[1] is None else int(row[1])
                found[(table.name, int(row[0]))] = Row(values, parent_id, owner)
        with self.lock:
            differences = [
                f"{key}: ledger {self.rows[key].values if key in self.rows else None}, "
                f"database {found[key].values if key in found else None}"
                for key in sorted(set(self.rows) | set(found))
                if (self.rows[key].values if key in self.rows else None)
                != (found[key].values if key in found else None)
            ]
            self.rows = {}
            self._owned = {}
            self._children = {}
        for key in sorted(found):
            self.put(key, found[key])
        return differences

    def mismatches(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Rows of the writers' id ranges where the database and the ledger disagree."""
        with self.lock:
            expected = {k: dict(r.values) for k, r in self.rows.items()}
        found: dict[Key, dict[str, str | None]] = {}
        for table in TABLES.values():
            columns = sql.SQL(", ").join(map(sql.Identifier, table.columns))
            query = sql.SQL("SELECT id, {} FROM {} WHERE id >= %s").format(
                columns, sql.Identifier(table.name)
            )
            for row in conn.execute(query, (ID_RANGE,)).fetchall():
                found[(table.name, int(row[0]))] = dict(zip(table.columns, row[1:], strict=True))
        problems = []
        for key in sorted(set(expected) | set(found)):
            if expected.get(key) != found.get(key):
                problems.append(f"{key}: ledger {expected.get(key)}, database {found.get(key)}")
        return problems


class WriteGate:
    """A shared/exclusive lock, and the pause switch the soak uses to take a quiet reading."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._paused = False
        self._busy = 0

    @contextlib.contextmanager
    def statement(self, exclusive: bool = False) -> Iterator[None]:
        """Held around one write (its commit included): waits while paused."""
        with self._cond:
            while self._paused or self._exclusive or (exclusive and self._shared):
                self._cond.wait()
            if exclusive:
                self._exclusive = True
            else:
                self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                if exclusive:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._cond.notify_all()

    def pause(self, timeout_s: float) -> bool:
        """Stop new writes and wait until none is in progress; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._paused = True
            while self._shared or self._exclusive:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def wait_while_paused(self, stop: threading.Event) -> None:
        with self._cond:
            while self._paused and not stop.is_set():
                self._cond.wait(0.2)


class InDoubtError(Exception):
    """The connection broke before the answer: the statement may or may not have committed."""


@dataclass
class WriterStats:
    commits: int = 0
    failures: int = 0
    in_doubt: int = 0
    reconnects: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)
    last_error: str = ""


class Writer(threading.Thread):
    """One writer thread: commits the seeded mix at ``rate`` operations per second."""

    def __init__(
        self,
        index: int,
        seed: int,
        database_url: str,
        ledger: Ledger,
        gate: WriteGate,
        stop: threading.Event,
        rate: float,
    ) -> None:
        super().__init__(name=f"soak-writer-{index}", daemon=True)
        self.index = index
        self.rng = random.Random(f"{seed}-writer-{index}")
        self.database_url = database_url
        self.ledger = ledger
        self.gate = gate
        self.stop_event = stop
        self.rate = rate
        self.stats = WriterStats()
        self.error: BaseException | None = None
        self._next_id = (index + 1) * ID_RANGE
        self._values = 0
        self._conn: psycopg.Connection[Any] | None = None

    # --- connection ------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        """Connect, retrying while PostgreSQL restarts; raises only when the soak stops."""
        while True:
            try:
                conn = psycopg.connect(
                    self.database_url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name="soak-writer",
                    options="-c statement_timeout=20s -c lock_timeout=15s",
                )
            except psycopg.OperationalError:
                if self.stop_event.wait(0.2):
                    raise
                continue
            return conn

    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            interval = 1.0 / self.rate
            while not self.stop_event.is_set():
                self.gate.wait_while_paused(self.stop_event)
                if self.stop_event.is_set():
                    break
                operation = self.rng.choices(list(OPERATIONS), list(OPERATIONS.values()))[0]
                self.step(operation)
                # Pacing, not synchronisation: a steady rate with some jitter.
                self.stop_event.wait(interval * self.rng.uniform(0.5, 1.5))
        except BaseException as exc:  # reported by the soak, never silently lost
            self.error = exc
        finally:
            self.close()

    def step(self, operation: str) -> None:
        exclusive = operation == "truncate"
        with self.gate.statement(exclusive=exclusive):
            try:
                planned = self._plan(operation)
                if planned is None:
                    return
                self._execute(planned)
            except InDoubtError:
                self.stats.in_doubt += 1
                self.ledger.in_doubt += 1
                self._resolve(planned)
                return
            except psycopg.Error as exc:  # the statement failed and rolled back
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}".strip()[:200]
                return
        self.stats.commits += 1
        self.ledger.commits += 1
        self.stats.by_operation[operation] = self.stats.by_operation.get(operation, 0) + 1

    # --- planning: what to write, and what the ledger says afterwards ------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _value(self, table: str, column: str) -> str:
        rng = self.rng
        self._values += 1
        unique = f"{MARKER}w{self.index} n{self._values}"
        if column == "location":
            return f"Soak Site {rng.randrange(12)}, Philippines" if rng.random() < 0.7 else unique
        if column == "column_name" and rng.random() < 0.4:
            return f"Soak Cost {rng.randrange(25)}"  # shared by several rows and writers
        if column == "file_name":
            return f"{unique}.xlsx"
        return unique

    def _row(self, table: str) -> tuple[int, Row]:
        spec = TABLES[table]
        parent = None
        if spec.parent is not None and self.rng.random() < 0.5:
            parents = self.ledger.own(self.index, spec.parent[0])
            parent = self.rng.choice(parents) if parents else None
        values: dict[str, str | None] = {c: self._value(table, c) for c in spec.columns}
        return self._new_id(), Row(values, parent, self.index)

    def _plan(self, operation: str) -> list[Statement] | None:
        if operation == "transaction":
            steps = []
            for _ in range(self.rng.randint(2, 4)):
                kind = self.rng.choice(("insert", "insert", "rename", "delete"))
                step = self._plan_one(kind)
                if step is not None:
                    steps.append(step)
            return steps or None
        step = self._plan_one(operation)
        return None if step is None else [step]

    def _plan_one(self, operation: str) -> Statement | None:
        rng = self.rng
        if operation == "truncate":
            table = rng.choices(list(TRUNCATE_WEIGHTS), list(TRUNCATE_WEIGHTS.values()))[0]
            return Truncate(table)
        table = rng.choice(list(TABLES))
        if operation == "insert":
            count = 1
            roll = rng.random()
            if roll < 0.01:
                count = rng.randint(150, 400)  # too many values for one notification
            elif roll < 0.15:
                count = rng.randint(2, 12)
            return Insert(table, [self._row(table) for _ in range(count)])
        own = self.ledger.own(self.index, table)
        if not own:
            return Insert(table, [self._row(table)])
        row_id = rng.choice(own)
        if operation == "delete":
            return Delete(table, row_id)
        columns = TABLES[table].columns
        renamed = [c for c in columns if rng.random() < 0.6] or [rng.choice(columns)]
        return Rename(table, row_id, {c: self._value(table, c) for c in renamed})

    # --- execution -----------------------------------------------------------------------------

    def _execute(self, statements: Sequence[Statement]) -> None:
        conn = self.conn()
        try:
            if len(statements) == 1:
                statements[0].run(conn)
            else:
                with conn.transaction():
                    for statement in statements:
                        statement.run(conn)
        except psycopg.OperationalError as exc:
            if conn.closed or conn.broken:
                self.close()
                raise InDoubtError(str(exc)) from exc
            raise
        for statement in statements:
            statement.record(self.ledger, self.index)

    def _resolve(self, statements: Sequence[Statement]) -> None:
        """Read back what an in-doubt write touched and make the ledger say what committed."""
        for statement in statements:
            statement.possibly(self.ledger)
        while not self.stop_event.is_set():
            try:
                conn = self.conn()
                for statement in statements:
                    statement.resolve(conn, self.ledger, self.index)
                self.stats.reconnects += 1
                return
            except psycopg.OperationalError:
                self.close()
                self.stop_event.wait(0.2)


class Statement:
    """One write; ``record`` updates the ledger after a commit, ``resolve`` after a doubt."""

    table: str

    def run(self, conn: psycopg.Connection[Any]) -> None:
        raise NotImplementedError

    def record(self, ledger: Ledger, owner: int) -> None:
        raise NotImplementedError

    def possibly(self, ledger: Ledger) -> None:
        """Before resolving: markers it may have committed count as "ever committed"."""

    def resolve(self, conn: psycopg.Connection[Any], ledger: Ledger, owner: int) -> None:
        raise NotImplementedError

    def _read(self, conn: psycopg.Connection[Any], table: str, ids: list[int]) -> dict[int, Row]:
        spec = TABLES[table]
        parent = sql.Identifier(spec.parent[1]) if spec.parent else sql.SQL("NULL::bigint")
        query = sql.SQL("SELECT id, {}, {} FROM {} WHERE id = ANY(%s)").format(
            parent, sql.SQL(", ").join(map(sql.Identifier, spec.columns)), sql.Identifier(table)
        )
        out = {}
        for row in conn.execute(query, (ids,)).fetchall():
            values = dict(zip(spec.columns, row[2:], strict=True))
            out[int(row[0])] = Row(values, None if row[1] is None else int(row[1]), -1)
        return out


@dataclass
class Insert(Statement):
    table: str
    rows: list[tuple[int, Row]]

    def run(self, conn: psycopg.Connection[Any]) -> None:
        spec = TABLES[self.table]
        columns = ["id", *spec.columns, *([spec.parent[1]] if spec.parent else [])]
        params: list[object] = []
        for row_id, row in self.rows:
            params += [row_id, *row.values.values(), *([row.parent] if spec.parent else [])]
        one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(columns)))
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
                sql.Identifier(self.table),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join([one] * len(self.rows)),
            ),
            params,
        )

    def record(self, ledger: Ledger, owner: int) -> None:
        for key_id, row in self.rows:
            ledger.put((self.table, key_id), row)

    def possibly(self, ledger: Ledger) -> None:
        with ledger.lock:
            for _, row in self.rows:
                ledger.ever.update(v for v in row.values.values() if v and v.startswith(MARKER))

    def resolve(self, conn: psycopg.Connection[Any], ledger: Ledger, owner: int) -> None:
        found = self._read(conn, self.table, [row_id for row_id, _ in self.rows])
        for row_id, row in self.rows:
            if row_id in found:
                ledger.put((self.table, row_id), row)


@dataclass
class Rename(Statement):
    table: str
    row_id: int
    values: dict[str, str]

    def run(self, conn: psycopg.Connection[Any]) -> None:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(c)) for c in self.values
        )
        conn.execute(
            sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
                sql.Identifier(self.table), assignments
            ),
            [*self.values.values(), self.row_id],
        )

    def record(self, ledger: Ledger, owner: int) -> None:
        key = (self.table, self.row_id)
        with ledger.lock:
            row = ledger.rows.get(key)
        if row is not None:
            ledger.put(key, Row({**row.values, **self.values}, row.parent, row.owner))

    def possibly(self, ledger: Ledger) -> None:
        with ledger.lock:
            ledger.ever.update(v for v in self.values.values() if v.startswith(MARKER))

    def resolve(self, conn: psycopg.Connection[Any], ledger: Ledger, owner: int) -> None:
        found = self._read(conn, self.table, [self.row_id]).get(self.row_id)
        key = (self.table, self.row_id)
        if found is None:
            ledger.remove(key)
            return
        with ledger.lock:
            row = ledger.rows.get(key)
        if row is not None:
            ledger.put(key, Row(found.values, row.parent, row.owner))


@dataclass
class Delete(Statement):
    table: str
    row_id: int

    def run(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(self.table)),
            [self.row_id],
        )

    def record(self, ledger: Ledger, owner: int) -> None:
        ledger.remove((self.table, self.row_id))

    def resolve(self, conn: psycopg.Connection[Any], ledger: Ledger, owner: int) -> None:
        if not self._read(conn, self.table, [self.row_id]):
            ledger.remove((self.table, self.row_id))


@dataclass
class Truncate(Statement):
    table: str

    def run(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.Identifier(self.table)))

    def record(self, ledger: Ledger, owner: int) -> None:
        ledger.truncate(truncated_tables(self.table))

    def resolve(self, conn: psycopg.Connection[Any], ledger: Ledger, owner: int) -> None:
        # It ran alone (the exclusive gate): empty tables mean it committed (and if they were
        # empty before, it changed nothing either way).
        tables = truncated_tables(self.table)
        for table in tables:
            query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            if row is not None and row[0]:
                return
        ledger.truncate(tables)


class Writers:
    """The pool of writer threads."""

    def __init__(self, count: int, seed: int, database_url: str, rate: float) -> None:
        self.ledger = Ledger()
        self.gate = WriteGate()
        self.stop_event = threading.Event()
        self.threads = [
            Writer(i, seed, database_url, self.ledger, self.gate, self.stop_event, rate)
            for i in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def pause(self, timeout_s: float = 60.0) -> bool:
        return self.gate.pause(timeout_s)

    def resume(self) -> None:
        self.gate.resume()

    def errors(self) -> list[str]:
        return [f"{t.name}: {t.error!r}" for t in self.threads if t.error is not None]

    def stop(self) -> None:
        self.stop_event.set()
        self.gate.resume()
        for thread in self.threads:
            thread.join(timeout=30)

    @property
    def commits(self) -> int:
        return sum(t.stats.commits for t in self.threads)

    @property
    def in_doubt(self) -> int:
        return sum(t.stats.in_doubt for t in self.threads)

    @property
    def failures(self) -> int:
        return sum(t.stats.failures for t in self.threads)
