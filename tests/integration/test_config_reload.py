# SPDX-License-Identifier: ISC
"""Configuration: SIGHUP reloads without dropping clients, a broken file
never replaces a working config, and the command-line checks."""

import re
import subprocess

import utils
from utils import SLOW, wait_until


def _pool_size(levee, db="app"):
    rows = [r for r in levee.admin("SHOW POOLS") if r["database"] == db]
    return {int(r["pool_size"]) for r in rows}


def _config_value(levee, section, key):
    for r in levee.admin("SHOW CONFIG"):
        if r["section"] == section and r["key"] == key:
            return r["value"]
    raise KeyError((section, key))


def _run_levee(*args):
    return subprocess.run([utils.LEVEE_BIN, *map(str, args)], capture_output=True, text=True,
                          timeout=30 * SLOW, env=utils.levee_env())


def _has_location(stderr, path, line):
    name = re.escape(str(path).rsplit("/", 1)[-1])
    return re.search(rf"(^|/){name}:{line}: \S", stderr, re.M)


def test_sighup_changes_pool_size_and_keeps_clients(levee):
    c = levee.conn()
    pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert _pool_size(levee) == {10}
    levee.reload({"database app": {"pool_size": 7}, "pool": {"query_wait_timeout": "12s"}})
    wait_until(lambda: _pool_size(levee) == {7}, 5 * SLOW)
    assert _config_value(levee, "pool", "query_wait_timeout") in ("12s", "12000", "12000ms")
    # The connected client kept its session and its server.
    assert not c.closed
    assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    with levee.conn() as c2:
        assert c2.execute("SELECT 1").fetchone() == (1,)


def test_broken_config_on_sighup_keeps_the_old_one(levee):
    c = levee.conn()
    ok = levee.reload({})  # learn the label of a good reload
    settings = levee.settings()
    settings["pool"]["pool_size"] = "lots"
    text = utils.render_ini(settings)
    bad_line = text.splitlines().index("pool_size = lots") + 1
    bad = levee.reload(text=text)
    assert bad != ok, "a broken config was counted as a good reload"
    levee.wait_log(f":{bad_line}:")
    assert _has_location(levee.log(), levee.ini_path, bad_line), levee.log_tail()
    assert _pool_size(levee) == {10}
    assert _config_value(levee, "pool", "pool_size") == "10"
    assert c.execute("SELECT 1").fetchone() == (1,)
    with levee.conn() as c2:
        assert c2.execute("SELECT 2").fetchone() == (2,)
    assert levee.is_running()


def test_check_config_ok(levee_factory):
    lv = levee_factory(start=False)
    r = _run_levee("--check-config", "-c", lv.ini_path)
    assert r.returncode == 0, r.stderr


def test_check_config_reports_every_error_with_file_and_line(levee_factory):
    lv = levee_factory(start=False)
    lines = utils.render_ini(lv.settings()).splitlines()
    i = lines.index("[pool]")
    lines.insert(i + 1, "pool_size = -5")
    lines.insert(i + 2, "no_such_key = 1")
    text = "\n".join(lines) + "\n"
    lv.write_config(text)
    r = _run_levee("--check-config", "-c", lv.ini_path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert _has_location(r.stderr, lv.ini_path, i + 2), r.stderr
    assert _has_location(r.stderr, lv.ini_path, i + 3), r.stderr


def test_check_config_missing_file(tmp_path):
    r = _run_levee("--check-config", "-c", tmp_path / "nope.ini")
    assert r.returncode == 1
    assert "nope.ini" in r.stderr


def test_version():
    r = _run_levee("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Levee "), r.stdout


def test_run_with_config_restarts_with_overrides(levee):
    """A setting that needs a restart, through the harness's run_with_config()."""
    assert _config_value(levee, "levee", "workers") == "2"
    first_pid = levee.pid
    with levee.run_with_config({"levee": {"workers": 1}}):
        assert levee.pid != first_pid
        assert _config_value(levee, "levee", "workers") == "1"
        assert levee.sql("SELECT 1") == [(1,)]
    assert _config_value(levee, "levee", "workers") == "2"
    assert levee.sql("SELECT 2") == [(2,)]
