"""The chaos soak's own machinery, checked directly: if it silently did nothing, the soak would
pass without testing anything.

- A shared proxy (every Redis node and Sentinel sits behind one) must tell processes apart, so
  "blackhole instance↔Redis" cuts exactly that process off, and no other.
- After a standby promotion, the writers' ledger is set to what the new primary holds: commits
  the old primary acknowledged and never shipped count as discarded (their values must then be
  gone from every instance), not as lost, and a row whose deletion was lost is expected again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _proxy import ProxyHub, socket_owner
from _soak_writers import ID_RANGE, MARKER, Ledger, Row

ME = "this test"


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo server on loopback (one thread per connection)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy may reset it at the end
            while data := conn.recv(1024):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def roundtrip(port: int, timeout_s: float) -> bytes | None:
    """Send a line through 127.0.0.1:port; its echo, or None when none came in time."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(b"ping\n")
        try:
            return conn.recv(1024)
        except TimeoutError:
            return None


def test_socket_owner_finds_the_process_of_a_loopback_connection(echo_port: int) -> None:
    with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as conn:
        client_port = conn.getsockname()[1]
        assert socket_owner(client_port, echo_port, {os.getpid(): ME}) == ME
        assert socket_owner(client_port, echo_port, {1: "init"}) is None
        assert socket_owner(client_port + 1, echo_port, {os.getpid(): ME}) is None


def test_a_shared_link_holds_only_the_faulted_owners_traffic(echo_port: int) -> None:
    hub = ProxyHub()
    try:
        link = hub.add("shared", "127.0.0.1", echo_port, lambda: {os.getpid(): ME})
        assert roundtrip(link.port, 5) == b"ping\n"
        hub.blackhole("shared", owner="another process")
        assert roundtrip(link.port, 5) == b"ping\n"  # not ours: passes
        hub.blackhole("shared", owner=ME)
        assert roundtrip(link.port, 0.5) is None  # ours: held
        hub.restore("shared", owner=ME)
        assert roundtrip(link.port, 5) == b"ping\n"
        assert link.by_owner.get(ME, 0) >= 3
    finally:
        hub.close()


TABLES_SQL = """
CREATE TABLE "Project" (id bigint PRIMARY KEY, project_name text, location text);
CREATE TABLE "Expenses" (id bigint PRIMARY KEY, file_name text,
    project_id bigint REFERENCES "Project" ON DELETE CASCADE);
CREATE TABLE "CashFlow" (id bigint PRIMARY KEY, file_name text,
    project_id bigint REFERENCES "Project" ON DELETE CASCADE);
CREATE TABLE "ExpensesColumn" (id bigint PRIMARY KEY, column_name text,
    expenses_id bigint REFERENCES "Expenses" ON DELETE CASCADE);
CREATE TABLE "CashFlowColumn" (id bigint PRIMARY KEY, column_name text,
    cashflow_id bigint REFERENCES "CashFlow" ON DELETE CASCADE);
"""


def test_after_a_promotion_the_ledger_holds_what_the_new_primary_holds(pg_url: str) -> None:
    writer = 0
    base = (writer + 1) * ID_RANGE
    kept, discarded, resurrected = base + 1, base + 2, base + 3
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(TABLES_SQL)
        # What the new primary holds: the row the ledger saw deleted is back (its DELETE was
        # never shipped), the row the ledger saw inserted is missing (same reason).
        conn.execute(
            'INSERT INTO "Project" VALUES (%s, %s, %s), (%s, %s, %s)',
            (kept, f"{MARKER}kept", "Pasig", resurrected, f"{MARKER}back", "Cebu"),
        )
        conn.execute('INSERT INTO "Expenses" VALUES (%s, %s, %s)', (base + 4, "f.xlsx", kept))
        ledger = Ledger()
        ledger.put(
            ("Project", kept), Row({"project_name": f"{MARKER}kept", "location": "Pasig"}, None, 0)
        )
        ledger.put(
            ("Project", discarded),
            Row({"project_name": f"{MARKER}discarded", "location": "Iloilo"}, None, 0),
        )
        ledger.put(
            ("Project", resurrected),
            Row({"project_name": f"{MARKER}back", "location": "Cebu"}, None, 0),
        )
        ledger.remove(("Project", resurrected))
        ledger.put(("Expenses", base + 4), Row({"file_name": "f.xlsx"}, kept, 0))

        differences = ledger.reconcile(conn)

        assert len(differences) == 2, differences
        assert ledger.mismatches(conn) == []
    expected = ledger.expected_markers()
    assert expected["projects"] == {f"{MARKER}kept", f"{MARKER}back"}
    assert f"{MARKER}discarded" in ledger.gone_markers()  # must be gone from every instance
    assert ledger.own(writer, "Expenses") == [base + 4]
    ledger.remove(("Project", kept))  # the cascade still follows the rebuilt parent links
    assert ledger.own(writer, "Expenses") == []
