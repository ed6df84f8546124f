# SPDX-License-Identifier: ISC
"""PostgreSQL's own regression suite, directly and through Levee in session mode.

The yardstick for session mode: pg_regress against an existing installation
(installcheck) must give the same verdict for every test through Levee as it
gives directly against PostgreSQL. The suite exercises what poolers tend to
get wrong:
  - pg_regress sets PGDATESTYLE and PGTZ, which libpq sends as the startup
    parameters datestyle and timezone, and horology, date, time, timestamp,
    interval, ... depend on them, including after RESET datestyle / RESET
    TimeZone, which must go back to the client's startup value;
  - it sets PGOPTIONS="-c intervalstyle=postgres_verbose", a startup "options"
    parameter that a pooler must accept and apply (interval, horology);
  - PGAPPNAME=pg_regress/<test> (application_name);
  - pg_backend_pid() matched against pg_locks and pg_stat_activity
    (alter_table, copy, event_trigger, misc_functions, tidscan): it must be
    the pid of the backend that runs the client's statements;
  - \\c, a new session in the middle of a script (privileges, temp, stats,
    foreign_data, prepared_xacts, tablespace), which must start clean again
    (temporary tables gone, settings back to the startup values).
The suite never looks at the BackendKeyData pid itself, so a pooler's made-up
pid is caught only where it breaks one of the above.

The suite comes from the postgresql-15 source package, fetched once by
tools/fetch-pg-regress.sh into build/pg-regress/; the test is skipped, with the
script's reason, when that cannot be done (no deb-src reachable).

Each run gets a fresh PostgreSQL cluster of its own (a Stack, trust auth for
TCP logins), so what one run leaves behind (roles, tablespaces, a half-dropped
schema after a failure) cannot change the other's verdicts. The whole
parallel_schedule is run (217 tests, about a minute each way on two idle
cores). The suite connects to the database "regression" only, as
postgres (its \\c lines change neither), so Levee gets one
[database regression] section, and auth_type = trust without an auth_file.

Two things of this environment, not of Levee, are set straight for both runs:
the stack preloads pg_stat_statements, whose compute_query_id = auto adds
"Query Identifier" lines to EXPLAIN VERBOSE, so it is turned off; and psql is
the suite's own version (the fetch script provides it), because psql 15.19
changed how a script's failing COPY ... FROM STDIN is read.

The test passes when the set of failing tests through Levee equals the set
failing directly. Some fail directly for reasons of their own (the suite's
source version may be an older 15.x than the server when the archive no longer
has the server's own source); comparing keeps those from hiding Levee's.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import utils
from utils import stackmod

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

FETCH = utils.REPO / "tools" / "fetch-pg-regress.sh"
PG_REGRESS = os.environ.get("PG_REGRESS",
                            "/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress")
RUN_TIMEOUT = 900
DBNAME = "regression"

# One line per test of pg_regress's report, e.g.
#   "test tablespace                   ... ok          612 ms"
#   "     boolean                      ... FAILED       30 ms"
#   "     random                       ... failed (ignored)   12 ms"
_RESULT_RE = re.compile(r"^(?:test\s+|\s+)(\S+)\s+\.\.\.\s+(ok|FAILED|failed \(ignored\))")


def _fetch_suite():
    try:
        proc = subprocess.run([str(FETCH)], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("fetch-pg-regress.sh took more than 600s")
    if proc.returncode == 2:
        pytest.skip(proc.stdout.strip() or proc.stderr.strip()[-500:])
    if proc.returncode != 0:
        pytest.fail(f"fetch-pg-regress.sh exited {proc.returncode}:\n"
                    f"{proc.stdout}\n{proc.stderr[-3000:]}", pytrace=False)
    suite = Path(proc.stdout.strip().splitlines()[-1])
    assert (suite / "parallel_schedule").is_file(), suite
    assert (suite / "lib" / "regress.so").is_file(), suite
    return suite


def _schedule_tests(schedule):
    """Every test named in a schedule file (ignore: lines name tests of test: lines)."""
    tests = []
    for line in schedule.read_text().splitlines():
        if line.startswith("test:"):
            tests.extend(line[5:].split())
    return tests


def _make_cluster():
    """A fresh Stack whose primary trusts TCP logins and has the suite's database."""
    st = stackmod.Stack()
    pg = st.start_primary(max_connections=300, host_auth="trust")
    # What pg_regress itself does before a run when not told --use-existing.
    pg.sql(f'CREATE DATABASE "{DBNAME}" TEMPLATE=template0')
    for setting, value in (("lc_messages", "C"), ("lc_monetary", "C"), ("lc_numeric", "C"),
                           ("lc_time", "C"), ("bytea_output", "hex"),
                           ("timezone_abbreviations", "Default")):
        pg.sql(f"ALTER DATABASE \"{DBNAME}\" SET {setting} TO '{value}'")
    # The stack preloads pg_stat_statements, whose compute_query_id = auto adds a
    # "Query Identifier" line to every EXPLAIN VERBOSE of the suite.
    pg.sql("ALTER SYSTEM SET compute_query_id = off")
    pg.sql("SELECT pg_reload_conf()")
    stackmod.wait_until(lambda: pg.sql("SHOW compute_query_id", dbname=DBNAME) == [("off",)],
                        10, message="compute_query_id = off")
    return st, pg


def _run_pg_regress(suite, outdir, port):
    """Runs the parallel schedule against 127.0.0.1:port; returns (results, stdout, seconds).

    results maps each test to "ok", "FAILED" or "failed (ignored)".
    """
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    # Tests write files with server-side COPY into results/, as the server's OS user.
    (outdir / "results").mkdir()
    os.chmod(outdir, 0o777)
    os.chmod(outdir / "results", 0o777)
    env = dict(os.environ)
    for var in ("PGOPTIONS", "PGDATESTYLE", "PGTZ", "PGPASSWORD", "PGSERVICE", "PGDATABASE"):
        env.pop(var, None)
    cmd = [PG_REGRESS, "--use-existing", "--host=127.0.0.1", f"--port={port}",
           "--user=postgres", f"--dbname={DBNAME}", f"--inputdir={suite}",
           f"--outputdir={outdir}", f"--dlpath={suite / 'lib'}",
           f"--bindir={suite / 'bin'}", f"--schedule={suite / 'parallel_schedule'}"]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=outdir,
                          timeout=RUN_TIMEOUT)
    seconds = time.monotonic() - start
    out = proc.stdout + proc.stderr
    if proc.returncode not in (0, 1):
        pytest.fail(f"pg_regress exited {proc.returncode}:\n{out[-4000:]}", pytrace=False)
    results = {}
    for line in proc.stdout.splitlines():
        m = _RESULT_RE.match(line)
        if m:
            results[m.group(1)] = m.group(2)
    return results, out, seconds


def _failing(results):
    return {t for t, verdict in results.items() if verdict == "FAILED"}


def _diff_of(outdir, test):
    """The regression.diffs section of one test (what pg_regress printed for it)."""
    try:
        text = (outdir / "regression.diffs").read_text(errors="replace")
    except FileNotFoundError:
        return "(no regression.diffs)"
    sections = re.split(r"(?m)^(?=diff -U3 )", text)
    for sec in sections:
        first = sec.split("\n", 1)[0]
        if re.search(rf"/expected/{re.escape(test)}(_\d+)?\.out ", first):
            return sec[:4000]
    return f"(no section for {test} in regression.diffs)"


def test_regress_through_levee_matches_direct(request, tmp_path):
    suite = _fetch_suite()
    expected_tests = _schedule_tests(suite / "parallel_schedule")
    source_version, server_version = (suite / "VERSION").read_text().split()[:2]

    # 1. Directly against PostgreSQL.
    st, pg = _make_cluster()
    try:
        direct, direct_out, direct_s = _run_pg_regress(
            suite, Path(st.dir) / "regress-direct", pg.port)
        direct_dir = tmp_path / "direct"
        shutil.copytree(Path(st.dir) / "regress-direct", direct_dir)
    finally:
        st.stop()
    assert set(direct) == set(expected_tests), \
        f"pg_regress did not report every test:\n{direct_out[-3000:]}"

    # 2. Through Levee, session mode, against a cluster of its own.
    st, pg = _make_cluster()
    lv = None
    try:
        overrides = {
            "levee": {"auth_type": "trust", "auth_file": None},
            "pool": {"pool_mode": "session", "pool_size": 100, "query_wait_timeout": "300s"},
            "database app": None,
            "database app2": None,
            f"database {DBNAME}": {"primary": f"127.0.0.1:{pg.port}"},
        }
        lv = utils.Levee(tmp_path / "levee", pg=pg, redis=None, overrides=overrides)
        request.node._levees.append(lv)  # conftest prints its log if the test fails
        lv.start()
        # Sanity: the suite's startup settings reach the server through Levee.
        probe = subprocess.run(
            [stackmod.PSQL, "-X", "-At", "-h", lv.host, "-p", str(lv.port), "-U", "postgres",
             "-d", DBNAME, "-c", "SHOW DateStyle", "-c", "SHOW TimeZone",
             "-c", "SHOW IntervalStyle"],
            capture_output=True, text=True, timeout=60,
            env=dict(os.environ, PGDATESTYLE="Postgres, MDY", PGTZ="PST8PDT",
                     PGOPTIONS="-c intervalstyle=postgres_verbose"))
        assert probe.returncode == 0, probe.stderr + lv.log_tail(40)
        assert probe.stdout.split("\n")[:3] == ["Postgres, MDY", "PST8PDT",
                                                "postgres_verbose"], probe.stdout

        levee, levee_out, levee_s = _run_pg_regress(
            suite, Path(st.dir) / "regress-levee", lv.port)
        levee_dir = tmp_path / "levee-run"
        shutil.copytree(Path(st.dir) / "regress-levee", levee_dir)
        assert lv.is_running(), "levee exited during the run:\n" + lv.log_tail(60)
    finally:
        try:
            if lv is not None:
                lv.cleanup()
        finally:
            st.stop()

    print(f"\npg_regress: suite {source_version}, server {server_version}, "
          f"{len(expected_tests)} tests")
    print(f"pg_regress directly:     {direct_s:6.1f}s, failing: {sorted(_failing(direct))}")
    print(f"pg_regress through Levee: {levee_s:6.1f}s, failing: {sorted(_failing(levee))}")
    assert set(levee) == set(expected_tests), \
        f"pg_regress through Levee did not report every test:\n{levee_out[-3000:]}"

    only_levee = sorted(_failing(levee) - _failing(direct))
    only_direct = sorted(_failing(direct) - _failing(levee))
    report = []
    for t in only_levee:
        report.append(f"--- {t}: fails only through Levee ---\n{_diff_of(levee_dir, t)}")
    for t in only_direct:
        report.append(f"--- {t}: fails only directly ---\n{_diff_of(direct_dir, t)}")
    assert not report, "\n".join(report)


# The yardstick's finding pinned down, so that it fails every time rather than when
# temp's "\\c -" happens to get a server connection an earlier session used:
# DISCARD ALL drops temporary tables but the backend keeps its temporary schema
# (pg_my_temp_schema() stays non-zero), which a fresh session does not have. The
# regression test temp then gets "prepared transactions are disabled" through
# Levee instead of "cannot PREPARE a transaction that has operated on temporary
# objects". A server connection whose session made a temporary schema cannot be
# made clean again, so it must be closed instead of pooled.
@pytest.mark.levee_config({"levee": {"workers": 1}, "pool": {"pool_size": 1}})
def test_new_session_has_no_temp_schema_of_an_earlier_one(levee):
    q = "SELECT pg_backend_pid(), pg_my_temp_schema()::bigint"
    with levee.conn() as c:
        c.execute("CREATE TEMP TABLE yardstick_tmp (a int)")
        pid1, schema1 = c.execute(q).fetchone()
    assert schema1 != 0
    with levee.conn() as c:
        pid2, schema2 = c.execute(q).fetchone()
        assert c.execute("SELECT count(*) FROM pg_class WHERE relname = 'yardstick_tmp'"
                         ).fetchone() == (0,)
    assert schema2 == 0, (f"backend {pid2} (first session's: {pid1}) still has the "
                          f"temporary schema {schema2}")
