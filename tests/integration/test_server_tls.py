# SPDX-License-Identifier: ISC
"""TLS from Levee to PostgreSQL: server_tls = require uses TLS (pg_stat_ssl says
so), prefer falls back to plain text against a server without TLS, and require
against such a server fails the client with 08006 instead of going plain."""

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
