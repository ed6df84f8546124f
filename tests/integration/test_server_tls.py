# SPDX-License-Identifier: ISC
"""TLS from Levee to PostgreSQL: server_tls = require uses TLS (pg_stat_ssl says
so), prefer falls back to plain text against a server without TLS, and require
against such a server fails the client with 08006 instead of going plain. Levee's
own connections (queue consumers, health checks) follow the same setting."""

import os
import shutil

import pytest

import utils


@pytest.fixture
def pg_ssl(pg, tmp_path):
    """Turns TLS on in the shared primary; the autouse reset turns it off again."""
    crt, key = utils.make_cert(tmp_path)
    d = os.path.join(pg.datadir, "levee-test-tls")
    os.makedirs(d, exist_ok=True)
    shutil.copy(crt, os.path.join(d, "server.crt"))
    shutil.copy(key, os.path.join(d, "server.key"))
    if os.geteuid() == 0:
        shutil.chown(d, "postgres")
        for f in ("server.crt", "server.key"):
            shutil.chown(os.path.join(d, f), "postgres")
    os.chmod(os.path.join(d, "server.key"), 0o600)
    pg.alter_system(ssl="on", ssl_cert_file=os.path.join(d, "server.crt"),
                    ssl_key_file=os.path.join(d, "server.key"))
    utils.wait_until(lambda: pg.sql("SHOW ssl") == [("on",)], 10)
    yield pg
    pg.alter_system(ssl="off")


def test_server_tls_require_uses_tls(pg_ssl, levee_factory):
    lv = levee_factory({"tls": {"server_tls": "require"}})
    rows = lv.sql("SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()")
    assert rows == [(True,)]


def test_server_tls_prefer_falls_back_to_plain(pg, levee_factory):
    assert pg.sql("SHOW ssl") == [("off",)]
    lv = levee_factory({"tls": {"server_tls": "prefer"}})
    rows = lv.sql("SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()")
    assert rows == [(False,)]


def test_server_tls_require_without_server_tls_fails(pg, levee_factory):
    assert pg.sql("SHOW ssl") == [("off",)]
    lv = levee_factory({"tls": {"server_tls": "require"}})
    with utils.RawConn(lv.port) as rc:
        err = rc.try_login()
    assert err is not None and err["C"] == "08006", err
    assert "TLS" in err["M"], err


def test_server_tls_require_covers_queue_and_health_checks(pg_ssl, levee_factory):
    """Levee's own connections follow server_tls too: the write queue's
    consumers and the health checks log in over TLS, not in plain text."""
    lv = levee_factory({"tls": {"server_tls": "require"},
                        "routing": {"health_check_user": "app", "health_check_period": "200ms",
                                    "health_check_timeout": "200ms"},
                        "queue": {"max_wait": "20ms"}})
    lv.sql("CREATE TABLE IF NOT EXISTS tls_q (v int)")
    with lv.conn(autocommit=True) as c:
        c.execute("/* levee:async */ INSERT INTO tls_q VALUES (1)")
    utils.wait_until(lambda: pg_ssl.sql("SELECT count(*) FROM tls_q", dbname="app") == [(1,)], 10,
                     message="the queued insert applied")
    sql = ("SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s "
           "USING (pid) WHERE a.application_name IN ('levee queue', 'levee health check')")
    utils.wait_until(lambda: {r[0] for r in pg_ssl.sql(sql)} == {"levee queue",
                                                                 "levee health check"}, 10,
                     message="both kinds of connection seen")
    rows = pg_ssl.sql(sql)
    assert rows and all(ssl for _, ssl in rows), rows



def test_server_tls_require_own_connections_refuse_plain(pg, levee_factory):
    """Against a server without TLS, require keeps Levee's own connections from
    falling back to plain text as well: the health check fails and says why."""
    assert pg.sql("SHOW ssl") == [("off",)]
    lv = levee_factory({"tls": {"server_tls": "require"},
                        "routing": {"health_check_user": "app", "health_check_period": "200ms",
                                    "health_check_timeout": "200ms"}})
    utils.wait_until(lambda: lv.log_matches(r"health check of \S+ failed: the server does not "
                                            r"support TLS \(server_tls = require\)"), 10,
                     message="the health check refused")
    assert [r["up"] for r in lv.admin("SHOW BACKENDS")] == ["no"]


def test_server_tls_prefer_own_connections_fall_back_to_plain(pg, levee_factory):
    """prefer lets Levee's own connections go plain against a server without TLS,
    as it lets the pools' do: the health check logs in and the backend is up."""
    assert pg.sql("SHOW ssl") == [("off",)]
    lv = levee_factory({"tls": {"server_tls": "prefer"},
                        "routing": {"health_check_user": "app", "health_check_period": "200ms",
                                    "health_check_timeout": "200ms"}})
    utils.wait_until(lambda: [r["up"] for r in lv.admin("SHOW BACKENDS")] == ["yes"], 10,
                     message="the health check logged in over plain TCP")
    assert not lv.log_matches(r"health check of \S+ failed")
