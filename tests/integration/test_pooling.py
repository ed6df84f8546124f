# SPDX-License-Identifier: ISC
"""Transaction pooling: a client holds a server only from its first message
to ReadyForQuery 'I'. Covers sharing one server, waiting and its timeouts,
carried settings (startup parameters, tracked SETs, ParameterStatus),
session-state pins and their reject policy, cleanliness of a server between
clients (after a disconnect, a timeout or a client killed mid-transaction,
mid-result or mid-COPY), per-user limits, and a 10,000-connection storm."""

import asyncio
import hashlib
import re
import struct
import threading
import time

import psycopg
import pytest

import utils
from utils import SLOW, wait_until

TXN = {"pool": {"pool_mode": "transaction"}}
# One worker and one server: every client of the pool shares the same backend.
ONE = {"levee": {"workers": 1}, "database app": {"pool_size": 1}}
IDLE = psycopg.pq.TransactionStatus.IDLE
INTRANS = psycopg.pq.TransactionStatus.INTRANS


def cfg(*layers):
    return utils.merge_overrides(TXN, *layers)


def pool_row(levee, db="app", user="app"):
    rows = [r for r in levee.admin("SHOW POOLS") if r["database"] == db and r["user"] == user]
    assert len(rows) == 1, rows
    return rows[0]


def cl_waiting(levee, db="app"):
    return int(pool_row(levee, db)["cl_waiting"])


def app_backends(pg, db="app"):
    """(pid, state) of PostgreSQL's client backends of user app on db."""
    return pg.sql("SELECT pid, state FROM pg_stat_activity WHERE datname = %s AND "
                  "usename = 'app' AND backend_type = 'client backend' ORDER BY pid", (db,))


def busy_backends(pg, db="app"):
    """App backends that are running something or sit inside a transaction."""
    return [(pid, st) for pid, st in app_backends(pg, db) if st != "idle"]


def pins(levee, reason=None):
    m = levee.metrics()
    return m.sum("levee_pool_pins_total", **({"reason": reason} if reason else {}))


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()


class PeakSampler:
    """Polls PostgreSQL's app connection count in a thread; .peak is the largest seen."""

    def __init__(self, pg, db="app", user="app", levee=None):
        self.pg, self.db, self.user, self.levee = pg, db, user, levee
        self.levee_peak = 0  # Levee's own count of open server connections
        self.peak = 0
        self.at_peak = []  # the pg_stat_activity rows of the peak sample
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        rows = self.pg.sql(
            "SELECT pid, state, backend_start, state_change FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND datname = %s AND usename = %s",
            (self.db, self.user))
        if len(rows) > self.peak:
            self.peak, self.at_peak = len(rows), rows
        if self.levee is not None:
            # One series, so one worker's count is a snapshot. Summing the per-state
            # levee_server_connections is not: a scrape reads the states one after
            # another, and a server that changes state in between is counted twice.
            n = self.levee.metrics().sum("levee_server_connections_open")
            self.levee_peak = max(self.levee_peak, int(n))
        self.samples += 1
        return len(rows)

    def _run(self):
        while not self._done.is_set():
            self.sample()
            self._done.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join(10)
        self.sample()


class Background:
    """Runs fn() in a thread; .result / .error once done."""

    def __init__(self, fn):
        self.result = None
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def done(self):
        return not self._thread.is_alive()

    def join(self, timeout):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"still running after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


def errors_in(msgs):
    return [utils.error_fields(b) for k, b in msgs if k == b"E"]


# ---------------------------------------------------------------------------
# Sharing and waiting


@pytest.mark.parametrize("workers", [1, 2])
def test_two_clients_share_one_server(levee_factory, pg, workers):
    levee = levee_factory(cfg({"levee": {"workers": workers}, "database app": {"pool_size": 1}}))
    with PeakSampler(pg) as sampler:
        a = levee.conn(prepare_threshold=None)
        b = levee.conn(prepare_threshold=None)
        pids = set()
        # Across workers a swap means closing one server and opening another: fewer rounds.
        for i in range(30 if workers == 1 else 10):
            assert one(a, "SELECT %s::int + 1", (i,)) == (i + 1,)
            assert one(b, "SELECT %s::text", (f"b{i}",)) == (f"b{i}",)
            pids.add(one(a, "SELECT pg_backend_pid()")[0])
            pids.add(one(b, "SELECT pg_backend_pid()")[0])
            if i % 5 == 0:
                sampler.sample()
        # Both clients stay connected while the pool has one server.
        assert a.info.transaction_status == b.info.transaction_status == IDLE
    assert sampler.peak == 1, sampler.peak
    if workers == 1:
        assert len(pids) == 1, pids
    row = pool_row(levee)
    assert row["pool_mode"] == "transaction"
    # The client's BackendKeyData pid is Levee's own, not a server's.
    assert a.info.backend_pid not in pids


@pytest.mark.levee_config(cfg(ONE))
def test_begin_holds_the_server_until_commit(levee):
    a = levee.conn(autocommit=False)
    b = levee.conn()
    pid_a = one(a, "SELECT pg_backend_pid()")[0]  # psycopg sent BEGIN: a holds the server
    assert a.info.transaction_status == INTRANS
    job = Background(lambda: one(b, "SELECT pg_backend_pid()")[0])
    wait_until(lambda: cl_waiting(levee) == 1, 5 * SLOW, message="cl_waiting 1")
    assert not job.done()
    assert one(a, "SELECT 2") == (2,)  # a keeps using its server meanwhile
    assert not job.done()
    a.commit()
    assert job.join(5 * SLOW) == pid_a
    assert cl_waiting(levee) == 0


@pytest.mark.levee_config(cfg({"pool": {"query_wait_timeout": "1s"},
                               "database app2": {"pool_size": 1}}))
def test_query_wait_timeout_gives_53300_naming_the_pool(levee):
    with utils.RawConn(levee.port, timeout=10 * SLOW) as b:
        b.login(database="app2")  # logged in; its server went back to the pool
        holder = levee.conn(dbname="app2", autocommit=False)
        assert one(holder, "SELECT 1") == (1,)  # holds the only server, in a transaction
        t0 = time.monotonic()
        msgs = b.query("SELECT 2")
        secs = time.monotonic() - t0
        errs = errors_in(msgs)
        assert [e["C"] for e in errs] == ["53300"], msgs
        assert "app2/app" in errs[0]["M"], errs[0]
        assert 0.8 <= secs < 4 * SLOW, secs
        b.expect_closed()
    # A new client also times out at login, with the same error.
    phase, err = utils.login_and_query(levee.port, database="app2", timeout=10 * SLOW)
    assert phase == "login" and err["C"] == "53300" and "app2/app" in err["M"], (phase, err)
    assert one(holder, "SELECT 3") == (3,)
    holder.commit()
    assert utils.login_and_query(levee.port, database="app2") == (None, None)


@pytest.mark.levee_config(cfg(ONE, {"pool": {"idle_transaction_timeout": "1s"}}))
def test_idle_transaction_timeout_rolls_back_and_frees_the_server(levee, pg):
    levee.sql("CREATE TABLE IF NOT EXISTS pool_itt (v int)")
    levee.sql("TRUNCATE pool_itt")
    with utils.RawConn(levee.port, timeout=10 * SLOW) as a:
        a.login()
        msgs = a.query("BEGIN; CREATE TEMP TABLE itt_tmp (v int); INSERT INTO pool_itt VALUES (1)")
        assert msgs[-1] == (b"Z", b"T"), msgs
        assert [st for _, st in app_backends(pg)] == ["idle in transaction"]
        t0 = time.monotonic()
        got = a.expect_closed(timeout=5 * SLOW)
        secs = time.monotonic() - t0
        assert [e["C"] for e in errors_in(got)] == ["25P03"], got
        assert 0.8 <= secs < 3 * SLOW, secs
    # The next client of the one-server pool gets a server with nothing left over.
    with levee.conn() as b:
        assert one(b, "SELECT count(*) FROM pool_itt") == (0,)
        assert b.info.transaction_status == IDLE
        assert one(b, "SELECT to_regclass('itt_tmp')") == (None,)
        assert one(b, "SELECT pg_current_xact_id_if_assigned()") == (None,)
    assert busy_backends(pg) == []
    assert pg.sql("SELECT count(*) FROM pool_itt", dbname="app") == [(0,)]


# ---------------------------------------------------------------------------
# Carried settings


def _set_all(conn, app, datestyle, tz, path):
    conn.execute(f"SET application_name = '{app}'")
    conn.execute(f"SET DateStyle = '{datestyle}'")
    conn.execute(f"SET TimeZone = '{tz}'")
    conn.execute(f"SET search_path = {path}")


SHOW_ALL = ("SELECT current_setting('application_name'), current_setting('DateStyle'), "
            "current_setting('TimeZone'), current_setting('search_path')")


@pytest.mark.slow
@pytest.mark.levee_config(cfg(ONE))
def test_1000_interleavings_never_leak_settings(levee):
    c1 = levee.conn(prepare_threshold=None)
    c2 = levee.conn(prepare_threshold=None)
    pins_before = pins(levee)
    # Disjoint value sets, so any leak is seen.
    ds1, ds2 = ["ISO, DMY", "German, DMY"], ["SQL, MDY", "Postgres, YMD"]
    tz1, tz2 = ["Asia/Tokyo", "UTC", "Europe/Berlin"], ["America/New_York", "Australia/Sydney"]
    leaks = []
    pids = set()
    for i in range(1000):
        v1 = (f"one-{i}", ds1[i % 2], tz1[i % 3], f"one_{i % 2}, public")
        v2 = (f"two-{i}", ds2[i % 2], tz2[i % 2], f"two_{i % 3}")
        _set_all(c1, *v1)
        _set_all(c2, *v2)
        got1 = one(c1, SHOW_ALL)
        got2 = one(c2, SHOW_ALL)
        if got1 != v1:
            leaks.append((i, "c1", v1, got1))
        if got2 != v2:
            leaks.append((i, "c2", v2, got2))
        if i % 100 == 0:
            pids.add(one(c1, "SELECT pg_backend_pid()")[0])
            pids.add(one(c2, "SELECT pg_backend_pid()")[0])
    assert leaks == [], f"{len(leaks)} leaks, first: {leaks[:5]}"
    assert len(pids) == 1, pids  # the two really shared one server
    assert pins(levee) == pins_before  # tracked settings do not pin


@pytest.mark.levee_config(cfg(ONE))
def test_startup_options_survive_server_swaps(levee):
    c3 = levee.conn(options="-c search_path=startup_sp -c DateStyle=SQL,DMY",
                    application_name="c3-start", prepare_threshold=None)
    c4 = levee.conn(prepare_threshold=None)
    default_path = one(c4, "SHOW search_path")[0]
    expect3 = ("c3-start", "SQL, DMY", "startup_sp")
    q = ("SELECT current_setting('application_name'), current_setting('DateStyle'), "
         "current_setting('search_path')")
    pids = set()
    for i in range(50):
        c4.execute(f"SET search_path = other_{i}")
        c4.execute("SET DateStyle = 'ISO, YMD'")
        c4.execute(f"SET application_name = 'c4-{i}'")
        assert one(c3, q) == expect3, i
        pids.add(one(c3, "SELECT pg_backend_pid()")[0])
        pids.add(one(c4, "SELECT pg_backend_pid()")[0])
        assert one(c4, q) == (f"c4-{i}", "ISO, YMD", f"other_{i}"), i
    assert len(pids) == 1, pids
    assert c3.info.parameter_status("DateStyle") == "SQL, DMY"
    assert c3.info.parameter_status("application_name") == "c3-start"
    c4.execute("RESET search_path")
    assert one(c4, "SHOW search_path") == (default_path,)
    assert one(c3, "SHOW search_path") == ("startup_sp",)


@pytest.mark.levee_config(cfg(ONE))
def test_reset_returns_to_the_clients_startup_values(levee):
    """RESET, RESET ALL and DISCARD ALL go back to what the client asked for at
    startup, as on a direct connection, not to the shared server's defaults."""
    c = levee.conn(options="-c search_path=startup_sp -c statement_timeout=1234",
                   application_name="c-start", prepare_threshold=None)
    other = levee.conn(prepare_threshold=None)

    def show():
        other.execute("SET application_name = 'other'")  # a swap in between
        return one(c, "SELECT current_setting('application_name'), "
                      "current_setting('search_path'), current_setting('statement_timeout')")
    start = ("c-start", "startup_sp", "1234ms")
    assert show() == start
    c.execute("SET search_path = changed")
    c.execute("SET application_name = 'changed'")
    assert show() == ("changed", "changed", "1234ms")
    c.execute("RESET search_path")
    c.execute("RESET application_name")
    assert show() == start
    for reset in ("RESET ALL", "DISCARD ALL"):
        c.execute("SET search_path = changed")
        c.execute("SET application_name = 'changed'")
        c.execute("SET statement_timeout = 5000")  # pins until the reset
        assert show() == ("changed", "changed", "5s")
        c.execute(reset)
        assert show() == start, reset
        assert c.info.parameter_status("application_name") == "c-start", reset


@pytest.mark.levee_config(cfg(ONE))
def test_reset_to_startup_values_over_the_extended_protocol(levee):
    """The same over Parse/Bind/Execute/Sync (a binary cursor uses them even without
    parameters) and in a pipeline; a request that fails keeps the settings it found."""
    c = levee.conn(options="-c statement_timeout=1234", application_name="x-start",
                   prepare_threshold=None)
    other = levee.conn(prepare_threshold=None)
    cur = c.cursor(binary=True)

    def show():
        other.execute("SET application_name = 'other'")  # a swap in between
        cur.execute("SELECT current_setting('application_name'), "
                    "current_setting('statement_timeout')")
        return tuple(cur.fetchone())
    start = ("x-start", "1234ms")
    cur.execute("SET application_name = 'changed'")
    cur.execute("SET statement_timeout = '5s'")
    assert show() == ("changed", "5s")
    cur.execute("RESET statement_timeout")
    cur.execute("SET application_name TO DEFAULT")
    assert show() == start
    assert c.info.parameter_status("application_name") == "x-start"
    cur.execute("SET statement_timeout = 5000")
    cur.execute("DISCARD ALL")
    assert show() == start
    # A failed request rolls its RESET back: the settings it found stay.
    cur.execute("SET statement_timeout = 5000")
    with pytest.raises(psycopg.errors.DivisionByZero):
        c.execute("RESET ALL; SELECT 1/0")
    assert show() == ("x-start", "5s")
    # Pipelined requests behind a RESET see the startup values.
    with c.pipeline() as p:
        c.execute("SET application_name = 'piped'")
        p.sync()
        c.execute("RESET ALL")
        p.sync()
        piped = c.execute("SELECT current_setting('application_name'), "
                          "current_setting('statement_timeout')")
    assert tuple(piped.fetchone()) == start
    assert c.info.parameter_status("application_name") == "x-start"
    assert show() == start
    # Prepared statements: noted each time a Bind runs them, not when they are prepared.
    for _ in range(2):
        c.execute("SET statement_timeout = 4000", prepare=True)
        assert show() == ("x-start", "4s")
        c.execute("SET application_name = 'prep'")
        c.execute("RESET ALL", prepare=True)
        assert show() == start
        assert c.info.parameter_status("application_name") == "x-start"


@pytest.mark.levee_config(cfg(ONE))
def test_reset_then_copy_in_one_request(levee):
    """The client's messages after a RESET wait for the startup values to be back,
    except the COPY data of the request itself; the ParameterStatus that restores the
    startup value comes before the request's ReadyForQuery."""
    levee.sql("CREATE TABLE IF NOT EXISTS reset_copy (v int)")
    rc = utils.RawConn(levee.port, timeout=10 * SLOW)
    rc.login(application_name="r-start", options="-c statement_timeout=1234")
    assert rc.params["application_name"] == "r-start"
    assert [k for k, _ in rc.query("SET application_name = 'changed'")][-1] == b"Z"
    rc.send(utils.query_message("RESET ALL; COPY reset_copy FROM STDIN"))
    while rc.recv_msg()[0] != b"G":
        pass
    rc.send(utils.copy_data_message(b"1\n2\n") + utils.message(b"c")
            + utils.query_message("SELECT current_setting('statement_timeout')"))
    msgs = rc.until_ready()
    assert [k for k, _ in msgs if k in (b"C", b"E")] == [b"C"], msgs
    statuses = [body for k, body in msgs if k == b"S" and body.startswith(b"application_name")]
    assert statuses and statuses[-1] == b"application_name\0r-start\0", msgs
    rows = [body for k, body in rc.until_ready() if k == b"D"]
    assert rows and rows[0].endswith(b"1234ms"), rows
    rc.close()


@pytest.mark.levee_config(cfg(ONE))
def test_parameter_status_follows_the_client_across_swaps(levee):
    c1 = levee.conn(prepare_threshold=None)
    c2 = levee.conn(application_name="ps-two", options="-c TimeZone=UTC", prepare_threshold=None)
    c1.execute("SET application_name = 'ps-one'")
    c1.execute("SET TimeZone = 'Asia/Tokyo'")
    for i in range(20):
        assert one(c2, "SELECT %s::int", (i,)) == (i,)
        ts = one(c1, "SELECT '2020-01-01 00:00:00+00'::timestamptz")[0]
        assert ts.utcoffset().total_seconds() == 9 * 3600, ts
        assert c1.info.parameter_status("application_name") == "ps-one", i
        assert c1.info.parameter_status("TimeZone") == "Asia/Tokyo", i
        ts2 = one(c2, "SELECT '2020-01-01 00:00:00+00'::timestamptz")[0]
        assert ts2.utcoffset().total_seconds() == 0, ts2
        assert c2.info.parameter_status("application_name") == "ps-two", i
        assert c2.info.parameter_status("TimeZone") == "UTC", i
    c2.execute("SET application_name = 'ps-two-b'")
    assert one(c1, "SELECT current_setting('application_name')") == ("ps-one",)
    assert c1.info.parameter_status("application_name") == "ps-one"
    assert c2.info.parameter_status("application_name") == "ps-two-b"


# ---------------------------------------------------------------------------
# Session state: pin and reject


PIN_CASES = {
    # reason: (statement, statement that clears it, pattern the reject message must match,
    #          query whose answer is (True,) when the statement left nothing behind)
    "listen": ("LISTEN pin_chan", "UNLISTEN *", r"LISTEN",
               "SELECT count(*) = 0 FROM pg_listening_channels()"),
    "prepare": ("PREPARE pin_stmt AS SELECT 1", "DEALLOCATE ALL", r"PREPARE",
                "SELECT count(*) = 0 FROM pg_prepared_statements WHERE name = 'pin_stmt'"),
    "create_temp": ("CREATE TEMP TABLE pin_tmp (v int)", "DISCARD ALL", r"TEMP",
                    "SELECT to_regclass('pin_tmp') IS NULL"),
    "advisory_lock": ("SELECT pg_advisory_lock(4242)", "SELECT pg_advisory_unlock_all()",
                      r"advisory",
                      "SELECT count(*) = 0 FROM pg_locks WHERE locktype = 'advisory'"),
    "set": ("SET statement_timeout = '5s'", "RESET ALL", r"statement_timeout",
            "SELECT current_setting('statement_timeout') = '0'"),
    "declare_with_hold": ("DECLARE pin_cur CURSOR WITH HOLD FOR SELECT 1", "DISCARD ALL",
                          r"DECLARE|WITH HOLD", "SELECT count(*) = 0 FROM pg_cursors"),
}


@pytest.mark.parametrize("reason", list(PIN_CASES))
@pytest.mark.levee_config(cfg({"levee": {"workers": 1}, "database app": {"pool_size": 2}}))
def test_session_state_pins_the_client(levee, reason):
    stmt, clear, _, _ = PIN_CASES[reason]
    a = levee.conn(prepare_threshold=None)
    b = levee.conn(autocommit=False)
    c = levee.conn()
    before = pins(levee, reason)
    a.execute(stmt)
    pid_a = one(a, "SELECT pg_backend_pid()")[0]
    wait_until(lambda: pins(levee, reason) == before + 1, 5 * SLOW,
               message=f"levee_pool_pins_total{{reason={reason}}} to grow")
    # b's transaction cannot take a's server: it gets the other one.
    pid_b = one(b, "SELECT pg_backend_pid()")[0]
    assert pid_b != pid_a
    for _ in range(5):
        assert one(a, "SELECT pg_backend_pid()") == (pid_a,)
    # Both servers are taken (a pinned, b in a transaction): c waits.
    job = Background(lambda: one(c, "SELECT pg_backend_pid()")[0])
    wait_until(lambda: cl_waiting(levee) == 1, 5 * SLOW, message="c waiting")
    assert one(a, "SELECT 1") == (1,)
    assert not job.done()
    # Clearing the state unpins a: its server serves c while b still holds the other.
    a.execute(clear)
    assert job.join(5 * SLOW) == pid_a
    assert b.info.transaction_status == INTRANS
    b.commit()
    assert pins(levee, reason) == before + 1
    _, _, _, clean = PIN_CASES[reason]
    assert one(a, clean) == (True,)


@pytest.mark.parametrize("reason", list(PIN_CASES))
@pytest.mark.levee_config(cfg(ONE, {"pool": {"session_state": "reject"}}))
def test_session_state_reject(levee, reason):
    stmt, _, pattern, clean = PIN_CASES[reason]
    a = levee.conn(prepare_threshold=None)
    b = levee.conn()
    before = pins(levee)
    with pytest.raises(psycopg.errors.FeatureNotSupported) as ei:
        a.execute(stmt)
    assert ei.value.sqlstate == "0A000"
    msg = ei.value.diag.message_primary or ""
    assert "session_state" in msg, msg
    assert re.search(pattern, msg, re.I), msg
    # Still usable, outside a transaction, and the statement did nothing.
    assert a.info.transaction_status == IDLE
    assert one(a, "SELECT 1") == (1,)
    assert one(a, clean) == (True,)
    # a is not pinned: with one server, b still gets through.
    assert one(b, "SELECT 2") == (2,)
    assert pins(levee) == before
    # Settings Levee carries are not refused.
    a.execute("SET application_name = 'allowed'")
    b.execute("SELECT 3")
    assert one(a, "SHOW application_name") == ("allowed",)


@pytest.mark.levee_config(cfg(ONE))
def test_next_client_never_sees_the_previous_clients_state(levee, pg):
    server_tz = pg.sql("SHOW TimeZone", dbname="app")[0][0]
    server_ds = pg.sql("SHOW DateStyle", dbname="app")[0][0]
    defaults = ("", server_ds, server_tz, '"$user", public')

    # Pinned: temp table, LISTEN, lock, PREPARE, untracked SET, then disconnect.
    a = levee.conn()
    for stmt in ("SET statement_timeout = '7s'", "CREATE TEMP TABLE leak_t (v int)",
                 "LISTEN leak_chan", "SELECT pg_advisory_lock(77)",
                 "PREPARE leak_p AS SELECT 1", "SET application_name = 'leaky'",
                 "SET search_path = leak_schema, public", "SET TimeZone = 'Asia/Tokyo'"):
        a.execute(stmt)
    a.close()
    with levee.conn(prepare_threshold=None) as b:  # waits for the one server
        assert one(b, "SHOW statement_timeout") == ("0",)
        assert one(b, "SELECT to_regclass('leak_t')") == (None,)
        assert one(b, "SELECT count(*) FROM pg_listening_channels()") == (0,)
        assert one(b, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == (0,)
        assert one(b, "SELECT count(*) FROM pg_prepared_statements") == (0,)
        assert one(b, SHOW_ALL) == defaults
        assert b.info.parameter_status("application_name") == ""
        assert b.info.parameter_status("TimeZone") == server_tz

    # Not pinned: only carried settings; the server goes straight to the next client.
    a = levee.conn()
    _set_all(a, "leaky2", "German, DMY", "Asia/Tokyo", "leak2, public")
    pid_a = one(a, "SELECT pg_backend_pid()")[0]
    a.close()
    with levee.conn(prepare_threshold=None) as b:
        assert one(b, "SELECT pg_backend_pid()") == (pid_a,)
        assert one(b, SHOW_ALL) == defaults
        assert b.info.parameter_status("application_name") == ""
        assert b.info.parameter_status("DateStyle") == server_ds


# ---------------------------------------------------------------------------
# Killed clients


def _kill_mid_transaction(rc, pg):
    assert rc.query("BEGIN")[-1] == (b"Z", b"T")
    assert rc.query("INSERT INTO killed VALUES (1)")[-1] == (b"Z", b"T")
    assert [st for _, st in app_backends(pg)] == ["idle in transaction"]


def _kill_mid_result(rc, pg):
    rc.send(utils.query_message("SELECT generate_series(1, 10000000)"))
    kinds = [rc.recv_msg()[0] for _ in range(20)]
    assert kinds[0] == b"T" and set(kinds[1:]) == {b"D"}, kinds
    assert [st for _, st in app_backends(pg)] == ["active"]


def _kill_mid_copy(rc, pg):
    rc.send(utils.query_message("COPY killed FROM STDIN"))
    kind, _ = rc.recv_msg()
    assert kind == b"G", kind
    rc.send(utils.copy_data_message(b"1\n2\n3\n") * 50)
    wait_until(lambda: [st for _, st in app_backends(pg)] == ["active"], 2 * SLOW)


@pytest.mark.parametrize("when", ["mid_transaction", "mid_result", "mid_copy"])
@pytest.mark.levee_config(cfg(ONE))
def test_killed_client_leaves_a_clean_server(levee, pg, when):
    levee.sql("CREATE TABLE IF NOT EXISTS killed (v int)")
    levee.sql("TRUNCATE killed")
    rc = utils.RawConn(levee.port, timeout=10 * SLOW)
    rc.login()
    {"mid_transaction": _kill_mid_transaction, "mid_result": _kill_mid_result,
     "mid_copy": _kill_mid_copy}[when](rc, pg)
    rc.close()
    t0 = time.monotonic()
    wait_until(lambda: busy_backends(pg) == [], 1.0 * SLOW,
               message="app backends idle or closed within 1 s")
    secs = time.monotonic() - t0
    assert pg.sql("SELECT count(*) FROM killed", dbname="app") == [(0,)]
    with levee.conn(prepare_threshold=None) as b:
        assert one(b, "SELECT count(*) FROM killed") == (0,)
        assert b.info.transaction_status == IDLE
        assert one(b, "SELECT pg_current_xact_id_if_assigned()") == (None,)
        with b.cursor().copy("COPY (SELECT 7) TO STDOUT") as copy:
            assert [bytes(r) for r in copy] == [b"7\n"]
    assert busy_backends(pg) == [], secs


# ---------------------------------------------------------------------------
# Limits and client timeouts


@pytest.mark.parametrize("where", ["pool", "user"])
def test_max_user_connections(levee_factory, where):
    if where == "pool":
        over = {"pool": {"max_user_connections": 2}}
    else:
        over = {"pool": {"max_user_connections": 0}, "user app": {"max_user_connections": 2}}
    levee = levee_factory(cfg(over))
    a = levee.conn()
    b = levee.conn(dbname="app2")  # the limit counts the user over every database
    phase, err = utils.login_and_query(levee.port)
    assert phase == "login" and err["C"] == "53300", (phase, err)
    assert "too many connections for user" in err["M"], err
    assert one(a, "SELECT 1") == (1,) and one(b, "SELECT 1") == (1,)
    refused = levee.metrics().get("levee_client_connections_refused_total",
                                  reason="max_user_connections")
    assert refused and refused >= 1
    b.close()
    wait_until(lambda: utils.login_and_query(levee.port) == (None, None), 5 * SLOW)
    # Other users are not limited by app's count.
    assert levee.sql("SELECT 1", user="scram_user", dbname="app") == [(1,)]


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_client_idle_timeout(levee_factory, mode):
    levee = levee_factory({"pool": {"pool_mode": mode, "client_idle_timeout": "1s"}})
    with utils.RawConn(levee.port, timeout=10 * SLOW) as rc:
        rc.login()
        assert rc.query("SELECT 1")[-1] == (b"Z", b"I")
        t0 = time.monotonic()
        got = rc.expect_closed(timeout=5 * SLOW)
        secs = time.monotonic() - t0
        errs = errors_in(got)
        assert [e["C"] for e in errs] == ["57P05"], got
        assert "client_idle_timeout" in errs[0]["M"]
        assert 0.8 <= secs < 3 * SLOW, secs
    # An idle client inside a transaction is not an idle client.
    with utils.RawConn(levee.port, timeout=10 * SLOW) as rc:
        rc.login()
        assert rc.query("BEGIN")[-1] == (b"Z", b"T")
        data, closed = rc.read_until_closed(timeout=1.6)
        assert not closed and data == b""
        assert rc.query("COMMIT")[-1] == (b"Z", b"I")


# ---------------------------------------------------------------------------
# 10,000 connections


async def _read_msg(reader):
    hdr = await reader.readexactly(5)
    (length,) = struct.unpack("!I", hdr[1:5])
    return hdr[:1], await reader.readexactly(length - 4)


async def _raw_select_1(port, user="app", password="app"):
    """Logs in with md5 and runs SELECT 1; returns the value, or raises."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(utils.startup_packet(user, "app"))
        while True:
            kind, body = await _read_msg(reader)
            if kind == b"E":
                raise AssertionError(f"login: {utils.error_fields(body)}")
            if kind == b"R":
                code = struct.unpack("!I", body[:4])[0]
                if code == 5:
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = "md5" + hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    writer.write(utils.message(b"p", outer.encode() + b"\0"))
                elif code != 0:
                    raise AssertionError(f"auth request {code}")
            elif kind == b"Z":
                break
        writer.write(utils.query_message("SELECT 1"))
        value = None
        while True:
            kind, body = await _read_msg(reader)
            if kind == b"E":
                raise AssertionError(f"query: {utils.error_fields(body)}")
            if kind == b"D":
                value = utils.data_row(body)[0]
            if kind == b"Z":
                break
        writer.write(utils.terminate_message())
        await writer.drain()
        return value
    finally:
        writer.close()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_10000_connects_through_pool_size_5(levee_factory, pg, workers):
    levee = levee_factory(cfg({"levee": {"workers": workers}, "database app": {"pool_size": 5},
                               "pool": {"server_connect_concurrency": 2}}))
    n, at_once = 10000, 1000

    async def storm():
        sem = asyncio.Semaphore(at_once)
        failures = []

        async def one_client(i):
            async with sem:
                try:
                    return await _raw_select_1(levee.port)
                except Exception as exc:  # noqa: BLE001 - counted below
                    failures.append((i, repr(exc)))
                    return None

        results = await asyncio.wait_for(
            asyncio.gather(*(one_client(i) for i in range(n))), 90 * SLOW)
        return results, failures

    t0 = time.monotonic()
    # Levee's own count is a snapshot only with one worker (a scrape reads the
    # workers' shards one after another).
    with PeakSampler(pg, levee=levee if workers == 1 else None) as sampler:
        results, failures = asyncio.run(storm())
    secs = time.monotonic() - t0
    assert failures == [], f"{len(failures)} failed, first: {failures[:5]}"
    assert results.count("1") == n
    assert sampler.samples > 10
    if workers == 1:
        assert 1 <= sampler.levee_peak <= 5, sampler.levee_peak
    # What PostgreSQL sees, which includes a backend Levee has let go of but that
    # has not exited yet: the slot must not be reused before the old one is gone.
    assert 1 <= sampler.peak <= 5, (
        sampler.peak, [(pid, st, f"{start:%H:%M:%S.%f}", f"{chg:%H:%M:%S.%f}" if chg else None)
                       for pid, st, start, chg in sampler.at_peak])
    assert secs < 60 * SLOW, secs
    m = levee.metrics()
    assert m.sum("levee_client_connections_total") >= n
    # Servers are reused, not opened per client.
    logins = m.sum("levee_server_connections_total")
    assert logins <= n // 20, logins
