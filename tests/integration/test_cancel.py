# SPDX-License-Identifier: ISC
"""Query cancellation through Levee: a CancelRequest lands on a new
connection, on any worker, and must reach the right backend, and only with
the right key."""

import threading
import time

import psycopg
import pytest

import utils
from utils import SLOW, wait_until


def _active(pg, tag):
    return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                  "AND query LIKE %s", (f"%/* {tag} */%",))[0][0]


class Runner(threading.Thread):
    """Runs one statement on conn in a thread and records the outcome and when."""

    def __init__(self, conn, sql):
        super().__init__(daemon=True)
        self.conn, self.sql = conn, sql
        self.result = self.error = self.finished_at = None

    def run(self):
        try:
            self.result = self.conn.execute(self.sql).fetchall()
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            self.error = exc
        self.finished_at = time.monotonic()


def test_cancel_long_query(levee, pg):
    c = levee.conn()
    r = Runner(c, "SELECT pg_sleep(30) /* cancel-one */")
    r.start()
    wait_until(lambda: _active(pg, "cancel-one") == 1, 5 * SLOW)
    t0 = time.monotonic()
    c.cancel()
    r.join(5 * SLOW)
    assert not r.is_alive(), "query still running after cancel"
    assert isinstance(r.error, psycopg.errors.QueryCanceled), r.error
    assert r.error.sqlstate == "57014"
    assert r.finished_at - t0 < 1.0 * SLOW
    # The session is still usable.
    assert c.execute("SELECT 1").fetchone() == (1,)


def test_cancel_with_wrong_key_cancels_nothing(levee, pg):
    c = levee.conn()
    pid = c.info.backend_pid
    before = levee.metrics().sum("levee_cancel_requests_total")
    r = Runner(c, "SELECT 'done' FROM pg_sleep(1) /* wrong-key */")
    r.start()
    wait_until(lambda: _active(pg, "wrong-key") == 1, 5 * SLOW)
    for p, key in ((pid, 0), (pid, 0xDEADBEEF), (pid + 1, 0), (0, 0)):
        with utils.RawConn(levee.port) as rc:
            rc.send(utils.cancel_request(p, key))
            rc.expect_closed()
    r.join(10 * SLOW)
    assert r.error is None, r.error
    assert r.result == [("done",)]
    wait_until(lambda: levee.metrics().sum("levee_cancel_requests_total") >= before + 4,
               5 * SLOW)


@pytest.mark.levee_config({"levee": {"workers": 2}, "database app": {"pool_size": 64}})
def test_cancel_on_every_worker(levee, pg):
    conns = []

    def workers_seen():
        rows = levee.admin("SHOW CLIENTS")
        return {r["worker"] for r in rows if r["database"] == "app"}
    while len(conns) < 16 or (len(workers_seen()) < 2 and len(conns) < 60):
        conns.append(levee.conn())
    assert len(workers_seen()) == 2, "all clients landed on one worker"

    runners = [Runner(c, f"SELECT pg_sleep(30) /* w{i} */") for i, c in enumerate(conns)]
    for r in runners:
        r.start()
    wait_until(lambda: _active(pg, "w%") == len(runners), 10 * SLOW)
    t0 = time.monotonic()
    for c in conns:
        c.cancel()
    for r in runners:
        r.join(10 * SLOW)
    assert all(isinstance(r.error, psycopg.errors.QueryCanceled) for r in runners), \
        [r.error for r in runners]
    assert max(r.finished_at for r in runners) - t0 < 5 * SLOW
    for c in conns:
        assert c.execute("SELECT 1").fetchone() == (1,)
