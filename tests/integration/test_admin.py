# SPDX-License-Identifier: ISC
"""The admin console (database "levee") and the HTTP endpoints."""

import socket
import threading

import psycopg
import pytest

from utils import SLOW, stays_true, wait_until

COLUMNS = {
    "POOLS": ["database", "user", "backend", "pool_mode", "cl_idle", "cl_active", "cl_waiting",
              "sv_active", "sv_idle", "sv_login", "maxwait_ms", "pool_size"],
    "CLIENTS": ["id", "database", "user", "addr", "port", "state", "worker", "connect_time",
                "tls"],
    "SERVERS": ["id", "database", "user", "backend", "addr", "port", "state", "pid", "worker",
                "connect_time", "client_id"],
    "STATS": ["database", "total_xact_count", "total_query_count", "total_received",
              "total_sent", "total_xact_time_us", "total_query_time_us", "total_wait_time_us"],
    "CONFIG": ["section", "key", "value", "reloadable"],
    "VERSION": ["version"],
}

FAMILIES = ["levee_client_connections", "levee_server_connections",
            "levee_client_connections_total", "levee_queries_total",
            "levee_transactions_total", "levee_client_bytes_received_total",
            "levee_client_bytes_sent_total", "levee_errors_total", "levee_client_wait_seconds",
            "levee_query_duration_seconds", "levee_cancel_requests_total",
            "levee_config_reloads_total"]


def _local_port(conn):
    s = socket.socket(fileno=conn.fileno())
    try:
        return s.getsockname()[1]
    finally:
        s.detach()


@pytest.mark.parametrize("what", list(COLUMNS))
def test_show_columns(levee, what):
    with levee.conn() as c:
        c.execute("SELECT 1")
        res = levee.admin(f"SHOW {what}")
        assert res.columns == COLUMNS[what]
        assert len(res) >= 1


def test_show_contents(levee):
    with levee.conn() as c:
        c.execute("SELECT 1")
        pools = [r for r in levee.admin("SHOW POOLS") if r["database"] == "app"]
        assert len(pools) == 1
        p = pools[0]
        assert (p["user"], p["pool_mode"], int(p["pool_size"])) == ("app", "session", 10)
        assert int(p["cl_active"]) + int(p["cl_idle"]) == 1
        assert int(p["sv_active"]) + int(p["sv_idle"]) == 1

        clients = [r for r in levee.admin("SHOW CLIENTS") if r["database"] == "app"]
        assert [(r["user"], str(r["addr"]), int(r["port"])) for r in clients] == [
            ("app", "127.0.0.1", _local_port(c))]

        servers = [r for r in levee.admin("SHOW SERVERS") if r["database"] == "app"]
        assert len(servers) == 1
        assert int(servers[0]["pid"]) == c.info.backend_pid
        assert str(servers[0]["client_id"]) == str(clients[0]["id"])

        config = {(r["section"], r["key"]): r for r in levee.admin("SHOW CONFIG")}
        assert config[("pool", "pool_size")]["value"] == "10"
        assert config[("levee", "listen")]["value"] == f"127.0.0.1:{levee.port}"

        def queries():
            rows = [r for r in levee.admin("SHOW STATS") if r["database"] == "app"]
            return int(rows[0]["total_query_count"]) if rows else 0
        before = queries()
        for i in range(5):
            c.execute("SELECT %s::int", (i,))
        wait_until(lambda: queries() >= before + 5, 5 * SLOW)
    version = levee.admin("SHOW VERSION")
    assert len(version) == 1 and version[0]["version"].startswith("Levee ")


def test_reload_command(levee):
    before = levee.metrics().sum("levee_config_reloads_total")
    levee.set_overrides({"database app": {"pool_size": 6}})
    levee.admin("RELOAD")
    wait_until(lambda: levee.metrics().sum("levee_config_reloads_total") > before, 5 * SLOW)
    wait_until(lambda: [int(r["pool_size"]) for r in levee.admin("SHOW POOLS")
                        if r["database"] == "app"] in ([], [6]), 5 * SLOW)
    with levee.conn() as c:
        c.execute("SELECT 1")
        assert [int(r["pool_size"]) for r in levee.admin("SHOW POOLS")
                if r["database"] == "app"] == [6]


def test_pause_and_resume(levee):
    levee.admin("PAUSE")
    box = {}

    def query():
        try:
            box["rows"] = levee.sql("SELECT 7")
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc
    t = threading.Thread(target=query, daemon=True)
    t.start()
    assert stays_true(lambda: not box, 0.5), box
    levee.admin("RESUME")
    t.join(10 * SLOW)
    assert box == {"rows": [(7,)]}


def test_shutdown_command(levee):
    try:
        levee.admin("SHUTDOWN")
    except psycopg.OperationalError:
        pass  # the console may close before it answers
    assert levee.wait_exit(10 * SLOW) == 0


def test_unknown_admin_command(levee):
    with pytest.raises(psycopg.Error):
        levee.admin("SHOW NO_SUCH_THING")
    assert levee.admin("SHOW VERSION")


def test_metrics_families(levee):
    with levee.conn() as c:
        c.execute("SELECT 1")
        m = levee.metrics()
    missing = [f for f in FAMILIES if f not in m.families and f.removesuffix("_total")
               not in m.families]
    assert not missing, f"missing families {missing}; have {sorted(m.families)}"
    for h in ("levee_client_wait_seconds", "levee_query_duration_seconds"):
        assert m.types[h] == "histogram"
        assert m.get(f"{h}_bucket", le="+Inf") is not None
    assert m.sum("levee_client_connections") >= 1


def test_metrics_count_queries_and_bytes(levee):
    with levee.conn() as c:
        c.execute("SELECT 1")
        before = levee.metrics()
        for i in range(5):
            c.execute("SELECT %s::int", (i,))

        def moved():
            m = levee.metrics()
            return (m.sum("levee_queries_total") >= before.sum("levee_queries_total") + 5
                    and m.sum("levee_client_bytes_received_total")
                    > before.sum("levee_client_bytes_received_total")
                    and m.sum("levee_client_bytes_sent_total")
                    > before.sum("levee_client_bytes_sent_total")
                    and m.sum("levee_query_duration_seconds_count")
                    >= before.sum("levee_query_duration_seconds_count") + 5)
        wait_until(moved, 5 * SLOW)
    conns_before = levee.metrics().sum("levee_client_connections_total")
    with levee.conn():
        pass
    wait_until(lambda: levee.metrics().sum("levee_client_connections_total")
               >= conns_before + 1, 5 * SLOW)


def test_healthz(levee):
    r = levee.http_get("/healthz")
    assert r.status == 200 and r.body.strip() == b"ok"
    assert levee.http_get("/no-such-page").status == 404


def test_readyz_follows_the_backend(levee, pg):
    assert levee.http_get("/readyz").status == 200
    pg.stop()
    wait_until(lambda: levee.http_get("/readyz").status == 503, 15 * SLOW)
    assert levee.http_get("/healthz").status == 200
    pg.start()
    wait_until(lambda: levee.http_get("/readyz").status == 200, 15 * SLOW)
