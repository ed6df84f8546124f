# SPDX-License-Identifier: ISC
"""failover = follow on a stack of its own (it promotes a replica, which the
shared session servers must not suffer): with the primary stopped, writes
fail fast; once a replica is promoted, writes resume on it within two health
check periods; the old primary, started again, takes no writes until an
operator's RELOAD (no split brain)."""

import psycopg
import pytest

import stack as stackmod
import utils
from utils import wait_until


@pytest.fixture
def own(tmp_path, redis):
    st = stackmod.Stack()
    try:
        primary = st.start_primary(host_auth="md5")
        primary.sql(f"CREATE ROLE app LOGIN PASSWORD '{utils.md5_secret('app', 'app')}'")
        primary.sql("CREATE DATABASE app OWNER app")
        primary.sql("CREATE TABLE t (id int)", dbname="app", user="app", password="app")
        replica = st.start_replica(primary)
        yield st, primary, replica
    finally:
        st.stop()


def test_follow_promoted_replica(own, tmp_path, redis):
    st, primary, replica = own
    lv = utils.Levee(tmp_path / "levee", pg=primary, redis=redis, replicas=[replica], overrides={
        "pool": {"pool_mode": "transaction"},
        "routing": {"health_check_period": "300ms", "health_check_timeout": "300ms",
                    "health_check_failures": "2", "health_check_user": "app", "failover": "follow",
                    "read_your_writes": "off"},
    })
    lv.start()
    try:
        wait_until(lambda: sum(r["usable"] == "yes" for r in lv.admin("SHOW BACKENDS")) == 2, 10)
        with lv.conn(autocommit=True) as c:
            c.execute("INSERT INTO t VALUES (1)")
        primary.stop()
        wait_until(lambda: any(r["backend"].endswith(f":{primary.port}") and r["usable"] == "no"
                               for r in lv.admin("SHOW BACKENDS")), 10)
        with lv.conn(autocommit=True) as c:
            with pytest.raises(psycopg.errors.CannotConnectNow):
                c.execute("INSERT INTO t VALUES (2)")
            replica.promote()
            # Within two health-check periods (plus the promotion itself).
            def writes_work():
                try:
                    c.execute("INSERT INTO t VALUES (3)")
                    return True
                except psycopg.errors.CannotConnectNow:
                    return False
            wait_until(writes_work, 5)
            assert c.execute("SELECT inet_server_port() FROM (SELECT 1) s FOR UPDATE").fetchone()[0] \
                == replica.port
        assert lv.log_contains("failover")
        # The old primary comes back: it is not written to again.
        primary.start()
        wait_until(lambda: any(r["backend"].endswith(f":{primary.port}") and r["up"] == "yes"
                               for r in lv.admin("SHOW BACKENDS")), 10)
        with lv.conn(autocommit=True) as c:
            for _ in range(5):
                row = c.execute("INSERT INTO t VALUES (4) RETURNING inet_server_port()").fetchone()
                assert row[0] == replica.port
    finally:
        lv.stop()
