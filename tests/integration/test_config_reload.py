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


def test_check_config_reports_bad_cache_rule_lines(levee_factory):
    """--check-config names the file and line of each broken [cache.rule] / [queue.rule]."""
    lv = levee_factory(start=False)
    lines = utils.render_ini(lv.settings()).splitlines()
    lines += ["[cache.rule hot]", "tables = posts", "match = select (", "ttl = 30s",
              "[cache.rule cold]", "tables = public.posts",
              "[queue.rule q]", "databse = app", ""]
    lv.write_config("\n".join(lines))
    header = lines.index("[cache.rule hot]") + 1
    r = _run_levee("--check-config", "-c", lv.ini_path)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert re.search(rf"(^|/){lv.ini_path.name}:{header + 2}: invalid regex: \S",
                     r.stderr, re.M), r.stderr
    assert _has_location(r.stderr, lv.ini_path, header + 5), r.stderr
    assert "write the bare name \"posts\"" in r.stderr, r.stderr
    assert _has_location(r.stderr, lv.ini_path, header + 4), r.stderr  # cold: no ttl
    assert re.search(rf"{lv.ini_path.name}:{header + 7}: .*did you mean \"database\"",
                     r.stderr), r.stderr
    assert re.search(rf"{lv.ini_path.name}:{header + 6}: missing tables in \[queue.rule q\]",
                     r.stderr), r.stderr


def test_config_with_rules_starts_and_shows_them(levee_factory):
    """A file with [cache], [queue] and rule sections passes the check, starts and serves,
    and SHOW CONFIG lists the rules' keys."""
    lv = levee_factory({
        "cache": {"jitter": "5%", "default_ttl": "10s", "xfetch_beta": "1.5"},
        "queue": {"batch_size": 50, "consumers": "off"},
        "cache.rule hot_posts": {"tables": "Posts, authors", "ttl": "30s", "swr": "1min",
                                 "database": "app"},
        "cache.rule by_text": {"match": "^select .* from countries", "ttl": "1h",
                               "scope": "shared"},
        "queue.rule events": {"tables": "events", "key": "ev"},
    }, start=False)
    r = _run_levee("--check-config", "-c", lv.ini_path)
    assert r.returncode == 0, r.stderr
    lv.start()
    assert lv.sql("SELECT 1") == [(1,)]
    rows = {(x["section"], x["key"]): x["value"] for x in lv.admin("SHOW CONFIG")}
    assert rows[("cache", "jitter")] == "5%"
    assert rows[("cache", "xfetch_beta")] == "1.5"
    assert rows[("queue", "batch_size")] == "50"
    assert rows[("queue", "consumers")] == "false"
    assert rows[("cache.rule hot_posts", "tables")] == "posts, authors"
    assert rows[("cache.rule hot_posts", "swr")] == "1min"
    assert rows[("cache.rule hot_posts", "jitter")] == ""
    assert rows[("cache.rule by_text", "match")] == "^select .* from countries"
    assert rows[("cache.rule by_text", "scope")] == "shared"
    assert rows[("queue.rule events", "key")] == "ev"
    # The rules are reloadable: a changed rule is shown after SIGHUP, with no restart.
    pid = lv.pid
    lv.reload({"cache.rule hot_posts": {"ttl": "45s"}})
    wait_until(lambda: _config_value(lv, "cache.rule hot_posts", "ttl") == "45s", 5 * SLOW)
    assert lv.pid == pid
