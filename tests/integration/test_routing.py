# SPDX-License-Identifier: ISC
"""Read/write splitting against a real primary and two streaming replicas:
reads spread over healthy replicas, writes and read-write transactions stay on
the primary, READ ONLY transactions use a replica, read-your-writes holds while
replicas lag, a lagging replica is dropped from reads and taken back, and reads
keep working while the primary is down."""

import os
import signal
import threading

import psycopg
import pytest

import utils
from utils import wait_until

ROUTING = {
    "pool": {"pool_mode": "transaction", "pool_size": "4"},
    "routing": {"health_check_period": "300ms", "health_check_timeout": "300ms",
                "health_check_failures": "3", "health_check_user": "app",
                "max_replica_lag": "1s", "read_your_writes": "lsn",
                "read_your_writes_timeout": "5s"},
}

pytestmark = pytest.mark.needs_replica


def port_of(conn):
    return conn.execute("SELECT inet_server_port()").fetchone()[0]


def backends_ready(lv, n):
    """True once n backends answer their health checks and may take work
    (a replica that is still catching up after its start is not usable yet)."""
    def ready():
        rows = lv.admin("SHOW BACKENDS")
        return sum(1 for r in rows if r["usable"] == "yes" and r["role"] in ("primary", "replica")) >= n
    return ready


@pytest.fixture
def routed(levee_factory, pg, pg_replicas):
    for r in pg_replicas:
        r.ensure_running()
    lv = levee_factory(ROUTING)
    wait_until(backends_ready(lv, 3), 10)
    return lv


def test_reads_spread_over_replicas_writes_on_primary(routed, pg, pg_replicas):
    replica_ports = {r.port for r in pg_replicas}
    seen = set()
    with routed.conn(autocommit=True) as c:
        for _ in range(40):
            seen.add(port_of(c))
        c.execute("CREATE TABLE IF NOT EXISTS routing_t (id int)")
        c.execute("INSERT INTO routing_t VALUES (1)")
        # A write statement reports where it ran.
        row = c.execute("INSERT INTO routing_t VALUES (2) RETURNING inet_server_port()").fetchone()
        assert row[0] == pg.port
    assert seen == replica_ports, seen
    m = routed.metrics()
    assert m.get("levee_routes_total", reason="read") >= 40
    # The same text is parsed once per worker, then answered from the cache.
    assert m.get("levee_sql_classifications_total", result="hit") >= 30
    assert 1 <= m.get("levee_sql_parse_seconds_count") <= 10
    # Queries by backend: the replicas answered the 40 reads, the primary the writes.
    by_backend = {int(r["backend"].rsplit(":", 1)[1]): int(r["queries"]) for r in routed.admin("SHOW BACKENDS")}
    assert sum(by_backend[p] for p in replica_ports) >= 40, by_backend
    assert all(by_backend[p] >= 5 for p in replica_ports), by_backend
    assert by_backend[pg.port] >= 3, by_backend
    m = routed.metrics()
    for p in replica_ports:
        assert m.sum("levee_backend_queries_total", backend=f"127.0.0.1:{p}") >= by_backend[p]


def test_transactions_keep_one_backend(routed, pg, pg_replicas):
    replica_ports = {r.port for r in pg_replicas}
    with routed.conn(autocommit=True) as c:
        c.execute("BEGIN")
        ports = {port_of(c) for _ in range(5)}
        c.execute("COMMIT")
        assert ports == {pg.port}
    # A new client: the transaction above counts as a write for read-your-writes.
    with routed.conn(autocommit=True) as c:
        c.execute("BEGIN READ ONLY")
        ports = {port_of(c) for _ in range(5)}
        c.execute("COMMIT")
        assert len(ports) == 1 and ports <= replica_ports, ports
        # A locking read is a write.
        c.execute("CREATE TABLE IF NOT EXISTS routing_lock (id int)")
        assert c.execute("SELECT inet_server_port() FROM (SELECT 1) s FOR UPDATE").fetchone()[0] == pg.port


def test_writing_functions_and_hints_go_to_the_primary(routed, pg, pg_replicas):
    with routed.conn(autocommit=True) as c:
        c.execute("CREATE SEQUENCE IF NOT EXISTS routing_seq2")
        assert c.execute("SELECT nextval('routing_seq2'), inet_server_port()").fetchone()[1] == pg.port
        assert c.execute("/* levee:primary */ SELECT inet_server_port()").fetchone()[0] == pg.port
        c.execute("CREATE TABLE IF NOT EXISTS routing_cte (id int)")
        row = c.execute("WITH x AS (INSERT INTO routing_cte VALUES (1) RETURNING 1) "
                        "SELECT inet_server_port() FROM x").fetchone()
        assert row[0] == pg.port


def test_pipelines_route_each_sync_group(routed, pg, pg_replicas):
    """A pipeline may start with a read and go on with writes. Each Sync group
    is routed on its own: a write group queued behind reads that went to a
    replica waits for them and then goes to the primary; a group that reads
    and then writes (one implicit transaction) runs on the primary whole; a
    READ ONLY transaction keeps its replica, and a write inside it fails as it
    would on any server, without hanging the pipeline."""
    replica_ports = {r.port for r in pg_replicas}
    with routed.conn(autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS routing_pl (id int, port int)")
        c.execute("TRUNCATE routing_pl")
    reads = set()
    for i in range(20):
        with routed.conn(autocommit=True) as c:
            with c.pipeline() as p:
                first = c.execute("SELECT inet_server_port()")
                p.sync()
                c.execute("INSERT INTO routing_pl VALUES (%s, inet_server_port())", (i,))
                p.sync()
                c.execute("SELECT inet_server_port()")
            reads.add(first.fetchone()[0])
        with routed.conn(autocommit=True) as c:
            with c.pipeline():
                c.execute("SELECT 1")
                c.execute("INSERT INTO routing_pl VALUES (%s, inet_server_port())", (100 + i,))
    with routed.conn(autocommit=True) as c:
        rows = c.execute("/* levee:primary */ SELECT count(*), min(port), max(port) "
                         "FROM routing_pl").fetchone()
    assert rows == (40, pg.port, pg.port), rows
    # Reads before this client's first write went to a replica (later ones may
    # follow the write to the primary: read-your-writes).
    assert reads & replica_ports, reads
    with routed.conn(autocommit=True) as c:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with c.pipeline() as p:
                c.execute("BEGIN READ ONLY")
                port = c.execute("SELECT inet_server_port()")
                p.sync()
                c.execute("INSERT INTO routing_pl VALUES (-1, inet_server_port())")
                p.sync()
        assert port.fetchone()[0] in replica_ports
        c.execute("ROLLBACK")
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_read_your_writes_while_replicas_lag(routed, pg, pg_replicas):
    with routed.conn(autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS ryw (id int PRIMARY KEY)")
        c.execute("TRUNCATE ryw")
    for r in pg_replicas:
        r.alter_system(recovery_min_apply_delay="1s")
    try:
        with routed.conn(autocommit=True) as c:
            for i in range(1000):
                c.execute("INSERT INTO ryw VALUES (%s)", (i,))
                assert c.execute("SELECT count(*) FROM ryw WHERE id = %s", (i,)).fetchone() == (1,), i
        assert routed.metrics().get("levee_routes_total", reason="read_your_writes") >= 1
    finally:
        for r in pg_replicas:
            r.alter_system(recovery_min_apply_delay="0")


def test_lagging_replica_gets_no_reads_then_rejoins(routed, pg, pg_replicas):
    slow, fast = pg_replicas
    slow.alter_system(recovery_min_apply_delay="3s")
    try:
        stop = threading.Event()

        def writer():
            with psycopg.connect(pg.dsn(dbname="app"), autocommit=True) as w:
                w.execute("CREATE TABLE IF NOT EXISTS lagging (id serial, t timestamptz default now())")
                while not stop.is_set():
                    w.execute("INSERT INTO lagging DEFAULT VALUES")
                    stop.wait(0.05)

        t = threading.Thread(target=writer)
        t.start()
        try:
            def only_fast():
                with routed.conn(autocommit=True) as c:
                    return all(port_of(c) == fast.port for _ in range(10))
            wait_until(only_fast, 10)
        finally:
            stop.set()
            t.join()
    finally:
        slow.alter_system(recovery_min_apply_delay="0")

    def both_again():
        with routed.conn(autocommit=True) as c:
            return {port_of(c) for _ in range(30)} == {slow.port, fast.port}
    wait_until(both_again, 15)


def test_primary_down_reads_work_writes_fail_fast(routed, pg, pg_replicas):
    with routed.conn(autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS pdown (id int)")
    pg.stop()
    try:
        def primary_marked_down():
            rows = routed.admin("SHOW BACKENDS")
            return any(r["backend"].endswith(f":{pg.port}") and r["usable"] == "no" for r in rows)
        wait_until(primary_marked_down, 10)
        with routed.conn(autocommit=True) as c:
            assert port_of(c) in {r.port for r in pg_replicas}
            with pytest.raises(psycopg.errors.CannotConnectNow) as ei:
                c.execute("INSERT INTO pdown VALUES (1)")
            assert "primary" in str(ei.value)
            # The session survives the refused write and keeps reading.
            assert port_of(c) in {r.port for r in pg_replicas}
    finally:
        pg.start()


def test_replica_killed_during_pgbench_the_run_goes_on(routed, pg, pg_replicas):
    """kill -9 of a replica mid-run: queries in flight there fail, the rest move
    to the other replica and the run completes."""
    import os
    import subprocess
    pgbench = os.path.join(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"), "pgbench")
    env = dict(os.environ, PGPASSWORD="app")
    subprocess.run([pgbench, "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(pg.port),
                    "-U", "app", "app"], env=env, check=True, capture_output=True, timeout=120)
    for r in pg_replicas:
        wait_until(lambda r=r: r.sql("SELECT count(*) FROM pgbench_branches", dbname="app") == [(1,)], 20)
    victim, survivor = pg_replicas
    proc = subprocess.Popen([pgbench, "-S", "-n", "-c", "32", "-j", "2", "-T", "6", "-h", "127.0.0.1",
                             "-p", str(routed.port), "-U", "app", "app"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: (routed.metrics().get("levee_routes_total", reason="read") or 0) > 500, 20)
        victim.kill()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        victim.ensure_running()
    res = utils.parse_pgbench(out)
    # pgbench ends a client whose query failed; at most those in flight on the victim.
    assert "processed" in res and res["processed"] > 1000, out
    assert res.get("failed", 0) == 0, out
    with routed.conn(autocommit=True) as c:
        assert port_of(c) in {survivor.port, victim.port}


def test_session_mode_route_replicas_and_primary(levee_factory, pg, pg_replicas):
    """In session mode a database entry decides for whole sessions: route =
    replicas sends each session to a healthy replica (a read-only application,
    whose writes fail as a hot standby fails them), route = primary (and auto)
    keeps every session on the primary."""
    for r in pg_replicas:
        r.ensure_running()
    replica_ports = {r.port for r in pg_replicas}
    ro = levee_factory(utils.merge_overrides(ROUTING, {"pool": {"pool_mode": "session"},
                                                       "database app": {"route": "replicas"}}),
                       name="route_ro")
    wait_until(backends_ready(ro, 3), 10)
    seen = set()
    for _ in range(6):
        with ro.conn(autocommit=True) as c:
            seen.add(port_of(c))
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                c.execute("CREATE TABLE route_ro_t (id int)")
    assert seen and seen <= replica_ports, seen
    for route in ("primary", "auto"):
        rw = levee_factory(utils.merge_overrides(ROUTING, {"pool": {"pool_mode": "session"},
                                                           "database app": {"route": route}}),
                           name=f"route_{route}")
        wait_until(backends_ready(rw, 3), 10)
        with rw.conn(autocommit=True) as c:
            assert {port_of(c) for _ in range(5)} == {pg.port}


def test_health_check_timeout_fails_a_check_that_hangs(levee_factory, pg, pg_replicas):
    """A backend that stops answering mid-check (its check session is frozen
    with SIGSTOP) fails that check after health_check_timeout, not at the next
    period, and gets no reads until it answers again."""
    replica = pg_replicas[0]
    replica.ensure_running()
    lv = levee_factory(utils.merge_overrides(ROUTING, {"routing": {
        "health_check_period": "2s", "health_check_timeout": "300ms", "health_check_failures": "1"}}),
        name="hc_timeout")
    wait_until(backends_ready(lv, 3), 15)
    rows = replica.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'levee health check'")
    assert len(rows) == 1, rows
    pid = rows[0][0]
    os.kill(pid, signal.SIGSTOP)
    try:
        lv.wait_log("no answer within health_check_timeout (300 ms)", timeout=10)
        addr = f"127.0.0.1:{replica.port}"
        wait_until(lambda: any(r["backend"] == addr and r["usable"] == "no" for r in lv.admin("SHOW BACKENDS")),
                   5, message="the frozen replica to be out of rotation")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(backends_ready(lv, 3), 15, message="the replica to rejoin")


def test_replica_fallback_error_spares_a_database_without_replicas(levee_factory, pg, pg_replicas):
    # replica_fallback = error is about replicas that fail. A database configured
    # without any has nothing to route: its reads run on the primary.
    for r in pg_replicas:
        r.ensure_running()
    lv = levee_factory(utils.merge_overrides(
        ROUTING, {"routing": {"replica_fallback": "error"}, "database app2": {"replicas": ""}}))
    wait_until(backends_ready(lv, 3), 10)
    with lv.conn(dbname="app2") as c:
        for _ in range(5):
            assert port_of(c) == pg.port
    # The database with replicas still reads from them.
    with lv.conn() as c:
        assert port_of(c) in {r.port for r in pg_replicas}
