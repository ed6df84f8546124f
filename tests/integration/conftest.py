# SPDX-License-Identifier: ISC
"""Fixtures for Levee's integration suite.

Session fixtures (one set per pytest process, so per xdist worker):
  stack        the tools/stack.py Stack that owns the servers' directory
  pg           PostgreSQL 15 primary with the suite's roles and databases
  pg_replicas  two streaming replicas of pg, started on first use
               (mark such tests @pytest.mark.needs_replica)
  redis        Redis 7, persistence off

Function fixtures:
  levee          a started Levee (utils.Levee) configured from levee_test.ini
                 plus any @pytest.mark.levee_config({...}); stopped with SIGTERM
                 at teardown, which fails the test if it had crashed, would
                 not stop, or (LEVEE_SAN=1) left sanitizer reports
  levee_factory  make(overrides=None, start=True, **kw) for more instances

Roles and databases made once per session:
  app         password "app", stored as md5 (so levee's md5 server login is used)
  scram_user  password "scram_pass", stored as SCRAM-SHA-256
  databases   app and app2, owned by app; pg_stat_statements in app
pg_hba uses "md5" for TCP logins, which PostgreSQL answers with SCRAM for
roles whose stored secret is SCRAM.

Autouse: after each test the primary, replicas and Redis are started again
if the test stopped them, pg_hba.conf and ALTER SYSTEM changes made with
pg.set_hba()/pg.alter_system() are undone, and Redis is flushed; a failed
test prints the tail of its Levee logs and of the primary's log. A test
that promotes a replica must use its own Stack (see test_harness.py).
"""

import resource

import pytest

import utils
from utils import stackmod

_state = {"stack": None}


def pytest_configure(config):
    # 1,000 concurrent clients need as many sockets in the test process and in levee.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 20000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# ---------------------------------------------------------------------------
# Servers


@pytest.fixture(scope="session")
def stack():
    stackmod.reap()
    st = stackmod.Stack()
    _state["stack"] = st
    yield st
    _state["stack"] = None
    st.stop()


@pytest.fixture(scope="session")
def pg(stack):
    pg = stack.start_primary(max_connections=300, host_auth="md5")
    pg.sql(f"CREATE ROLE app LOGIN PASSWORD '{utils.md5_secret('app', 'app')}'")
    pg.sql("SET password_encryption = 'scram-sha-256'")
    pg.sql("CREATE ROLE scram_user LOGIN PASSWORD 'scram_pass'")
    pg.sql("CREATE DATABASE app OWNER app")
    pg.sql("CREATE DATABASE app2 OWNER app")
    pg.sql("CREATE EXTENSION pg_stat_statements", dbname="app")
    secrets = dict(pg.sql("SELECT rolname, rolpassword FROM pg_authid "
                          "WHERE rolname IN ('app', 'scram_user')"))
    assert secrets["app"].startswith("md5"), secrets
    assert secrets["scram_user"].startswith("SCRAM-SHA-256$"), secrets
    pg.secrets = secrets
    return pg


@pytest.fixture(scope="session")
def pg_replicas(stack, pg):
    reps = [stack.start_replica(pg) for _ in range(2)]
    return reps


@pytest.fixture(scope="session")
def redis(stack):
    return stack.start_redis()


# ---------------------------------------------------------------------------
# Levee


def _marker_overrides(node):
    """Every levee_config marker of the test, outermost first, each with any number of
    override layers (levee_config(A, B) is A then B)."""
    layers = []
    for m in reversed(list(node.iter_markers("levee_config"))):
        layers.extend(m.args or [m.kwargs.get("overrides")])
    return utils.merge_overrides(*layers)


@pytest.fixture
def levee_factory(request, tmp_path, pg, redis):
    made = []
    replicas = request.getfixturevalue("pg_replicas") \
        if request.node.get_closest_marker("needs_replica") else []

    def make(overrides=None, start=True, **kw):
        kw.setdefault("replicas", replicas)
        name = kw.pop("name", f"levee{len(made)}" if made else "levee")
        lv = utils.Levee(tmp_path / name, pg=pg, redis=redis, overrides=overrides,
                         name=name, **kw)
        made.append(lv)
        request.node._levees.append(lv)
        if start:
            lv.start()
        return lv

    yield make
    errors = []
    for lv in made:
        try:
            lv.cleanup()
        except Exception as exc:  # noqa: BLE001 - clean up the others first
            errors.append(f"{lv.name}: {exc}")
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def levee(request, levee_factory):
    return levee_factory(_marker_overrides(request.node))


# ---------------------------------------------------------------------------
# Autouse


@pytest.fixture(autouse=True)
def _needs_replica(request):
    if request.node.get_closest_marker("needs_replica"):
        request.getfixturevalue("pg_replicas")


@pytest.fixture(autouse=True)
def _logs_and_reset(request):
    request.node._levees = []
    yield
    st = _state["stack"]
    failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
                 for w in ("setup", "call"))
    if failed:
        for lv in request.node._levees:
            print(f"\n----- {lv.log_path} (tail) -----\n{lv.log_tail(80)}")
        if st is not None and st.primary is not None:
            print(f"\n----- {st.primary.logfile} (tail) -----\n{st.primary.log_tail(30)}")
    if st is None:
        return
    # Put shared servers back the way the next test expects them.
    for server in st.servers():
        server.ensure_running()
        server.reset_config()
    if st.redis is not None:
        st.redis.ensure_running()
        st.redis.client().flushall()
