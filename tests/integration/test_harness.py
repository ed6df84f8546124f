# SPDX-License-Identifier: ISC
"""The harness itself: servers, helpers and parsers, without Levee."""

import json
import os
import socket
import subprocess
import sys
import threading

import psycopg
import pytest

import utils
from utils import PortLock, stackmod, wait_until


def test_primary_roles_and_databases(pg):
    assert pg.sql("SELECT current_setting('server_version_num')::int / 10000")[0][0] == 15
    assert pg.sql("SHOW fsync") == [("off",)]
    assert pg.sql("SHOW wal_level") == [("replica",)]
    assert pg.sql("SHOW shared_preload_libraries") == [("pg_stat_statements",)]
    dbs = {r[0] for r in pg.sql("SELECT datname FROM pg_database")}
    assert {"app", "app2"} <= dbs
    # Both users log in over TCP with their passwords (md5 and SCRAM).
    with pg.connect("app", "app", "app") as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)
        assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = "
                         "'pg_stat_statements'").fetchone() == (1,)
    with pg.connect("app2", "scram_user", "scram_pass") as c:
        assert c.execute("SELECT current_user").fetchone() == ("scram_user",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg.connect("app", "app", "wrong")


def test_connection_count(pg):
    base = pg.connection_count(dbname="app")
    conns = [pg.connect("app", "app", "app") for _ in range(3)]
    try:
        assert pg.connection_count(dbname="app") == base + 3
        assert pg.connection_count(dbname="app", user="app") >= 3
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: pg.connection_count(dbname="app") == base, 5)


def test_psql_helper(pg):
    assert pg.psql("SELECT 40 + 2").strip() == "42"


@pytest.mark.needs_replica
def test_replicas_stream(pg, pg_replicas):
    assert len(pg_replicas) == 2
    names = {r.name for r in pg_replicas}
    rows = pg.sql("SELECT application_name, state FROM pg_stat_replication")
    assert {(n, "streaming") for n in names} <= set(rows)
    pg.sql("CREATE TABLE IF NOT EXISTS harness_repl (v int)", dbname="app", user="app",
           password="app")
    pg.sql("INSERT INTO harness_repl VALUES (7)", dbname="app", user="app", password="app")
    for r in pg_replicas:
        assert r.sql("SELECT pg_is_in_recovery()") == [(True,)]
        pg.wait_replayed(r)
        assert (7,) in r.sql("SELECT v FROM harness_repl", dbname="app", user="app",
                             password="app")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            r.sql("INSERT INTO harness_repl VALUES (8)", dbname="app", user="app",
                  password="app")


def test_redis(redis):
    r = redis.client()
    assert r.ping()
    r.set("harness", "ok")
    assert r.get("harness") == b"ok"
    assert r.config_get("appendonly")["appendonly"] == "no"
    assert r.config_get("save")["save"] == ""


def test_redis_is_flushed_between_tests(redis):
    assert redis.client().get("harness") is None


def test_pg_restart_and_kill(pg):
    c = pg.connect()
    pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    pg.restart()
    with pytest.raises(psycopg.OperationalError):
        c.execute("SELECT 1")
    assert pg.sql("SELECT pg_backend_pid()")[0][0] != pid
    pg.kill()
    assert pg.postmaster_pid() is None
    with pytest.raises(psycopg.OperationalError):
        pg.connect(connect_timeout=2)
    pg.start()
    assert pg.sql("SELECT 1") == [(1,)]


def test_stopped_primary_is_restarted_by_the_harness_1(pg):
    pg.stop()
    assert pg.postmaster_pid() is None


def test_stopped_primary_is_restarted_by_the_harness_2(pg):
    assert pg.sql("SELECT 1") == [(1,)]


def test_throwaway_stack_promote_and_cleanup(tmp_path):
    st = stackmod.Stack()
    try:
        p = st.start_primary(max_connections=20)
        r = st.start_replica()
        p.sql("CREATE TABLE t (v int)")
        p.sql("INSERT INTO t VALUES (1)")
        p.wait_replayed(r)
        r.promote()
        r.sql("INSERT INTO t VALUES (2)")
        assert r.sql("SELECT count(*) FROM t") == [(2,)]
        datadir = p.datadir
        pids = [s.postmaster_pid() for s in st.servers()]
        assert all(pids)
    finally:
        st.stop()
    assert not os.path.exists(datadir)
    assert all(not stackmod._pid_alive(pid) for pid in pids)
    st.stop()  # idempotent


def test_stack_cli_up_and_sigterm():
    proc = subprocess.Popen([sys.executable, str(utils.REPO / "tools" / "stack.py"), "up",
                             "--redis", "--ports", "1", "--json"],
                            stdout=subprocess.PIPE, text=True)
    try:
        desc = json.loads(proc.stdout.readline())
        assert len(desc["ports"]) == 1
        with socket.create_connection(("127.0.0.1", desc["primary"]["port"]), 5):
            pass
        with socket.create_connection(("127.0.0.1", desc["redis"]["port"]), 5):
            pass
        pid_file = os.path.join(desc["primary"]["datadir"], "postmaster.pid")
        with open(pid_file) as f:
            postmaster = int(f.readline())
        proc.terminate()
        assert proc.wait(30) == 0
        assert not stackmod._pid_alive(postmaster)
        assert not os.path.exists(desc["dir"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_port_locks_are_distinct():
    locks = [PortLock() for _ in range(20)]
    try:
        ports = {lk.port for lk in locks}
        assert len(ports) == 20
        # Each port is bindable right now.
        for p in list(ports)[:3]:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
    finally:
        for lk in locks:
            lk.release()


def test_wait_until_and_stays_true():
    box = []
    t = threading.Timer(0.1, lambda: box.append(1))
    t.start()
    assert wait_until(lambda: box, 5) == [1]
    with pytest.raises(TimeoutError):
        wait_until(lambda: False, 0.2)
    assert utils.stays_true(lambda: True, 0.1)
    assert not utils.stays_true(lambda: False, 5)


def test_ini_merge_and_render():
    base = utils.parse_ini("; c\n[levee]\nlisten = a:1\nworkers = 2\n\n[database app]\n"
                           "primary = h:5\n")
    merged = utils.merge_ini(base, {"levee": {"workers": 4, "logfile": None},
                                    "database app": None, "pool": {"pool_size": 3}})
    assert merged == {"levee": {"listen": "a:1", "workers": "4"}, "pool": {"pool_size": "3"}}
    assert utils.parse_ini(utils.render_ini(merged)) == merged
    layered = utils.merge_overrides({"pool": {"a": 1}}, {"pool": {"b": 2}}, {"x": None})
    assert layered == {"pool": {"a": 1, "b": 2}, "x": None}


def test_levee_config_from_template(tmp_path, pg, redis):
    lv = utils.Levee(tmp_path, pg=pg, redis=redis,
                     overrides={"pool": {"pool_mode": "transaction"}})
    try:
        s = utils.parse_ini(lv.ini_path.read_text())
        assert s["levee"]["listen"] == f"127.0.0.1:{lv.port}"
        assert s["levee"]["http_listen"] == f"127.0.0.1:{lv.http_port}"
        assert s["levee"]["redis"] == f"redis://127.0.0.1:{redis.port}/0"
        assert s["database app"]["primary"] == f"127.0.0.1:{pg.port}"
        assert s["pool"]["pool_mode"] == "transaction"
        assert '"app" "app"' in lv.auth_path.read_text()
        assert not any("@" in v for sec in s.values() for v in sec.values())
    finally:
        for lk in lv._port_locks:
            lk.release()


def test_metrics_parser():
    m = utils.Metrics(
        "# HELP levee_queries_total Queries.\n"
        "# TYPE levee_queries_total counter\n"
        "levee_queries_total 12\n"
        "# TYPE levee_client_connections gauge\n"
        'levee_client_connections{state="active"} 3\n'
        'levee_client_connections{state="idle",x="a\\"b"} 4\n'
        "# TYPE levee_client_wait_seconds histogram\n"
        'levee_client_wait_seconds_bucket{le="0.1"} 5\n'
        'levee_client_wait_seconds_bucket{le="+Inf"} 6\n'
        "levee_client_wait_seconds_sum 0.5\n"
        "levee_client_wait_seconds_count 6\n")
    assert m.get("levee_queries_total") == 12
    assert m.get("levee_client_connections", state="active") == 3
    assert m.get("levee_client_connections", state="idle", x='a"b') == 4
    assert m.sum("levee_client_connections") == 7
    assert m.types["levee_client_wait_seconds"] == "histogram"
    assert m.get("levee_client_wait_seconds_bucket", le="+Inf") == 6
    assert {"state": "active"} in m.labels("levee_client_connections")


def test_raw_protocol_client_against_postgres(pg):
    """RawConn's SCRAM and md5 logins, checked against PostgreSQL itself."""
    with utils.RawConn(pg.port) as rc:
        rc.login("scram_user", "scram_pass", "app")
        assert rc.backend_pid and rc.params["server_encoding"] == "UTF8"
        msgs = rc.query("SELECT 1")
        assert [k for k, _ in msgs] == [b"T", b"D", b"C", b"Z"]
    with utils.RawConn(pg.port) as rc:
        rc.login("app", "app", "app")
        rc.send(utils.message(b"y"))
        msgs = rc.expect_closed()
        errs = [utils.error_fields(b) for k, b in msgs if k == b"E"]
        assert errs and errs[0]["C"] == "08P01"
    with utils.RawConn(pg.port) as rc:
        rc.send(utils.ssl_request())
        assert rc.recv_bytes(1) == b"N"


def test_make_cert(tmp_path):
    cert, key = utils.make_cert(tmp_path)
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-subject"],
                         capture_output=True, text=True, check=True).stdout
    assert "localhost" in out
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"


def test_parse_pgbench():
    out = ("number of transactions actually processed: 1234\n"
           "number of failed transactions: 0 (0.000%)\n"
           "tps = 246.8 (without initial connection time)\n")
    assert utils.parse_pgbench(out) == {"processed": 1234, "failed": 0, "tps": 246.8}


def test_config_changes_are_undone_1(pg):
    pg.alter_system(work_mem="7MB")
    wait_until(lambda: pg.sql("SHOW work_mem") == [("7MB",)], 5)
    pg.set_hba(pg.hba_lines()[:-1] + ["host all app 127.0.0.1/32 reject",
                                      pg.hba_lines()[-1]], reload=True)
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        pg.connect("app", "app", "app")


def test_config_changes_are_undone_2(pg):
    assert pg.sql("SHOW work_mem") == [("4MB",)]
    with pg.connect("app", "app", "app") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
