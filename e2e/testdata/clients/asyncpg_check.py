"""asyncpg through shardwire: its statement cache (named prepared statements,
Describe before Bind), executemany, binary COPY, transactions, a statement
timeout answered with a cancel, SET isolation and its pool's reset on
release, from several connections at once over fewer server connections.
asyncpg is the driver PgBouncer's transaction mode breaks unless its
statement cache is turned off. Exits non-zero, saying why, on any mismatch.
Run by e2e/TestClientDrivers with the DSN in SHARDWIRE_DSN."""
import asyncio
import time

import asyncpg

from checklib import DSN, check, failures, finish


async def worker(i):
    conn = await asyncpg.connect(DSN)  # default statement_cache_size: 100
    try:
        for n in range(30):
            got = await conn.fetchval("SELECT $1::int + $2::int", n, i)
            check(got == n + i, f"worker {i}: {n}+{i} gave {got}")
        await conn.execute(f"SET application_name = 'asyncpg-{i}'")
        for _ in range(20):
            name = await conn.fetchval("SELECT current_setting('application_name')")
            check(name == f"asyncpg-{i}", f"worker {i}: application_name is {name!r}")
        # executemany: one Parse, many Bind/Execute, one Sync.
        await conn.executemany("INSERT INTO drivers (who, n) VALUES ($1, $2)", [(f"apg{i}", n) for n in range(10)])
        # Binary COPY FROM STDIN.
        await conn.copy_records_to_table("drivers", records=[(f"apgcopy{i}", n) for n in range(100)], columns=["who", "n"])
        # A transaction rolled back leaves nothing.
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO drivers (who, n) VALUES ($1, 99)", f"apg{i}")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        row = await conn.fetchrow("SELECT count(*), sum(n) FROM drivers WHERE who = $1", f"apg{i}")
        check(tuple(row) == (10, 45), f"worker {i}: rows {tuple(row)}, want (10, 45)")
        copied = await conn.fetchval("SELECT count(*) FROM drivers WHERE who = $1", f"apgcopy{i}")
        check(copied == 100, f"worker {i}: copied {copied} rows, want 100")
        # An error keeps its SQLSTATE and the connection goes on.
        try:
            await conn.fetchval("SELECT 1 / $1::int", 0)
            check(False, f"worker {i}: division by zero did not fail")
        except asyncpg.DivisionByZeroError:
            pass
        # asyncpg's timeout sends a CancelRequest: it must stop this query
        # (well before pg_sleep's 10 s) and nothing else.
        start = time.monotonic()
        try:
            await conn.fetchval("SELECT pg_sleep(10)", timeout=0.5)
            check(False, f"worker {i}: pg_sleep(10) was not cancelled")
        except asyncio.TimeoutError:
            pass
        check(time.monotonic() - start < 5, f"worker {i}: the cancel took {time.monotonic() - start:.1f}s")
        check(await conn.fetchval("SELECT 42") == 42, f"worker {i}: after the error and the cancel")
    finally:
        await conn.close()


async def pooled():
    # asyncpg's pool resets a connection on release (pg_advisory_unlock_all,
    # CLOSE ALL, UNLISTEN *, RESET ALL): through shardwire that must neither
    # pin nor fail, and a SET must not survive the release.
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=4)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET statement_timeout = '7s'")
            check(await conn.fetchval("SHOW statement_timeout") == "7s", "pool: SET not seen")
        for _ in range(8):
            async with pool.acquire() as conn:
                got = await conn.fetchval("SHOW statement_timeout")
                check(got == "0", f"pool: statement_timeout {got!r} survived a release")
                check(await conn.fetchval("SELECT $1::text", "x") == "x", "pool: prepared statement after reset")
    finally:
        await pool.close()


async def main():
    results = await asyncio.gather(*(worker(i) for i in range(6)), pooled(), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            failures.append(f"{type(r).__name__}: {r}")


asyncio.run(main())
finish("asyncpg", asyncpg.__version__)
