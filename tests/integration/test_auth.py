# SPDX-License-Identifier: ISC
"""Client authentication at Levee: TLS, SCRAM, md5, the errors for a wrong
password, an unknown user or database, the admin console's guard, and that
nothing reaches PostgreSQL before a client has authenticated."""

import psycopg
import pytest

import utils
from utils import SLOW, stays_true, wait_until


@pytest.fixture
def cert(tmp_path):
    return utils.make_cert(tmp_path)


def test_tls_required(levee_factory, cert):
    crt, key = cert
    lv = levee_factory({"tls": {"client_tls_mode": "require", "cert_file": crt,
                                "key_file": key}})
    with lv.conn(sslmode="require") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("SELECT 1").fetchone() == (1,)
        ours = [r for r in lv.admin("SHOW CLIENTS") if r["database"] == "app"]
        assert len(ours) == 1
        assert ours[0]["tls"] not in (None, "", "no", "false", "f", "0", 0, False), ours
    # The certificate is the one configured.
    with lv.conn(sslmode="verify-full", sslrootcert=crt) as c:
        assert c.execute("SELECT 2").fetchone() == (2,)
    # Plain connections are refused.
    with utils.RawConn(lv.port) as rc:
        err = rc.try_login()
        assert err is not None and err["C"] == "28000", err
        assert err["M"].startswith("levee: ")


def test_tls_allow_accepts_both(levee_factory, cert):
    crt, key = cert
    lv = levee_factory({"tls": {"client_tls_mode": "allow", "cert_file": crt, "key_file": key}})
    with lv.conn(sslmode="require") as c:
        assert c.pgconn.ssl_in_use
    with lv.conn(sslmode="disable") as c:
        assert not c.pgconn.ssl_in_use
        assert c.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.levee_config({"levee": {"auth_type": "scram-sha-256"}})
def test_scram_success(levee):
    with utils.RawConn(levee.port) as rc:
        rc.login("app", "app", "app")  # verifies the server signature too
        assert rc.auth_codes[0] == 10
        assert [k for k, _ in rc.query("SELECT 1")][-1] == b"Z"
    # scram_user's PostgreSQL secret is SCRAM, so Levee's server login is SCRAM as well.
    with levee.conn(user="scram_user", dbname="app") as c:
        assert c.execute("SELECT current_user").fetchone() == ("scram_user",)


def test_md5_success(levee):
    with utils.RawConn(levee.port) as rc:
        rc.login("app", "app", "app")
        assert rc.auth_codes == [5, 0]
    with levee.conn() as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)


@pytest.mark.parametrize("kind", ["scram", "md5"])
def test_hashed_secrets_in_auth_file(levee_factory, pg, kind):
    """auth_file holds a SCRAM or md5 secret instead of the password; the
    server side then needs the database's own user and password."""
    secret = pg.secrets["scram_user"] if kind == "scram" else utils.md5_secret(
        "scram_user", "scram_pass")
    lv = levee_factory({"database fixed": {"primary": f"127.0.0.1:{pg.port}", "dbname": "app",
                                           "user": "app", "password": "app"}},
                       users={"scram_user": secret, "admin": "admin"})
    with utils.RawConn(lv.port) as rc:
        rc.login("scram_user", "scram_pass", "fixed")
        assert rc.auth_codes[0] == (10 if kind == "scram" else 5)
    with lv.conn(user="scram_user", password="scram_pass", dbname="fixed") as c:
        assert c.execute("SELECT current_user, current_database()").fetchone() == ("app", "app")
    with utils.RawConn(lv.port) as rc:
        err = rc.try_login("scram_user", "wrong", "fixed")
        assert err is not None and err["C"] == "28P01"


def test_wrong_password_and_unknown_user_look_the_same(levee):
    with utils.RawConn(levee.port) as rc:
        wrong = rc.try_login("app", "not-the-password", "app")
        wrong_codes = rc.auth_codes
    with utils.RawConn(levee.port) as rc:
        unknown = rc.try_login("nosuchuser", "whatever", "app")
        unknown_codes = rc.auth_codes
    assert wrong is not None and unknown is not None
    assert wrong["C"] == unknown["C"] == "28P01"
    assert wrong["M"].startswith("levee: ")
    # Same message apart from the user name, and the same challenge: an
    # unknown user is not revealed.
    assert wrong["M"].replace("app", "USER") == unknown["M"].replace("nosuchuser", "USER")
    assert wrong_codes == unknown_codes
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        levee.conn(password="nope")


def test_unknown_database(levee):
    with utils.RawConn(levee.port) as rc:
        err = rc.try_login("app", "app", "nosuchdb")
    assert err is not None and err["C"] == "3D000", err
    assert err["M"].startswith("levee: ") and "nosuchdb" in err["M"]


def test_admin_console_refuses_non_admin(levee):
    with utils.RawConn(levee.port) as rc:
        err = rc.try_login("app", "app", "levee")
    assert err is not None and err["M"].startswith("levee: "), err
    with pytest.raises(psycopg.OperationalError):
        levee.admin("SHOW VERSION", user="app")
    # The admin itself with a wrong password is refused as well.
    with pytest.raises(psycopg.OperationalError):
        levee.admin("SHOW VERSION", password="wrong")
    assert levee.admin("SHOW VERSION")[0]["version"].startswith("Levee ")


def test_nothing_reaches_postgres_before_auth(levee, pg):
    base = pg.connection_count(dbname="app")
    with utils.RawConn(levee.port) as rc:
        rc.startup("app", "app")
        kind, body = rc.recv_msg()
        assert kind == b"R" and body[:4] in (b"\0\0\0\5", b"\0\0\0\x0a")
        # The client sits at the password prompt: no backend for it.
        assert stays_true(lambda: pg.connection_count(dbname="app") == base, 1.0)
        # Unknown users and databases do not make one either.
        with utils.RawConn(levee.port) as other:
            assert other.try_login("nosuchuser", "x", "app") is not None
        with utils.RawConn(levee.port) as other:
            assert other.try_login("app", "app", "nosuchdb") is not None
        assert pg.connection_count(dbname="app") == base
        # Once authenticated and querying, it does (so the check above could fail).
        rc.authenticate("app", "app", pending=(kind, body))
        while rc.recv_msg()[0] != b"Z":
            pass
        assert [k for k, _ in rc.query("SELECT 1")][-1] == b"Z"
        wait_until(lambda: pg.connection_count(dbname="app") == base + 1, 5 * SLOW)
