# SPDX-License-Identifier: ISC
"""Process signals: SIGINT drains gracefully, SIGTERM exits at once."""

import signal
import time

import psycopg
import pytest

from utils import SLOW, wait_until


def _refuses_new_clients(levee):
    try:
        psycopg.connect(**levee.conninfo(connect_timeout=2)).close()
    except psycopg.OperationalError:
        return True
    return False


@pytest.mark.levee_config({"levee": {"shutdown_timeout": "20s"}})
def test_sigint_lets_the_session_finish(levee, pg):
    c = levee.conn(autocommit=False)
    c.execute("CREATE TEMP TABLE drain (v int)")
    c.execute("INSERT INTO drain VALUES (1)")
    levee.send_signal(signal.SIGINT)
    wait_until(lambda: _refuses_new_clients(levee), 5 * SLOW)
    # The in-flight session carries on.
    c.execute("INSERT INTO drain VALUES (2)")
    assert c.execute("SELECT count(*) FROM drain").fetchone() == (2,)
    c.commit()
    assert levee.is_running()
    c.close()
    assert levee.wait_exit(10 * SLOW) == 0
    wait_until(lambda: pg.connection_count(dbname="app", user="app") == 0, 5 * SLOW)


@pytest.mark.levee_config({"levee": {"shutdown_timeout": "2s"}})
def test_sigint_ends_sessions_at_shutdown_timeout(levee):
    c = levee.conn()
    c.execute("SELECT 1")
    t0 = time.monotonic()
    levee.send_signal(signal.SIGINT)
    assert levee.wait_exit(15 * SLOW) == 0
    secs = time.monotonic() - t0
    assert 1.5 <= secs <= 6 * SLOW, secs
    with pytest.raises(psycopg.OperationalError):
        c.execute("SELECT 1")


@pytest.mark.levee_config({"levee": {"shutdown_timeout": "30s"}})
def test_sigterm_exits_at_once(levee):
    c = levee.conn()
    c.execute("SELECT 1")
    t0 = time.monotonic()
    levee.send_signal(signal.SIGTERM)
    rc = levee.wait_exit(5 * SLOW)
    assert time.monotonic() - t0 < 2 * SLOW
    assert rc in (0, 128 + signal.SIGTERM, -signal.SIGTERM), rc
    with pytest.raises(psycopg.OperationalError):
        c.execute("SELECT 1")
