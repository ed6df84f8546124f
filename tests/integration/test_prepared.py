# SPDX-License-Identifier: ISC
"""Protocol-level named prepared statements in transaction mode: Levee maps
each client's names to statements it prepares on whichever server the client
gets (once per server, shared by clients preparing the same text), answers
ParseComplete/CloseComplete itself when needed, evicts beyond
max_prepared_statements, and keeps PostgreSQL's error behaviour."""

import os
import subprocess
import threading

import psycopg
import pytest

import utils
from utils import SLOW, wait_until

PGBENCH = os.path.join(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"), "pgbench")
TXN = {"pool": {"pool_mode": "transaction"}}
# psycopg's prepare_threshold=None turns prepared statements off even with
# prepare=True; a large threshold leaves preparing to the explicit prepare=True.
PREPARE_LATER = 100000


def cfg(*layers):
    return utils.merge_overrides(TXN, *layers)


def prepared(levee, result):
    return levee.metrics().sum("levee_prepared_statements_total", result=result)


def one(conn, sql, params=None, **kw):
    return conn.execute(sql, params, **kw).fetchone()


def kinds(msgs):
    return [k for k, _ in msgs]


def errors_in(msgs):
    return [utils.error_fields(b) for k, b in msgs if k == b"E"]


def rows_in(msgs):
    return [utils.data_row(b) for k, b in msgs if k == b"D"]


def run(rc, *messages):
    """Sends the messages plus a Sync; returns what came back up to ReadyForQuery."""
    rc.send(b"".join(messages) + utils.sync_message())
    return rc.until_ready()


def exec_named(rc, name, params=()):
    return run(rc, utils.bind_message(name, params), utils.execute_message())


# ---------------------------------------------------------------------------
# psycopg


@pytest.mark.parametrize("workers", [1, 2])
def test_psycopg_prepared_statements_across_server_swaps(levee_factory, workers):
    levee = levee_factory(cfg({"levee": {"workers": workers}, "database app": {"pool_size": 2}}))
    hits0, misses0 = prepared(levee, "hit"), prepared(levee, "miss")
    n_clients, rounds = 4, 60
    errors = []
    pids = [set() for _ in range(n_clients)]
    conns = [levee.conn(prepare_threshold=PREPARE_LATER) for _ in range(n_clients)]

    def client(k):
        c = conns[k]
        try:
            for i in range(rounds):
                # psycopg names statements _pg3_0, _pg3_1, ... on every connection, so
                # the same client name means a different statement on each client.
                got = one(c, f"SELECT %s::int * {k + 1} + %s::int", (i, k), prepare=True)
                assert got == (i * (k + 1) + k,), (k, i, got)
                got = one(c, "SELECT %s::text || '-shared'", (f"{k}.{i}",), prepare=True)
                assert got == (f"{k}.{i}-shared",), (k, i, got)
                if i % 3 == 0:
                    with c.transaction():
                        pid = one(c, "SELECT pg_backend_pid() + %s::int", (0,), prepare=True)[0]
                        got = one(c, f"SELECT %s::int * {k + 1} + %s::int", (1, k),
                                  prepare=True)
                        assert got == (k + 1 + k,), (k, i, got)
                        assert one(c, "SELECT pg_backend_pid()")[0] == pid
                    pids[k].add(pid)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((k, repr(exc)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * SLOW)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    # Four clients on two servers: servers were shared, so one server saw several
    # clients' _pg3_0 (different texts under the same client name).
    assert sum(len(p) for p in pids) > len(set().union(*pids)), pids
    hits = prepared(levee, "hit") - hits0
    misses = prepared(levee, "miss") - misses0
    assert hits > n_clients * rounds, (hits, misses)
    # Each distinct statement is prepared at most once per server connection.
    n_statements = n_clients + 2
    servers = levee.metrics().sum("levee_server_connections_total")
    assert 1 <= misses <= n_statements * servers, (misses, servers)
    for c in conns:
        assert one(c, "SELECT %s::int", (7,), prepare=True) == (7,)


# ---------------------------------------------------------------------------
# Raw protocol


@pytest.mark.levee_config(cfg({"levee": {"workers": 1}, "database app": {"pool_size": 1}}))
def test_parse_bind_close_and_bind_after_close(levee):
    with utils.RawConn(levee.port) as rc:
        rc.login()
        msgs = run(rc, utils.parse_message("s1", "SELECT $1::int + 1"),
                   utils.bind_message("s1", [41]), utils.execute_message())
        assert kinds(msgs) == [b"1", b"2", b"D", b"C", b"Z"], msgs
        assert rows_in(msgs) == [["42"]]
        # Later transactions (the server went back to the pool in between).
        for v in (1, 2, 3):
            msgs = exec_named(rc, "s1", [v])
            assert rows_in(msgs) == [[str(v + 1)]], msgs
        # Describe of the statement, as drivers do.
        msgs = run(rc, utils.describe_message("S", "s1"))
        assert kinds(msgs) == [b"t", b"T", b"Z"], msgs
        msgs = run(rc, utils.close_message("S", "s1"))
        assert kinds(msgs) == [b"3", b"Z"], msgs
        msgs = exec_named(rc, "s1", [1])
        errs = errors_in(msgs)
        assert [e["C"] for e in errs] == ["26000"], msgs
        assert "s1" in errs[0]["M"], errs  # the client's name, not Levee's
        assert msgs[-1] == (b"Z", b"I")
        # Closing a name that does not exist is not an error, as in PostgreSQL.
        assert kinds(run(rc, utils.close_message("S", "never"))) == [b"3", b"Z"]
        # The name can be used again, for another text.
        msgs = run(rc, utils.parse_message("s1", "SELECT $1::int * 3"),
                   utils.bind_message("s1", [5]), utils.execute_message())
        assert rows_in(msgs) == [["15"]], msgs
        assert rc.query("SELECT 1")[-1] == (b"Z", b"I")


@pytest.mark.levee_config(cfg({"levee": {"workers": 1}, "database app": {"pool_size": 1}}))
def test_parse_of_an_existing_name_fails_as_in_postgres(levee):
    with utils.RawConn(levee.port) as rc:
        rc.login()
        assert kinds(run(rc, utils.parse_message("dup", "SELECT 1"))) == [b"1", b"Z"]
        msgs = run(rc, utils.parse_message("dup", "SELECT 2"))
        assert [e["C"] for e in errors_in(msgs)] == ["42P05"], msgs
        # The first statement is still the one behind the name.
        assert rows_in(exec_named(rc, "dup")) == [["1"]]


@pytest.mark.levee_config(cfg({"levee": {"workers": 1}, "database app": {"pool_size": 2}}))
def test_same_text_shares_one_statement_per_server(levee, pg):
    text = "SELECT $1::int + 1000"
    count_q = f"SELECT count(*) FROM pg_prepared_statements WHERE statement = '{text}'"
    misses0, hits0 = prepared(levee, "miss"), prepared(levee, "hit")
    with utils.RawConn(levee.port) as a, utils.RawConn(levee.port) as b:
        a.login()
        b.login()
        msgs = run(a, utils.parse_message("sa", text), utils.bind_message("sa", [1]),
                   utils.execute_message())
        assert rows_in(msgs) == [["1001"]], msgs
        assert prepared(levee, "miss") == misses0 + 1
        # b prepares the same text under another name on the same (idle) server.
        msgs = run(b, utils.parse_message("sb", text), utils.bind_message("sb", [2]),
                   utils.execute_message())
        assert rows_in(msgs) == [["1002"]], msgs
        assert prepared(levee, "miss") == misses0 + 1
        assert prepared(levee, "hit") > hits0
        # a holds one server; b's transaction gets a second, which needs the statement.
        assert a.query("BEGIN")[-1] == (b"Z", b"T")
        assert b.query("BEGIN")[-1] == (b"Z", b"T")
        pid_a = rows_in(a.query("SELECT pg_backend_pid()"))[0][0]
        pid_b = rows_in(b.query("SELECT pg_backend_pid()"))[0][0]
        assert pid_a != pid_b
        assert rows_in(exec_named(b, "sb", [3])) == [["1003"]]
        assert rows_in(exec_named(a, "sa", [4])) == [["1004"]]
        assert rows_in(a.query(count_q)) == [["1"]]
        assert rows_in(b.query(count_q)) == [["1"]]
        assert prepared(levee, "miss") == misses0 + 2  # one per server that got it
        assert a.query("COMMIT")[-1] == (b"Z", b"I")
        assert b.query("COMMIT")[-1] == (b"Z", b"I")


@pytest.mark.levee_config(cfg({"levee": {"workers": 1}, "database app": {"pool_size": 1},
                               "pool": {"max_prepared_statements": 2}}))
def test_max_prepared_statements_evicts(levee):
    ev0 = prepared(levee, "eviction")
    c = levee.conn(autocommit=False, prepare_threshold=PREPARE_LATER)
    other = levee.conn(prepare_threshold=PREPARE_LATER)
    stmts = [f"SELECT %s::int + {j}" for j in range(5)]
    most = 0
    for r in range(4):
        for j, q in enumerate(stmts):
            with c.transaction():
                assert one(c, q, (r * 10,), prepare=True) == (r * 10 + j,)
                n = one(c, "SELECT count(*) FROM pg_prepared_statements")[0]
                most = max(most, n)
                assert n <= 2, (r, j, n)
            # Another client's statements count against the same server.
            assert one(other, "SELECT %s::int - 1", (j,), prepare=True) == (j - 1,)
    c.commit()
    assert most >= 1
    assert prepared(levee, "eviction") > ev0


@pytest.mark.levee_config(cfg({"levee": {"workers": 1}, "database app": {"pool_size": 1}}))
def test_failing_parse_in_a_pipeline(levee):
    with utils.RawConn(levee.port) as a, utils.RawConn(levee.port) as b:
        a.login()
        b.login()
        a.send(utils.parse_message("bad", "SELEC 1") + utils.bind_message("bad")
               + utils.execute_message() + utils.sync_message()
               + utils.parse_message("good", "SELECT 42") + utils.bind_message("good")
               + utils.execute_message() + utils.sync_message())
        first = a.until_ready()
        assert [e["C"] for e in errors_in(first)] == ["42601"], first
        assert kinds(first) == [b"E", b"Z"], first
        second = a.until_ready()
        assert kinds(second) == [b"1", b"2", b"D", b"C", b"Z"], second
        assert rows_in(second) == [["42"]]
        assert rows_in(exec_named(a, "good")) == [["42"]]
    # The same through psycopg's pipeline mode.
    c = levee.conn(prepare_threshold=PREPARE_LATER)
    with pytest.raises(psycopg.errors.SyntaxError):
        with c.pipeline() as p:
            c.execute("SELEC %s::int", (1,), prepare=True)
            p.sync()
    with c.pipeline():
        cur1 = c.execute("SELECT %s::int", (5,), prepare=True)
        cur2 = c.execute("SELECT %s::int * 2", (5,), prepare=True)
    assert cur1.fetchone() == (5,) and cur2.fetchone() == (10,)


@pytest.mark.levee_config(cfg({"levee": {"workers": 1}, "database app": {"pool_size": 1}}))
def test_failed_parse_leaves_no_statement(levee):
    with utils.RawConn(levee.port) as a, utils.RawConn(levee.port) as b:
        a.login()
        b.login()
        msgs = run(a, utils.parse_message("bad", "SELEC 1"))
        assert [e["C"] for e in errors_in(msgs)] == ["42601"], msgs
        # Not on the server: b's Parse of the same text fails too (no ParseComplete
        # answered by Levee for a statement the server never accepted).
        msgs = run(b, utils.parse_message("other", "SELEC 1"), utils.bind_message("other"),
                   utils.execute_message())
        assert [e["C"] for e in errors_in(msgs)] == ["42601"], msgs
        assert kinds(msgs) == [b"E", b"Z"], msgs
        # The name is free for a good statement.
        msgs = run(a, utils.parse_message("bad", "SELECT 43"), utils.bind_message("bad"),
                   utils.execute_message())
        assert rows_in(msgs) == [["43"]], msgs


@pytest.mark.levee_config(cfg({"levee": {"workers": 1}, "database app": {"pool_size": 1}}))
def test_bind_after_a_failed_parse_gives_26000(levee):
    """As in PostgreSQL: a name whose Parse failed does not exist."""
    with utils.RawConn(levee.port) as a:
        a.login()
        msgs = run(a, utils.parse_message("bad", "SELEC 1"))
        assert [e["C"] for e in errors_in(msgs)] == ["42601"], msgs
        msgs = exec_named(a, "bad")
        assert [e["C"] for e in errors_in(msgs)] == ["26000"], msgs


# ---------------------------------------------------------------------------
# pgbench


@pytest.mark.slow
@pytest.mark.levee_config(cfg({"database app2": {"pool_size": 8}}))
def test_pgbench_prepared_64_clients_pool_size_8(levee, pg):
    env = dict(os.environ, PGPASSWORD="app")
    subprocess.run([PGBENCH, "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(pg.port),
                    "-U", "app", "app2"], env=env, check=True, capture_output=True, timeout=120)
    hits0 = prepared(levee, "hit")
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], pg.connection_count(dbname="app2", user="app"))
            done.wait(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = subprocess.run([PGBENCH, "-h", "127.0.0.1", "-p", str(levee.port), "-U", "app",
                            "-M", "prepared", "-c", "64", "-j", "64", "-T", "5", "-n", "app2"],
                           env=env, capture_output=True, text=True, timeout=60 * SLOW)
    finally:
        done.set()
        sampler.join()
    assert r.returncode == 0, r.stdout + r.stderr
    res = utils.parse_pgbench(r.stdout)
    assert res.get("failed") == 0, r.stdout
    assert res.get("processed", 0) > 100, r.stdout
    assert 1 <= peak[0] <= 8, peak[0]
    wait_until(lambda: prepared(levee, "hit") - hits0 > res["processed"], 5 * SLOW,
               message="prepared-statement hits for every transaction")
