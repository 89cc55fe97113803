"""psycopg 3 through shardwire: named prepared statements, pipeline mode,
SET isolation, transactions and errors, from several connections at once
over fewer server connections. Exits non-zero, saying why, on any mismatch.
Run by e2e/TestClientDrivers with the DSN in SHARDWIRE_DSN."""
import threading

import psycopg
from psycopg import errors, sql

from checklib import DSN, check, failures, finish


def worker(i):
    try:
        with psycopg.connect(DSN, autocommit=True) as conn:
            # prepare=True: a named statement on the server from the start.
            for n in range(30):
                row = conn.execute("SELECT %s::int + %s::int", (n, i), prepare=True).fetchone()
                check(row[0] == n + i, f"worker {i}: {n}+{i} gave {row[0]}")
            conn.execute(sql.SQL("SET application_name = {}").format(sql.Literal(f"psycopg-{i}")))
            for _ in range(20):
                name = conn.execute("SELECT current_setting('application_name')", prepare=True).fetchone()[0]
                check(name == f"psycopg-{i}", f"worker {i}: application_name is {name!r}")
            # Pipeline mode: many statements, one Sync.
            with conn.pipeline():
                curs = [conn.execute("INSERT INTO drivers (who, n) VALUES (%s, %s) RETURNING n", (f"py{i}", n)) for n in range(10)]
            check([c.fetchone()[0] for c in curs] == list(range(10)), f"worker {i}: pipeline results")
            # A transaction rolled back leaves nothing.
            with conn.transaction(force_rollback=True):
                conn.execute("INSERT INTO drivers (who, n) VALUES (%s, 99)", (f"py{i}",))
            got = conn.execute("SELECT count(*), sum(n) FROM drivers WHERE who = %s", (f"py{i}",)).fetchone()
            check(tuple(got) == (10, 45), f"worker {i}: rows {got}, want (10, 45)")
            # An error keeps its SQLSTATE and the connection goes on.
            try:
                conn.execute("SELECT 1 / %s::int", (0,))
                check(False, f"worker {i}: division by zero did not fail")
            except errors.DivisionByZero:
                pass
            check(conn.execute("SELECT 42").fetchone()[0] == 42, f"worker {i}: after the error")
    except Exception as e:  # noqa: BLE001 - any failure is reported
        failures.append(f"worker {i}: {type(e).__name__}: {e}")


threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
finish("psycopg", psycopg.__version__)
