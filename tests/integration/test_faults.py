# SPDX-License-Identifier: ISC
"""PostgreSQL going away: clear errors, quick failures instead of hangs,
recovery on fresh server connections, and pool exhaustion."""

import threading
import time

import psycopg
import pytest

import utils
from utils import PortLock, SLOW, wait_until


def test_postgres_restart_under_idle_session_client(levee, pg):
    c = levee.conn()
    pid1 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    pg.restart()
    with pytest.raises(psycopg.OperationalError) as ei:
        c.execute("SELECT 1")
    assert str(ei.value).strip()
    if c.closed or c.broken:
        c = levee.conn()
    pid2 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert pid2 != pid1
    assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid2,)) == [(1,)]


@pytest.mark.levee_config({"pool": {"pool_mode": "transaction"}})
def test_postgres_restart_under_idle_transaction_client(levee, pg):
    """An idle client in transaction mode holds no server: it keeps its
    connection and gets a fresh server (at most one error on the way)."""
    c = levee.conn()
    assert c.execute("SELECT 1").fetchone() == (1,)
    pg.restart()
    errors = []
    for _ in range(2):
        try:
            assert c.execute("SELECT 2").fetchone() == (2,)
            break
        except psycopg.OperationalError as exc:
            errors.append(exc)
    else:
        pytest.fail(f"no success after the restart: {errors}")
    assert len(errors) <= 1
    assert not c.closed


def _errors_from_clients(port, database, n):
    """n clients log in to database at once and run SELECT 1; returns
    [(phase, fields, seconds)]."""
    out = []

    def one():
        t0 = time.monotonic()
        phase, err = utils.login_and_query(port, database=database, timeout=30)
        out.append((phase, err, time.monotonic() - t0))
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    return out


def test_unreachable_backend_fails_fast(levee_factory):
    dead = PortLock()  # reserved and never listened on
    try:
        lv = levee_factory({"database dead": {"primary": f"127.0.0.1:{dead.port}",
                                              "dbname": "app"}})
        results = _errors_from_clients(lv.port, "dead", 5)
    finally:
        dead.release()
    assert len(results) == 5
    for phase, err, secs in results:
        assert err is not None, "a query through an unreachable backend succeeded"
        assert err["C"] == "08006", err
        assert err["M"].startswith("levee: "), err
        assert secs < 3 * SLOW, secs
    with lv.conn() as c:  # the healthy database is unaffected
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_stopped_postgres_fails_fast_then_recovers(levee, pg):
    assert levee.sql("SELECT 1") == [(1,)]
    pg.stop()
    results = _errors_from_clients(levee.port, "app", 5)
    for phase, err, secs in results:
        assert err is not None and err["C"] == "08006", err
        assert secs < 3 * SLOW, secs
    pg.start()
    wait_until(lambda: levee.sql("SELECT 1") == [(1,)], 10 * SLOW)


@pytest.mark.levee_config({"pool": {"query_wait_timeout": "1s"},
                           "database app2": {"pool_size": 1}})
def test_pool_exhausted_gives_53300_naming_the_pool(levee):
    holder = levee.conn(dbname="app2")
    assert holder.execute("SELECT 1").fetchone() == (1,)  # session mode: holds the only server
    t0 = time.monotonic()
    phase, err = utils.login_and_query(levee.port, database="app2", timeout=10)
    secs = time.monotonic() - t0
    assert err is not None and err["C"] == "53300", err
    assert "app2" in err["M"] and err["M"].startswith("levee: "), err
    assert 0.8 <= secs < 4 * SLOW, secs
    assert holder.execute("SELECT 2").fetchone() == (2,)
    holder.close()
    # Once the holder is gone, the pool serves the next client.
    wait_until(lambda: levee.sql("SELECT 3", dbname="app2") == [(3,)], 5 * SLOW)
