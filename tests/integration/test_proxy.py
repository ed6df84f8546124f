# SPDX-License-Identifier: ISC
"""Proxying: what psycopg, psql and pgbench do through Levee works as it does
against PostgreSQL itself (simple and extended protocol, pipelines, COPY,
LISTEN/NOTIFY, binary formats, large values, notices, parameter status,
startup options, backend identity, termination, many clients)."""

import asyncio
import hashlib
import os
import subprocess
import threading

import psycopg
import pytest

import utils
from utils import SLOW, wait_until

PGBENCH = os.path.join(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"), "pgbench")


def test_simple_query(levee):
    with levee.conn() as c:
        # No parameters: psycopg sends a simple Query message.
        assert c.execute("SELECT 1, 'two'").fetchone() == (1, "two")
        assert c.execute("SELECT current_user, current_database()").fetchone() == ("app", "app")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0")
        assert c.execute("SELECT 3").fetchone() == (3,)


def test_extended_query_and_prepared_statements(levee):
    with levee.conn() as c:
        assert c.execute("SELECT %s::int + %s", (40, 2)).fetchone() == (42,)
        assert c.execute("SELECT %s::text || %s", ("a", "b")).fetchone() == ("ab",)
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT %s::int / 0", (1,))
        # A named server-side prepared statement, executed several times.
        for i in range(6):
            assert c.execute("SELECT %s::int * 10", (i,), prepare=True).fetchone() == (i * 10,)
        assert c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] >= 1


def test_transactions(levee):
    with levee.conn(autocommit=False) as c:
        c.execute("CREATE TEMP TABLE tx (v int)")
        c.execute("INSERT INTO tx VALUES (1)")
        c.rollback()
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM tx")
        c.rollback()
        c.execute("CREATE TEMP TABLE tx (v int)")
        c.execute("INSERT INTO tx VALUES (2)")
        c.commit()
        assert c.execute("SELECT v FROM tx").fetchall() == [(2,)]
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        c.commit()
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_psql(levee):
    r = levee.psql("-At", "-c", "SELECT 40 + 2")
    assert r.stdout == "42\n"
    script = ("CREATE TEMP TABLE p (v int);\n"
              "INSERT INTO p VALUES (1), (2), (3);\n"
              "\\copy p FROM stdin\n4\n5\n\\.\n"
              "SELECT sum(v) FROM p;\n")
    r = levee.psql("-At", "-q", "-f", "-", input=script)
    assert r.stdout.strip() == "15", r.stderr
    # Several statements in one simple Query message.
    r = levee.psql("-At", "-c", "SELECT 1; SELECT 2")
    assert r.stdout.split() == ["1", "2"]
    r = levee.psql("-At", "-c", "SELECT nope", check=False)
    assert r.returncode != 0 and "nope" in r.stderr


def test_pipeline_with_several_syncs(levee):
    with levee.conn() as c:
        c.execute("CREATE TEMP TABLE pl (v int)")
        with c.pipeline() as p:
            c.execute("INSERT INTO pl VALUES (%s)", (1,))
            c.execute("INSERT INTO pl VALUES (%s)", (2,))
            p.sync()
            cur_sum = c.execute("SELECT sum(v) FROM pl")
            p.sync()
            cur_mul = c.execute("SELECT %s::int * 2", (21,))
            cur_txt = c.execute("SELECT %s::text", ("x",))
        assert cur_sum.fetchone() == (3,)
        assert cur_mul.fetchone() == (42,)
        assert cur_txt.fetchone() == ("x",)
        # An error aborts the rest of its sync group only.
        with pytest.raises(psycopg.errors.DivisionByZero):
            with c.pipeline() as p:
                c.execute("INSERT INTO pl VALUES (%s)", (10,))
                p.sync()
                c.execute("SELECT 1 / %s::int", (0,))
                c.execute("INSERT INTO pl VALUES (%s)", (100,))
                p.sync()
        assert c.execute("SELECT sum(v) FROM pl").fetchone() == (13,)


def test_copy_from_stdin_and_to_stdout(levee):
    rows = [(i, f"name {i}") for i in range(20000)]
    with levee.conn() as c:
        c.execute("CREATE TEMP TABLE cp (id int, name text)")
        with c.cursor().copy("COPY cp (id, name) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
        assert c.execute("SELECT count(*), sum(id) FROM cp").fetchone() == (
            len(rows), sum(r[0] for r in rows))
        out = []
        with c.cursor().copy("COPY (SELECT id, name FROM cp ORDER BY id) TO STDOUT") as copy:
            for r in copy.rows():
                out.append((int(r[0]), r[1]))
        assert out == rows
        # A COPY the server rejects ends with an error and the session goes on.
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with c.cursor().copy("COPY cp (id, name) FROM STDIN") as copy:
                copy.write(b"1\tok\nnot-a-number\tbad\n")
        assert c.execute("SELECT count(*) FROM cp").fetchone() == (len(rows),)


def test_listen_notify(levee):
    a = levee.conn()
    b = levee.conn()
    got = []
    a.add_notify_handler(got.append)
    a.execute("LISTEN levee_chan")
    sender_pid = b.execute("SELECT pg_backend_pid()").fetchone()[0]
    b.execute("NOTIFY levee_chan, 'hello'")
    wait_until(lambda: a.execute("SELECT 1") and got, 5 * SLOW)
    n = got[0]
    assert (n.channel, n.payload) == ("levee_chan", "hello")
    assert n.pid == sender_pid == b.info.backend_pid


def test_notification_reaches_an_idle_client(levee):
    """The listener sends nothing after LISTEN; Levee must forward the
    NotificationResponse as it arrives."""
    with utils.RawConn(levee.port) as rc:
        rc.login()
        assert [k for k, _ in rc.query("LISTEN idle_chan")][-1] == b"Z"
        with levee.conn() as b:
            b.execute("NOTIFY idle_chan, 'wake up'")
        kind, body = rc.recv_msg(timeout=5 * SLOW)
        assert kind == b"A"
        assert body[4:].split(b"\0")[:2] == [b"idle_chan", b"wake up"]


def test_binary_parameters_and_results(levee):
    with levee.conn() as c:
        cur = c.cursor(binary=True)
        values = (b"\x00\x01\xff" * 100, 2 ** 40, "h\u00e9llo", 1.5, True, None)
        cur.execute("SELECT %b::bytea, %b::int8, %b::text, %b::float8, %b::bool, %b::int4",
                    values)
        assert cur.fetchone() == values
        assert [cur.pgresult.fformat(i) for i in range(6)] == [1] * 6
        # Mixed: binary parameters, text results.
        assert c.execute("SELECT %b::int4 + 1", (41,)).fetchone() == (42,)


@pytest.mark.slow
def test_100mb_value_round_trip(levee):
    data = os.urandom(1024 * 1024) * 100
    with levee.conn() as c:
        cur = c.cursor(binary=True)
        cur.execute("SELECT %b::bytea", (data,))
        got = cur.fetchone()[0]
        assert len(got) == len(data) and got == data
        del got
        text = "levee" * (20 * 1024 * 1024)
        assert c.execute("SELECT length(t), md5(t) FROM (SELECT %s::text AS t) s",
                         (text,)).fetchone() == (len(text),
                                                  hashlib.md5(text.encode()).hexdigest())
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_notice_response(levee):
    with levee.conn() as c:
        notices = []
        c.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized,
                                                       d.message_primary)))
        c.execute("DO $$BEGIN RAISE NOTICE 'levee notice %', 42; END$$")
        assert ("NOTICE", "levee notice 42") in notices
        c.execute("DO $$BEGIN RAISE WARNING 'careful'; END$$")
        assert ("WARNING", "careful") in notices


def test_parameter_status(levee):
    with levee.conn(application_name="startup-app") as c:
        assert c.info.parameter_status("application_name") == "startup-app"
        assert c.execute("SELECT current_setting('application_name')").fetchone() == (
            "startup-app",)
        c.execute("SET application_name = 'levee-test'")
        assert c.info.parameter_status("application_name") == "levee-test"
        for name in ("server_version", "server_encoding", "client_encoding", "DateStyle",
                     "TimeZone", "integer_datetimes", "standard_conforming_strings"):
            assert c.info.parameter_status(name), name
        assert c.info.parameter_status("server_version").startswith("15")
    # The next client on the (pooled) server sees its own value, not the last one's.
    with levee.conn(application_name="second-app") as c:
        assert c.info.parameter_status("application_name") == "second-app"
        assert c.execute("SELECT current_setting('application_name')").fetchone() == (
            "second-app",)


def test_startup_options(levee):
    with levee.conn(options="-c statement_timeout=150 -c search_path=pg_catalog") as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("150ms",)
        assert c.execute("SHOW search_path").fetchone() == ("pg_catalog",)
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(3)")
    with levee.conn() as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_reset_and_discard_restore_startup_values(levee):
    with levee.conn(options="-c statement_timeout=1234") as c:
        def show():
            return c.execute("SHOW statement_timeout").fetchone()[0]
        c.execute("SET statement_timeout = 5000")
        assert show() == "5s"
        c.execute("RESET statement_timeout")
        assert show() == "1234ms"
        c.execute("SET statement_timeout = 5000")
        c.execute("RESET ALL")
        assert show() == "1234ms"
        c.execute("SET statement_timeout = 5000")
        c.execute("DISCARD ALL")
        assert show() == "1234ms"
    with levee.conn() as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_backend_pid_matches_backend_key_data(levee, pg):
    with levee.conn() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pid == c.info.backend_pid
        assert pg.sql("SELECT usename, datname FROM pg_stat_activity WHERE pid = %s",
                      (pid,)) == [("app", "app")]


def test_terminate_own_backend(levee):
    # libpq reports this FATAL as a lost connection, without its SQLSTATE,
    # so the code is checked on a raw connection.
    with utils.RawConn(levee.port) as rc:
        rc.login()
        msgs = rc.query("SELECT pg_terminate_backend(pg_backend_pid())")
        errors = [utils.error_fields(b) for k, b in msgs if k == b"E"]
        assert [e["C"] for e in errors] == ["57P01"], msgs
        rc.expect_closed()
    with levee.conn() as c:
        with pytest.raises(psycopg.OperationalError, match="administrator command"):
            c.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    with levee.conn() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.slow
@pytest.mark.levee_config({"pool": {"pool_mode": "transaction"},
                           "database app": {"pool_size": 10}})
def test_1000_concurrent_clients_through_pool_size_10(levee, pg):
    n_clients = 1000
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], pg.connection_count(dbname="app", user="app"))
            done.wait(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    async def client(i):
        async with await levee.aconn(prepare_threshold=None) as c:
            for j in range(3):
                cur = await c.execute("SELECT %s::int * 2 + %s", (i, j))
                assert (await cur.fetchone()) == (2 * i + j,)
            async with c.transaction():
                cur = await c.execute("SELECT %s::int", (i,))
                assert (await cur.fetchone()) == (i,)
        return i

    async def run_all():
        return await asyncio.wait_for(
            asyncio.gather(*(client(i) for i in range(n_clients))), 90 * SLOW)

    try:
        results = asyncio.run(run_all())
    finally:
        done.set()
        sampler.join()
    assert sorted(results) == list(range(n_clients))
    assert 1 <= peak[0] <= 10, peak[0]


@pytest.mark.slow
@pytest.mark.levee_config({"pool": {"pool_mode": "transaction"},
                           "database app": {"pool_size": 10}})
def test_pgbench_extended(levee, pg):
    env = dict(os.environ, PGPASSWORD="app")
    subprocess.run([PGBENCH, "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(pg.port),
                    "-U", "app", "app"], env=env, check=True, capture_output=True, timeout=120)
    r = subprocess.run([PGBENCH, "-h", "127.0.0.1", "-p", str(levee.port), "-U", "app",
                        "-c", "32", "-j", "2", "-T", "5", "-M", "extended", "-n", "app"],
                       env=env, capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    res = utils.parse_pgbench(r.stdout)
    assert res.get("failed") == 0, r.stdout
    assert res.get("processed", 0) > 100, r.stdout
