# SPDX-License-Identifier: ISC
"""The result cache against real servers: opt-in by [cache.rule] (tables,
fingerprint, regex) or a levee:cache hint; only plain reads outside a writing
transaction, volatile functions only when asked, never for bypass_users; a hit
is byte for byte what the miss sent (simple and extended protocol, text and
binary); keys separate users (row-level security, SET ROLE, REVOKE),
search_path and parameter values; writes through Levee invalidate, also on a
second instance through Redis; single-flight under a miss storm; TTL jitter;
stale-while-revalidate; Redis dying mid-run; max_entry_size; errors are not
cached; INVALIDATE CACHE, SHOW CACHE and SHOW CACHE RULES; evictions.

A hit is proven by counting executions in pg_stat_statements (calls), by the
levee_cache_* counters, or by changing a row straight on PostgreSQL (which no
Levee sees) and still reading the old value through Levee."""

import concurrent.futures
import ctypes
import random
import struct
import threading
import time
import uuid

import psycopg
import pytest

import utils
from utils import SLOW, wait_until

# Transaction pooling, and no TTL jitter unless a test asks for it, so TTLs are exact.
BASE = {"pool": {"pool_mode": "transaction"}, "cache": {"jitter": "0%", "xfetch_beta": "0"}}


def cfg(*layers):
    return utils.merge_overrides(BASE, *layers)


def rule(name, **keys):
    """A [cache.rule NAME] section; ttl defaults to 60s."""
    keys.setdefault("ttl", "60s")
    return {f"cache.rule {name}": keys}


# ---------------------------------------------------------------------------
# Helpers


def table(pg, name, cols="id int PRIMARY KEY, v text", rows=(), grant=()):
    """(Re)creates table name in database app, owned by app, with rows."""
    with pg.connect(dbname="app") as c:
        c.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
        c.execute(f"CREATE TABLE {name} ({cols})")
        c.execute(f"ALTER TABLE {name} OWNER TO app")
        for r in rows:
            c.execute(f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(r))})", r)
        for role in grant:
            c.execute(f"GRANT SELECT ON {name} TO {role}")


def direct(pg, sql, params=None):
    """Runs sql straight on PostgreSQL (database app): no Levee sees it."""
    return pg.sql(sql, params, dbname="app")


def reset_stats(pg):
    direct(pg, "SELECT pg_stat_statements_reset()")


def calls(pg, like):
    """Executions PostgreSQL counted of the statements whose text matches the LIKE pattern."""
    rows = direct(pg, "SELECT coalesce(sum(calls), 0)::int FROM pg_stat_statements "
                      "WHERE query LIKE %s AND query NOT LIKE '%%pg_stat_statements%%'", (like,))
    return rows[0][0]


def val(conn, sql, params=None, **kw):
    return conn.execute(sql, params, **kw).fetchone()[0]


def counter(lv, name, **labels):
    return lv.metrics().sum(name, **labels)


def requests(lv, result):
    return counter(lv, "levee_cache_requests_total", result=result)


def run_together(conns, fn, timeout=30 * SLOW):
    """Runs fn(conn) on every connection at once (one thread each, released
    together by a barrier); returns [(result, seconds)] and [errors]."""
    n = len(conns)
    barrier = threading.Barrier(n)
    out = [None] * n
    errors = []

    def work(i):
        try:
            barrier.wait(timeout)
            t0 = time.monotonic()
            r = fn(conns[i])
            out[i] = (r, time.monotonic() - t0)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "clients still running"
    return out, errors


def open_conns(lv, n, **kw):
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        return list(ex.map(lambda _: lv.conn(**kw), range(n)))


class _FpResult(ctypes.Structure):
    _fields_ = [("fingerprint", ctypes.c_uint64), ("fingerprint_str", ctypes.c_char_p),
                ("stderr_buffer", ctypes.c_char_p), ("error", ctypes.c_void_p)]


def fingerprint(sql):
    """libpg_query's fingerprint of sql as 16 lower-case hex digits (what a rule's
    fingerprint = names)."""
    lib = ctypes.CDLL("libpg_query.so")
    lib.pg_query_fingerprint.restype = _FpResult
    lib.pg_query_fingerprint.argtypes = [ctypes.c_char_p]
    lib.pg_query_free_fingerprint_result.argtypes = [_FpResult]
    r = lib.pg_query_fingerprint(sql.encode())
    try:
        assert not r.error, f"libpg_query could not parse {sql!r}"
        return r.fingerprint_str.decode()
    finally:
        lib.pg_query_free_fingerprint_result(r)


# ---------------------------------------------------------------------------
# Opt-in: rules and hints


def test_nothing_is_cached_without_a_rule_or_hint(levee_factory, pg):
    table(pg, "c_optin", rows=[(1, "a")])
    table(pg, "c_other", rows=[(1, "x")])
    q = "SELECT v FROM c_optin WHERE id = %s"
    # No [cache] configuration at all, then a rule for another table.
    for n, over in enumerate([{}, rule("other", tables="c_other")]):
        direct(pg, "UPDATE c_optin SET v = 'a'")
        reset_stats(pg)
        lv = levee_factory(cfg(over), name=f"optin{n}")
        c = lv.conn()
        assert val(c, q, (1,)) == "a"
        assert val(c, "SELECT v FROM c_optin WHERE id = 1") == "a"
        direct(pg, "UPDATE c_optin SET v = 'b'")
        assert val(c, q, (1,)) == "b", over
        assert val(c, "SELECT v FROM c_optin WHERE id = 1") == "b", over
        assert calls(pg, "SELECT v FROM c_optin%") == 4
        assert requests(lv, "hit") == 0


@pytest.mark.levee_config(cfg(rule("tabs", tables="c_tab, c_tab2")))
def test_rule_by_tables(levee, pg):
    table(pg, "c_tab", rows=[(1, "a"), (2, "b")])
    table(pg, "c_tab2", rows=[(1, "x")])
    table(pg, "c_untab", rows=[(1, "u")])
    reset_stats(pg)
    c = levee.conn()
    q = "SELECT v FROM c_tab WHERE id = %s"
    join = "SELECT t.v, u.v FROM c_tab t JOIN c_untab u USING (id) WHERE t.id = %s"
    both = "SELECT t.v, u.v FROM c_tab t JOIN c_tab2 u USING (id) WHERE t.id = %s"
    assert val(c, q, (1,)) == "a"
    assert c.execute(join, (1,)).fetchone() == ("a", "u")
    assert c.execute(both, (1,)).fetchone() == ("a", "x")
    direct(pg, "UPDATE c_tab SET v = v || '2'")
    direct(pg, "UPDATE c_untab SET v = 'u2'")
    assert val(c, q, (1,)) == "a"  # a hit: PostgreSQL's change is not seen
    assert val(levee.conn(), q, (1,)) == "a"  # on another connection too
    # Every table read must be in the rule: a join with another table is not cached.
    assert c.execute(join, (1,)).fetchone() == ("a2", "u2")
    # A join of tables that are all in the rule is.
    assert c.execute(both, (1,)).fetchone() == ("a", "x")
    assert calls(pg, "SELECT v FROM c_tab WHERE%") == 1
    assert calls(pg, "SELECT t.v, u.v FROM c_tab t JOIN c_untab%") == 2
    assert requests(levee, "hit") >= 3


def test_rule_by_fingerprint(levee_factory, pg):
    q = "SELECT v FROM c_fp WHERE id = %s"
    fp = fingerprint("SELECT v FROM c_fp WHERE id = $1")
    other = "SELECT v, id FROM c_fp WHERE id = %s"
    assert fingerprint("SELECT v, id FROM c_fp WHERE id = $1") != fp
    table(pg, "c_fp", rows=[(1, "a"), (2, "b")])
    lv = levee_factory(cfg(rule("fp", fingerprint=fp)))
    c = lv.conn()
    assert val(c, q, (1,)) == "a"
    assert val(c, q, (2,)) == "b"
    assert c.execute(other, (1,)).fetchone() == ("a", 1)
    direct(pg, "UPDATE c_fp SET v = v || '2'")
    # The same fingerprint with any parameter value is cached; another shape is not.
    assert val(c, q, (1,)) == "a"
    assert val(c, q, (2,)) == "b"
    assert c.execute(other, (1,)).fetchone() == ("a2", 1)


@pytest.mark.levee_config(cfg(rule("rx", match="select v from c_rx")))
def test_rule_by_regex(levee, pg):
    table(pg, "c_rx", rows=[(1, "a")])
    c = levee.conn()
    q = "SELECT v FROM c_rx WHERE id = %s"
    other = "SELECT id, v FROM c_rx WHERE id = %s"
    assert val(c, q, (1,)) == "a"
    assert c.execute(other, (1,)).fetchone() == (1, "a")
    direct(pg, "UPDATE c_rx SET v = 'b'")
    assert val(c, q, (1,)) == "a"  # matched (case-insensitively): cached
    assert c.execute(other, (1,)).fetchone() == (1, "b")  # not matched


@pytest.mark.levee_config(cfg({"cache": {"default_ttl": "1s"}}))
def test_hint_caches_for_default_ttl_or_its_own_ttl(levee, pg):
    table(pg, "c_hint", rows=[(1, "a"), (2, "a")])
    c = levee.conn()
    bare = "/* levee:cache */ SELECT v FROM c_hint WHERE id = 1"
    with_ttl = "/* levee:cache ttl=30s */ SELECT v FROM c_hint WHERE id = 2"
    plain = "SELECT v FROM c_hint WHERE id = 1"
    assert val(c, bare) == "a"
    t_fill = time.monotonic()
    assert val(c, with_ttl) == "a"
    direct(pg, "UPDATE c_hint SET v = 'b'")
    assert val(c, plain) == "b"  # the same statement without the hint is not cached
    assert val(c, bare) == "a"
    assert val(c, with_ttl) == "a"
    # levee:cache alone lives for [cache] default_ttl (1s, no jitter).
    wait_until(lambda: val(c, bare) == "b", 5 * SLOW, interval=0.02,
               message="the default_ttl entry to expire")
    age = time.monotonic() - t_fill
    assert 0.9 <= age < 2.5 * SLOW, age
    assert val(c, with_ttl) == "a"  # ttl=30s: still cached


@pytest.mark.levee_config(cfg(rule("vol", tables="c_vol"),
                              rule("vol2", tables="c_vol2", allow_volatile="true")))
def test_volatile_functions_only_with_a_hint_or_allow_volatile(levee, pg):
    table(pg, "c_vol", rows=[(1, "a")])
    table(pg, "c_vol2", rows=[(1, "a")])
    c = levee.conn()
    for q in ("SELECT v, random() FROM c_vol WHERE id = 1",
              "SELECT v, now() FROM c_vol WHERE id = 1",
              "SELECT v, clock_timestamp() FROM c_vol WHERE id = 1"):
        first = c.execute(q).fetchone()
        second = c.execute(q).fetchone()
        assert first != second, f"{q}: served from the cache although volatile"
    q = "/* levee:cache */ SELECT v, random() FROM c_vol WHERE id = 1"
    assert c.execute(q).fetchone() == c.execute(q).fetchone()
    q = "SELECT v, random() FROM c_vol2 WHERE id = 1"
    assert c.execute(q).fetchone() == c.execute(q).fetchone()


@pytest.mark.levee_config(cfg(rule("txn", tables="c_txn")))
def test_no_caching_inside_a_transaction_that_wrote(levee, pg):
    table(pg, "c_txn", rows=[(1, "v1")])
    q = "SELECT v FROM c_txn WHERE id = 1"
    a = levee.conn()
    b = levee.conn(autocommit=False)
    assert val(a, q) == "v1"
    assert val(a, q) == "v1"  # cached now
    b.execute("UPDATE c_txn SET v = 'v2' WHERE id = 1")
    assert val(b, q) == "v2"  # its own write, not the cached row
    assert val(b, q) == "v2"
    assert val(a, q) == "v1"
    b.rollback()
    # The reads inside the rolled-back transaction filled nothing.
    assert val(a, q) == "v1"
    assert val(levee.conn(), q) == "v1"
    b.execute("UPDATE c_txn SET v = 'v3' WHERE id = 1")
    b.commit()
    assert val(a, q) == "v3"  # the commit invalidated the entry


@pytest.mark.levee_config(cfg({"cache": {"bypass_users": "scram_user"}},
                              rule("byp", tables="c_byp")))
def test_bypass_users_are_never_served_from_the_cache(levee, pg):
    table(pg, "c_byp", rows=[(1, "a")], grant=["scram_user"])
    q = "SELECT v FROM c_byp WHERE id = 1"
    s = levee.conn(user="scram_user")
    app = levee.conn()
    before = requests(levee, "bypass")
    assert val(s, q) == "a"
    assert val(s, q) == "a"
    assert val(app, q) == "a"
    direct(pg, "UPDATE c_byp SET v = 'b'")
    assert val(s, q) == "b"
    assert val(s, "/* levee:cache */ SELECT v FROM c_byp WHERE id = 1") == "b"
    assert val(s, "/* levee:cache */ SELECT v FROM c_byp WHERE id = 1") == "b"
    assert val(app, q) == "a"  # app is cached
    assert requests(levee, "bypass") - before >= 3


# ---------------------------------------------------------------------------
# A hit is what the miss was, byte for byte


RAW_COLS = ("id int, t text, n numeric(10,3), b bytea, flag bool, f float8, arr int[], "
            "j jsonb, nul text")
RAW_ROWS = [(1, "one", "1.500", b"\x00\x01", True, 0.1, [1, 2], '{"k": 1}', None),
            (2, "two ü", "-2.250", b"", False, 1e300, [], "[]", None),
            (3, "", "0.000", b"\xff", None, float("nan"), [None, 3], "null", None)]


def bind_formats(stmt, params=(), result_formats=(), portal=""):
    """Bind with text parameters and the given result format codes."""
    body = portal.encode() + b"\0" + stmt.encode() + b"\0" + struct.pack("!HH", 0, len(params))
    for p in params:
        v = str(p).encode()
        body += struct.pack("!I", len(v)) + v
    body += struct.pack("!H", len(result_formats))
    body += b"".join(struct.pack("!H", f) for f in result_formats)
    return utils.message(b"B", body)


def request(rc, *msgs):
    rc.send(b"".join(msgs) + utils.sync_message())
    return rc.until_ready()


def raw_login(port):
    rc = utils.RawConn(port, timeout=10 * SLOW)
    rc.login()
    return rc


RAW_SQL = "SELECT id, t, n, b, flag, f, arr, j, nul FROM c_raw WHERE id <= {} ORDER BY id"


@pytest.mark.levee_config(cfg(rule("raw", tables="c_raw")))
@pytest.mark.parametrize("variant", ["simple", "extended_text", "extended_binary", "named",
                                     "named_described"])
def test_hit_is_byte_identical_to_the_miss(levee, pg, variant):
    """The same request on two connections and again on the first: PostgreSQL
    runs it once, and every answer is the miss's bytes (and PostgreSQL's own).

    named: Parse+Sync on its own first (libpq's PQprepare, psycopg's prepare),
    then Bind/Describe Portal/Execute/Sync with binary results.
    named_described: Parse, Describe Statement, Bind, Describe Portal, Execute
    in one batch (what JDBC and many drivers send), then Bind alone."""
    table(pg, "c_raw", cols=RAW_COLS, rows=RAW_ROWS)
    ncols = 9
    setup = []
    bind_run = [bind_formats("c_stmt", ["3"], (1,) * ncols), utils.describe_message("P", ""),
                utils.execute_message()]
    if variant == "simple":
        first = again = None
    elif variant in ("extended_text", "extended_binary"):
        fmt = (1,) if variant == "extended_binary" else ()
        first = again = [utils.parse_message("", RAW_SQL.format("$1")),
                         bind_formats("", ["3"], fmt), utils.describe_message("P", ""),
                         utils.execute_message()]
    elif variant == "named":
        setup = [utils.parse_message("c_stmt", RAW_SQL.format("$1"))]
        first = again = bind_run
    else:
        first = [utils.parse_message("c_stmt", RAW_SQL.format("$1")),
                 utils.describe_message("S", "c_stmt")] + bind_run
        again = bind_run

    def send(rc, msgs):
        if msgs is None:
            return rc.query(RAW_SQL.format(3))
        return request(rc, *msgs)

    def login(port):
        rc = raw_login(port)
        if setup:
            assert [k for k, _ in request(rc, *setup)] == [b"1", b"Z"]
        return rc

    reset_stats(pg)
    with login(levee.port) as c1, login(levee.port) as c2:
        miss = send(c1, first)
        hit_other = send(c2, first)
        hit_same = send(c1, again)
        hit_same2 = send(c1, again)
    assert [k for k, _ in miss if k == b"D"] == [b"D"] * 3, miss
    assert not [m for m in miss if m[0] == b"E"], miss
    n = calls(pg, "SELECT id, t, n, b, flag, f, arr, j, nul FROM c_raw%")
    assert n == 1, f"PostgreSQL ran the statement {n} times for 4 requests"
    assert hit_other == miss
    assert hit_same2 == hit_same
    if again is first:
        assert hit_same == miss
    else:
        # The same response without ParseComplete, ParameterDescription and the
        # statement's RowDescription.
        assert [k for k, _ in miss[:3]] == [b"1", b"t", b"T"], miss
        assert hit_same == miss[3:]
    # And what PostgreSQL itself sends for the same requests.
    with login(pg.port) as d:
        assert send(d, first) == miss
        if again is not first:
            assert send(d, again) == hit_same


@pytest.mark.levee_config(cfg(rule("raw", tables="c_raw")))
def test_simple_and_extended_requests_of_one_text_get_their_own_answers(levee, pg):
    """The same text sent with Query and with Parse/Bind/Execute: each gets
    PostgreSQL's answer for that protocol, whichever filled the cache first."""
    table(pg, "c_raw", cols=RAW_COLS, rows=RAW_ROWS)
    sql = RAW_SQL.format(2)
    ext = [utils.parse_message("", sql), utils.bind_message(""), utils.execute_message()]
    with raw_login(pg.port) as d:
        want_simple, want_ext = d.query(sql), request(d, *ext)
    with raw_login(levee.port) as c:
        for _ in range(2):
            assert c.query(sql) == want_simple
            assert request(c, *ext) == want_ext


@pytest.mark.levee_config(cfg(rule("fmt", tables="c_raw")))
def test_psycopg_text_binary_and_prepared_hits_give_the_right_values(levee, pg):
    table(pg, "c_raw", cols=RAW_COLS, rows=RAW_ROWS)
    q = "SELECT id, t, n, b, flag, f, arr, j, nul FROM c_raw WHERE id <= %s ORDER BY id"
    with psycopg.connect(pg.dsn(dbname="app", user="app", password="app")) as d:
        truth = [tuple(repr(x) for x in r) for r in d.execute(q, (3,)).fetchall()]
    reset_stats(pg)
    c = levee.conn(prepare_threshold=100000)
    kinds = [dict(), dict(binary=True), dict(prepare=True), dict(prepare=True, binary=True)]
    runs = 0
    for _ in range(3):
        for kw in kinds:
            got = [tuple(repr(x) for x in r) for r in c.execute(q, (3,), **kw).fetchall()]
            runs += 1
            assert got == truth, kw
    # Text and binary results are different entries; each was filled once.
    n = calls(pg, "SELECT id, t, n, b, flag, f, arr, j, nul FROM c_raw%")
    assert 1 <= n <= len(kinds) < runs, n


# ---------------------------------------------------------------------------
# Keys: parameters, search_path, users


@pytest.mark.levee_config(cfg(rule("par", tables="c_par")))
def test_keys_separate_parameter_values(levee, pg):
    table(pg, "c_par", rows=[(i, f"v{i}") for i in range(1, 6)] + [(6, ""), (7, None)])
    reset_stats(pg)
    c = levee.conn()
    q = "SELECT v FROM c_par WHERE id = %s"
    for _ in range(3):
        for i in range(1, 6):
            assert val(c, q, (i,)) == f"v{i}"
    assert calls(pg, "SELECT v FROM c_par WHERE%") == 5
    q = "SELECT id FROM c_par WHERE v IS NOT DISTINCT FROM %s::text"
    for _ in range(2):
        assert val(c, q, ("",)) == 6
        assert val(c, q, (None,)) == 7
        assert val(c, q, ("v3",)) == 3


@pytest.mark.levee_config(cfg(rule("sp", tables="c_sp")))
def test_keys_separate_search_path(levee, pg):
    with pg.connect(dbname="app") as c:
        for s in ("c_s1", "c_s2"):
            c.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
            c.execute(f"CREATE SCHEMA {s} AUTHORIZATION app")
            c.execute(f"CREATE TABLE {s}.c_sp (id int, v text)")
            c.execute(f"ALTER TABLE {s}.c_sp OWNER TO app")
            c.execute(f"INSERT INTO {s}.c_sp VALUES (1, '{s}')")
    q = "SELECT v FROM c_sp WHERE id = 1"
    one = levee.conn(options="-c search_path=c_s1")
    two = levee.conn()
    two.execute("SET search_path = c_s2")
    sw = levee.conn()
    for _ in range(3):
        assert val(one, q) == "c_s1"
        assert val(two, q) == "c_s2"
        for s in ("c_s2", "c_s1"):
            sw.execute(f"SET search_path = {s}")
            assert val(sw, q) == s
    assert requests(levee, "hit") >= 6


@pytest.fixture
def roles(pg):
    """Roles c_role_a and c_role_b (passwords pa, pb), members of app, and a
    Levee users= mapping that knows them."""
    users = {"c_role_a": "pa", "c_role_b": "pb"}
    for r, pw in users.items():
        exists = pg.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (r,))
        if not exists:
            pg.sql(f"CREATE ROLE {r} LOGIN PASSWORD '{utils.md5_secret(r, pw)}'")
        pg.sql(f"GRANT {r} TO app")
    return {**utils.USERS, **users}


def rls_table(pg):
    table(pg, "c_rls", cols="owner name, v text",
          rows=[("c_role_a", "a1"), ("c_role_a", "a2"), ("c_role_b", "b1")],
          grant=["c_role_a", "c_role_b"])
    with pg.connect(dbname="app") as c:
        c.execute("ALTER TABLE c_rls ENABLE ROW LEVEL SECURITY")
        c.execute("CREATE POLICY own ON c_rls USING (owner = current_user)")


RLS_Q = "SELECT v FROM c_rls ORDER BY v"


def rows_of(conn, q=RLS_Q):
    return [r[0] for r in conn.execute(q).fetchall()]


def test_row_level_security_and_revoke_with_user_scope(levee_factory, pg, roles):
    rls_table(pg)
    lv = levee_factory(cfg(rule("rls", tables="c_rls")), users=roles)
    reset_stats(pg)
    a = lv.conn(user="c_role_a")
    b = lv.conn(user="c_role_b")
    owner = lv.conn()
    assert rows_of(a) == ["a1", "a2"]
    assert rows_of(b) == ["b1"]
    assert rows_of(owner) == ["a1", "a2", "b1"]  # the owner is not subject to the policy
    assert rows_of(a) == ["a1", "a2"]
    assert rows_of(b) == ["b1"]
    assert rows_of(lv.conn(user="c_role_b")) == ["b1"]
    assert calls(pg, "SELECT v FROM c_rls%") == 3, "cached per user, filled once each"
    # REVOKE (through Levee): b gets PostgreSQL's error, not its cached rows.
    owner.execute("REVOKE SELECT ON c_rls FROM c_role_b")
    for conn in (b, lv.conn(user="c_role_b")):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rows_of(conn)
    assert rows_of(a) == ["a1", "a2"]


def test_set_role_is_part_of_the_key(levee_factory, pg, roles):
    rls_table(pg)
    lv = levee_factory(cfg(rule("rls", tables="c_rls")), users=roles)
    c = lv.conn()
    for _ in range(2):
        c.execute("SET ROLE c_role_a")
        assert rows_of(c) == ["a1", "a2"]
        c.execute("SET ROLE c_role_b")
        assert rows_of(c) == ["b1"]
        c.execute("RESET ROLE")
        assert rows_of(c) == ["a1", "a2", "b1"]


# ---------------------------------------------------------------------------
# Invalidation by writes


@pytest.mark.levee_config(cfg(rule("fresh", tables="c_fresh")))
def test_a_write_through_levee_is_read_back_at_once(levee, pg):
    table(pg, "c_fresh", rows=[(1, "v0")])
    reset_stats(pg)
    r = levee.conn()
    w = levee.conn()
    q = "SELECT v FROM c_fresh WHERE id = 1"
    assert val(r, q) == "v0"
    assert val(r, q) == "v0"
    assert calls(pg, "SELECT v FROM c_fresh%") == 1
    inval = counter(levee, "levee_cache_invalidations_total", source="write")
    for i in range(1, 21):
        w.execute("UPDATE c_fresh SET v = %s WHERE id = 1", (f"v{i}",))
        assert val(r, q) == f"v{i}", i
        assert val(w, q) == f"v{i}", i
    assert counter(levee, "levee_cache_invalidations_total", source="write") - inval >= 20
    # Every other kind of write invalidates too.
    w.execute("INSERT INTO c_fresh VALUES (2, 'two')")
    assert val(r, "SELECT count(*) FROM c_fresh") == 2
    w.execute("DELETE FROM c_fresh WHERE id = 2")
    assert val(r, "SELECT count(*) FROM c_fresh") == 1
    w.execute("TRUNCATE c_fresh")
    assert val(r, "SELECT count(*) FROM c_fresh") == 0


def test_a_write_on_one_instance_invalidates_the_other_through_redis(levee_factory, pg, redis):
    table(pg, "c_shared", rows=[(1, "v0")])
    over = cfg(rule("shared", tables="c_shared"))
    a = levee_factory(over, name="lv_a")
    b = levee_factory(over, name="lv_b")
    assert a.settings()["levee"]["redis"] == b.settings()["levee"]["redis"]
    q = "SELECT v FROM c_shared WHERE id = 1"
    ca, cb = a.conn(), b.conn()
    for i in range(1, 6):
        assert val(ca, q) == f"v{i - 1}"
        hits = requests(b, "hit")
        assert val(cb, q) == f"v{i - 1}"
        assert val(cb, q) == f"v{i - 1}"
        assert requests(b, "hit") > hits, "b does not cache"
        ca.execute("UPDATE c_shared SET v = %s WHERE id = 1", (f"v{i}",))
        t0 = time.monotonic()
        wait_until(lambda: val(cb, q) == f"v{i}", 0.5 * SLOW, interval=0.005,
                   message="b to see a's write")
        print(f"round {i}: b saw the write after {(time.monotonic() - t0) * 1000:.1f} ms")
    assert counter(b, "levee_cache_invalidations_total", source="redis") >= 5


# ---------------------------------------------------------------------------
# Storms, jitter, stale-while-revalidate


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_miss_storm_runs_the_query_once(levee_factory, pg, workers):
    table(pg, "c_storm", rows=[(1, "storm")])
    lv = levee_factory(cfg({"levee": {"workers": workers}}))
    q = "/* levee:cache ttl=60s */ SELECT v FROM c_storm, pg_sleep(0.5) WHERE id = 1"
    conns = open_conns(lv, 200)
    reset_stats(pg)
    out, errors = run_together(conns, lambda c: val(c, q))
    assert errors == [], errors[:5]
    assert [r for r, _ in out] == ["storm"] * 200
    assert calls(pg, "%FROM c_storm%") == 1
    m = lv.metrics()
    got = {k: m.sum("levee_cache_requests_total", result=k)
           for k in ("hit", "miss", "coalesced", "stale", "bypass")}
    assert got["miss"] == 1 and got["coalesced"] >= 1, got
    # One result per request: the counter's results partition the 200 requests.
    assert got["hit"] + got["coalesced"] == 199, f"requests counted twice: {got}"


@pytest.mark.slow
def test_miss_storm_across_two_instances_runs_the_query_once(levee_factory, pg, redis):
    """100 clients on each of two instances sharing Redis miss the same cold key
    at once: the Redis fill lock lets one instance fill; the other waits for the
    shared entry (lock_wait) instead of running the statement too."""
    table(pg, "c_storm2", rows=[(1, "both")])
    over = cfg({"cache": {"lock_wait": "3s", "lock_timeout": "5s"}})
    a = levee_factory(over, name="storm_a")
    b = levee_factory(over, name="storm_b")
    q = "/* levee:cache ttl=60s */ SELECT v FROM c_storm2, pg_sleep(0.5) WHERE id = 1"
    conns = open_conns(a, 100) + open_conns(b, 100)
    reset_stats(pg)
    out, errors = run_together(conns, lambda c: val(c, q))
    assert errors == [], errors[:5]
    assert [r for r, _ in out] == ["both"] * 200
    assert calls(pg, "%FROM c_storm2%") == 1
    l2_hits = counter(a, "levee_cache_l2_total", result="hit") + counter(b, "levee_cache_l2_total",
                                                                          result="hit")
    assert l2_hits >= 1, "the second instance must have taken the first one's fill from Redis"


def test_l2_fill_is_shared_by_a_new_instance(levee_factory, pg, redis):
    """An entry filled through one instance is served by another from Redis
    (no execution on PostgreSQL), and a write through either makes both miss."""
    table(pg, "c_l2", rows=[(1, "a")])
    a = levee_factory(cfg(rule("l2", tables="c_l2")), name="l2_a")
    b = levee_factory(cfg(rule("l2", tables="c_l2")), name="l2_b")
    ca, cb = a.conn(), b.conn()
    q = "SELECT v FROM c_l2 WHERE id = 1"
    reset_stats(pg)
    assert val(ca, q) == "a"
    assert val(cb, q) == "a"
    assert calls(pg, "SELECT v FROM c_l2%") == 1
    assert counter(b, "levee_cache_l2_total", result="hit") == 1
    ca.execute("UPDATE c_l2 SET v = 'b' WHERE id = 1")
    wait_until(lambda: val(cb, q) == "b", 5 * SLOW, message="instance b to see the write made through a")
    assert val(ca, q) == "b"


@pytest.mark.parametrize("write", [
    "EXECUTE c_up_stmt",
    "CALL c_up_proc()",
    "DO $$BEGIN UPDATE c_inv_misc SET v = 'new' WHERE id = 1; END$$",
    "EXPLAIN ANALYZE UPDATE c_inv_misc SET v = 'new' WHERE id = 1",
    "COPY c_inv_misc FROM STDIN",
])
@pytest.mark.levee_config(cfg(rule("misc", tables="c_inv_misc"), {"pool": {"pool_mode": "session"}}))
def test_writes_whose_tables_are_not_in_their_text_invalidate(levee, pg, write):
    """EXECUTE of a prepared UPDATE, a procedure, a DO block, EXPLAIN ANALYZE of a
    write and COPY FROM change rows too: the cache must not keep serving the old ones."""
    table(pg, "c_inv_misc", rows=[(1, "old")])
    direct(pg, "CREATE OR REPLACE PROCEDURE c_up_proc() LANGUAGE sql AS "
               "$$UPDATE c_inv_misc SET v = 'new' WHERE id = 1$$")
    direct(pg, "GRANT EXECUTE ON PROCEDURE c_up_proc() TO app")
    c = levee.conn()
    q = "SELECT string_agg(v, ',' ORDER BY id) FROM c_inv_misc"
    assert val(c, q) == "old"
    assert val(c, q) == "old"
    if write.startswith("COPY"):
        with c.cursor().copy(write) as cp:
            cp.write_row((2, "new"))
        assert val(c, q) == "old,new"
        return
    if write.startswith("EXECUTE"):
        c.execute("PREPARE c_up_stmt AS UPDATE c_inv_misc SET v = 'new' WHERE id = 1")
    c.execute(write)
    assert val(c, q) == "new"


@pytest.mark.slow
def test_ttl_jitter_spreads_expiry_over_the_window(levee_factory, pg):
    """1,000 entries filled together with ttl=2s, jitter=20%: each must expire
    between 1.6 s and 2.4 s after its fill, and the expiries must be spread over
    that window, not bunched. Each key is probed once, at a random age between
    1.3 s and 2.7 s; a probe that still reads the old value (changed straight on
    PostgreSQL after the fill) was a hit."""
    n, threads = 1000, 8
    table(pg, "c_jit", cols="id int PRIMARY KEY, v int", rows=[])
    direct(pg, "INSERT INTO c_jit SELECT g, g FROM generate_series(1, %s) g", (n,))
    lv = levee_factory(cfg(rule("jit", tables="c_jit", ttl="2s", jitter="20%", swr="0")))
    q = "SELECT v FROM c_jit WHERE id = %s"
    conns = open_conns(lv, threads)
    filled = {}

    def fill(k):
        c = conns[k]
        for i in range(k + 1, n + 1, threads):
            assert val(c, q, (i,)) == i
            filled[i] = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(fill, range(threads)))
    fill_secs = max(filled.values()) - min(filled.values())
    direct(pg, "UPDATE c_jit SET v = -v")
    rng = random.Random(7)
    ages = [1.3 + 1.4 * k / n for k in range(n)]
    rng.shuffle(ages)
    probes = {i: filled[i] + ages[i - 1] for i in range(1, n + 1)}
    seen = {}  # id -> (age at send, expired)

    def probe(k):
        c = conns[k]
        mine = sorted(range(k + 1, n + 1, threads), key=probes.get)
        for i in mine:
            delay = probes[i] - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # a measurement time point, not a readiness wait
            t = time.monotonic()
            v = val(c, q, (i,))
            seen[i] = (t - filled[i], v != i)
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(probe, range(threads)))
    assert len(seen) == n
    expired = sorted(a for a, e in seen.values() if e)
    live = sorted(a for a, e in seen.values() if not e)
    summary = (f"fill took {fill_secs:.2f}s; first expiry at age {expired[0]:.3f}s, "
               f"last hit at age {live[-1]:.3f}s; {len(expired)} expired, {len(live)} live")
    print(summary)
    assert expired[0] >= 1.55, "an entry expired before ttl - 20%: " + summary
    assert live[-1] <= 2.45, "an entry was served after ttl + 20%: " + summary
    # Without jitter both edges would sit at 2.0 s.
    assert live[-1] - expired[0] >= 0.5, summary
    for lo in (1.6, 1.8, 2.0, 2.2):
        band = [e for a, e in seen.values() if lo <= a < lo + 0.2]
        assert any(band) and not all(band), \
            f"ages {lo:.1f}-{lo + 0.2:.1f}s: {sum(band)} of {len(band)} expired; " + summary


@pytest.mark.levee_config(cfg({"levee": {"workers": 2}}))
def test_stale_while_revalidate_serves_stale_and_refreshes_once(levee, pg):
    table(pg, "c_swr", rows=[(1, "old")])
    q = "/* levee:cache ttl=1s swr=30s */ SELECT v FROM c_swr, pg_sleep(0.5) WHERE id = 1"
    # prepare_threshold=None: psycopg would otherwise switch to a prepared
    # statement after 5 runs on a connection, a different request.
    conns = open_conns(levee, 40, prepare_threshold=None)
    reset_stats(pg)
    assert val(conns[0], q) == "old"
    t_fill = time.monotonic()
    assert calls(pg, "%FROM c_swr%") == 1
    direct(pg, "UPDATE c_swr SET v = 'new'")
    # Past the TTL (no jitter), well within swr.
    time.sleep(max(0.0, t_fill + 1.1 - time.monotonic()))  # a time point, not readiness
    stale0 = requests(levee, "stale")
    out, errors = run_together(conns, lambda c: val(c, q))
    assert errors == [], errors[:5]
    assert [r for r, _ in out] == ["old"] * len(conns), "stale reads must get the stale value"
    slowest = max(s for _, s in out)
    # A read that waited for the refresh (pg_sleep 0.5 s) would take at least 0.5 s.
    assert slowest < 0.35 * SLOW, f"a stale read waited {slowest:.3f}s"
    assert requests(levee, "stale") - stale0 >= len(conns) - 1
    # At once, while the refresh (0.5 s) runs, every client reads again, the one
    # whose read started the refresh included: none of them waits for it.
    again = []
    for conn in conns:
        t0 = time.monotonic()
        again.append((val(conn, q), time.monotonic() - t0))
    assert {v for v, _ in again} <= {"old", "new"}
    slow = [(i, round(s, 3)) for i, (_, s) in enumerate(again) if s >= 0.35 * SLOW]
    assert slow == [], f"reads during the refresh waited for it: {slow}"
    c = conns[0]
    wait_until(lambda: val(c, q) == "new", 5 * SLOW, interval=0.02,
               message="the refreshed value")
    assert calls(pg, "%FROM c_swr%") == 2, "exactly one refresh for all the stale reads"
    assert val(levee.conn(prepare_threshold=None), q) == "new"
    assert calls(pg, "%FROM c_swr%") == 2


# ---------------------------------------------------------------------------
# Redis dies


@pytest.mark.levee_config(cfg(rule("rd", tables="c_rd")))
def test_redis_killed_mid_run_reads_keep_working(levee, pg, redis):
    table(pg, "c_rd", rows=[(i, f"v{i}") for i in range(1, 11)])
    wait_until(lambda: counter(levee, "levee_redis_up") >= 1, 10 * SLOW, message="redis up")
    stop = threading.Event()
    done = []
    errors = []

    def reader():
        try:
            with psycopg.connect(**levee.conninfo(autocommit=True)) as c:
                i = 0
                while not stop.is_set():
                    k = i % 10 + 1
                    got = val(c, "SELECT v FROM c_rd WHERE id = %s", (k,))
                    if not got.startswith(f"v{k}"):
                        errors.append((k, got))
                    val(c, "SELECT count(*) FROM c_rd")
                    done.append(1)
                    i += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))
    threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(done) >= 100, 10 * SLOW, message="reads before the kill")
        redis.kill()
        wait_until(lambda: counter(levee, "levee_redis_up") == 0, 10 * SLOW,
                   message="levee_redis_up to drop to 0")
        n = len(done)
        wait_until(lambda: len(done) >= n + 200, 10 * SLOW, message="reads with Redis down")
        # Writes still invalidate this instance's entries while Redis is down.
        w = levee.conn()
        w.execute("UPDATE c_rd SET v = 'v1-down' WHERE id = 1")
        assert val(w, "SELECT v FROM c_rd WHERE id = %s", (1,)) == "v1-down"
        redis.start()
        wait_until(lambda: counter(levee, "levee_redis_up") >= 1, 15 * SLOW,
                   message="levee to reconnect to Redis")
        n = len(done)
        wait_until(lambda: len(done) >= n + 100, 10 * SLOW, message="reads after the restart")
        w.execute("UPDATE c_rd SET v = 'v1-up' WHERE id = 1")
        assert val(w, "SELECT v FROM c_rd WHERE id = %s", (1,)) == "v1-up"
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == [], errors[:5]
    assert all(not t.is_alive() for t in threads)


# ---------------------------------------------------------------------------
# What is not cached: too large, errors


@pytest.mark.levee_config(cfg(rule("big", tables="c_big", max_entry_size="2kB")))
def test_a_result_over_max_entry_size_passes_through_uncached(levee, pg):
    table(pg, "c_big", rows=[(1, "a")])
    reset_stats(pg)
    c = levee.conn()
    big = "SELECT v, repeat('x', 5000) AS pad FROM c_big WHERE id = 1"
    small = "SELECT v FROM c_big WHERE id = 1"
    before = counter(levee, "levee_cache_fills_total", result="too_large")
    assert c.execute(big).fetchone() == ("a", "x" * 5000)
    assert val(c, small) == "a"
    direct(pg, "UPDATE c_big SET v = 'b'")
    assert c.execute(big).fetchone() == ("b", "x" * 5000)
    assert val(c, small) == "a"
    assert calls(pg, "SELECT v, repeat%") == 2
    assert counter(levee, "levee_cache_fills_total", result="too_large") - before >= 1


@pytest.mark.levee_config(cfg())
def test_an_error_is_not_cached(levee, pg):
    table(pg, "c_err", cols="id int, d int", rows=[(1, 0)])
    marker = f"c_err_{uuid.uuid4().hex[:12]}"
    q = f"/* levee:cache ttl=60s */ SELECT 10 / d AS {marker} FROM c_err WHERE id = 1"
    c = levee.conn()
    errs = counter(levee, "levee_cache_fills_total", result="error")
    for _ in range(2):
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute(q)
    # PostgreSQL logs the statement of each error it raised: it ran twice.
    wait_until(lambda: pg.log().count(marker) >= 2, 5 * SLOW,
               message="two executions in the PostgreSQL log")
    assert pg.log().count(marker) == 2
    assert counter(levee, "levee_cache_fills_total", result="error") - errs >= 1
    direct(pg, "UPDATE c_err SET d = 2")
    assert val(c, q) == 5  # no error replayed once the query succeeds


# ---------------------------------------------------------------------------
# Admin console and metrics


@pytest.mark.levee_config(cfg(rule("inv", tables="c_inv1, c_inv2")))
def test_invalidate_cache_from_the_admin_console(levee, pg):
    table(pg, "c_inv1", rows=[(1, "a")])
    table(pg, "c_inv2", rows=[(1, "a")])
    c = levee.conn()
    q1, q2 = "SELECT v FROM c_inv1 WHERE id = 1", "SELECT v FROM c_inv2 WHERE id = 1"
    assert val(c, q1) == "a" and val(c, q2) == "a"
    direct(pg, "UPDATE c_inv1 SET v = 'b'")
    direct(pg, "UPDATE c_inv2 SET v = 'b'")
    assert val(c, q1) == "a" and val(c, q2) == "a"
    admin0 = counter(levee, "levee_cache_invalidations_total", source="admin")
    levee.admin("INVALIDATE CACHE c_inv1")
    assert val(c, q1) == "b"
    assert val(c, q2) == "a"  # only the named table
    levee.admin("INVALIDATE CACHE")
    assert val(c, q2) == "b"
    assert counter(levee, "levee_cache_invalidations_total", source="admin") - admin0 >= 2


@pytest.mark.levee_config(cfg(rule("r_show", tables="c_show"), rule("r_idle", tables="c_none")))
def test_show_cache_and_show_cache_rules(levee, pg):
    table(pg, "c_show", rows=[(1, "a")])
    c = levee.conn()
    q = "SELECT v FROM c_show WHERE id = 1"
    for _ in range(4):
        assert val(c, q) == "a"
    rules = levee.admin("SHOW CACHE RULES")
    print(rules.columns, list(rules))
    assert "hits" in rules.columns and "misses" in rules.columns, rules.columns
    by_name = {next(str(v) for v in r.values()): r for r in rules}
    assert "r_show" in by_name and "r_idle" in by_name, list(rules)
    assert (int(by_name["r_show"]["hits"]), int(by_name["r_show"]["misses"])) == (3, 1)
    assert (int(by_name["r_idle"]["hits"]), int(by_name["r_idle"]["misses"])) == (0, 0)
    cache = levee.admin("SHOW CACHE")
    print(cache.columns, list(cache))
    assert len(cache) >= 1 and len(cache.columns) >= 2
    m = levee.metrics()
    assert m.sum("levee_cache_entries") >= 1
    assert m.sum("levee_cache_bytes") > 0
    assert m.sum("levee_cache_fills_total", result="stored") >= 1
    assert m.sum("levee_cache_requests_total", result="hit") >= 3
    assert m.sum("levee_cache_requests_total", result="miss") >= 1
    for fam in ("levee_cache_requests_total", "levee_cache_fills_total",
                "levee_cache_evictions_total", "levee_cache_invalidations_total",
                "levee_cache_l2_total", "levee_cache_entries", "levee_cache_bytes",
                "levee_redis_up"):
        assert fam in m.families, fam


@pytest.mark.levee_config(cfg({"cache": {"memory": "1MB", "redis_l2": "false"}},
                              rule("ev", tables="c_ev")))
def test_memory_budget_evicts(levee, pg):
    """300 results of 8 kB each (2.4 MB) through a 1 MB cache: entries are
    evicted, the cache stays within its budget and every key still reads its
    own row."""
    pad = "x" * 8000
    table(pg, "c_ev", rows=[(i, pad) for i in range(1, 301)])
    c = levee.conn()
    q = "SELECT v FROM c_ev WHERE id = %s"
    for i in range(1, 301):
        assert val(c, q, (i,)) == pad
    st = levee.admin("SHOW CACHE")[0]
    assert int(st["budget"]) == 1024 * 1024
    assert 0 < int(st["entries"]) < 300 and int(st["evictions"]) > 0, st
    assert 0 < int(st["bytes"]) <= 1024 * 1024, st
    hits = requests(levee, "hit")
    for i in range(300, 0, -1):
        assert val(c, q, (i,)) == pad
    assert requests(levee, "hit") > hits  # some survived
    # The gauges say what SHOW CACHE says (nothing runs between the two reads).
    st = levee.admin("SHOW CACHE")[0]
    m = levee.metrics()
    assert (m.sum("levee_cache_entries"), m.sum("levee_cache_bytes")) == \
        (int(st["entries"]), int(st["bytes"])), st
    assert m.sum("levee_cache_evictions_total") == int(st["evictions"]), st


# ---------------------------------------------------------------------------
# Session mode


@pytest.mark.levee_config(utils.merge_overrides(BASE, {"pool": {"pool_mode": "session"}}))
def test_session_mode_hits_invalidates_and_stops_after_untracked_set(levee, pg):
    """In session mode a request that starts while the client's server is idle
    is answered from the cache too (simple and extended), a write through
    Levee invalidates, and once the client SETs something the key cannot see
    its requests go to its server."""
    table(pg, "c_sess", rows=[(1, "a"), (2, "b")])
    reset_stats(pg)
    c = levee.conn()
    q = "/* levee:cache ttl=30s */ SELECT v FROM c_sess WHERE id = 1"
    qp = "/* levee:cache ttl=30s */ SELECT v FROM c_sess WHERE id = %s"
    for _ in range(3):
        assert val(c, q) == "a"
        assert val(c, qp, (2,)) == "b"
    assert calls(pg, "/* levee:cache ttl=30s */ SELECT v FROM c_sess%") == 2
    c.execute("UPDATE c_sess SET v = 'z' WHERE id = 1")
    assert val(c, q) == "z"
    direct(pg, "UPDATE c_sess SET v = 'y' WHERE id = 1")
    assert val(c, q) == "z"  # still the cached row: no Levee saw that write
    c.execute("SET search_path = public")
    assert val(c, q) == "y"  # untracked SET: straight to the server from now on


# ---------------------------------------------------------------------------
# Row invalidation ([cache.rule] key)

PT_RULE = rule("pt", tables="c_pt", key="id")


def pt_setup(pg, n=20):
    table(pg, "c_pt", rows=[(i, f"v{i}") for i in range(1, n + 1)])


def pt_fill(c, ids, binary=False):
    for i in ids:
        c.execute("SELECT v FROM c_pt WHERE id = %s", (i,), binary=binary).fetchall()


def pt_vals(c, ids):
    return {i: (c.execute("SELECT v FROM c_pt WHERE id = %s", (i,)).fetchone() or (None,))[0] for i in ids}


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_point_write_invalidates_only_its_rows(levee_factory, pg, mode):
    """With key = id, UPDATE/DELETE/INSERT through `id = value` drop only the
    entries of the rows they name; the rest stay cached (proved by changing
    every row straight on PostgreSQL first: a cached entry still shows the old
    value). Values in any spelling (literal, text parameter, binary int8,
    '007') reach the same row."""
    pt_setup(pg)
    lv = levee_factory(cfg(PT_RULE, {"pool": {"pool_mode": mode}}), name=f"pt_{mode}")
    c = lv.conn()
    pt_fill(c, range(1, 21))
    assert val(c, "SELECT v FROM c_pt WHERE id = 7") == "v7"  # a literal, simple protocol
    direct(pg, "UPDATE c_pt SET v = 'direct' || id")
    c.execute("UPDATE c_pt SET v = 'lv3' WHERE id = %s", (3,))
    c.execute("UPDATE c_pt SET v = 'lv4' WHERE id = %s", ("004",))
    c.execute("UPDATE c_pt SET v = 'lv5' WHERE id = %s", (5,), binary=True)
    c.execute("DELETE FROM c_pt WHERE id = 6")
    c.execute("UPDATE c_pt SET v = 'lv7' WHERE id = '07'")
    c.execute("INSERT INTO c_pt (id, v) VALUES (%s, 'new21')", (21,))
    got = pt_vals(c, range(1, 22))
    assert got[3] == "lv3" and got[4] == "lv4" and got[5] == "lv5" and got[6] is None, got
    assert val(c, "SELECT v FROM c_pt WHERE id = 7") == "lv7"
    assert got[7] == "lv7"
    assert got[21] == "new21"
    # Rows no write named are still served from the cache.
    assert all(got[i] == f"v{i}" for i in (1, 2, 8, 9, 10, 15, 20)), got


@pytest.mark.parametrize("write", [
    "UPDATE c_pt SET v = 'wide' WHERE id > 0",
    "UPDATE c_pt SET v = 'wide' WHERE v LIKE 'v%%'",
    "UPDATE c_pt SET id = id + 100, v = 'wide' WHERE id = 1",
    "INSERT INTO c_pt VALUES (1, 'wide') ON CONFLICT (id) DO UPDATE SET v = 'wide'",
    "DELETE FROM c_pt WHERE id IN (1, 2)",
    "TRUNCATE c_pt",
])
def test_writes_that_are_not_point_writes_invalidate_the_whole_table(levee_factory, pg, write):
    pt_setup(pg)
    lv = levee_factory(cfg(PT_RULE), name="pt_wide")
    c = lv.conn()
    pt_fill(c, range(1, 11))
    direct(pg, "UPDATE c_pt SET v = 'direct' || id")
    c.execute(write)
    got = pt_vals(c, range(3, 11))
    assert all(v != f"v{i}" for i, v in got.items()), f"{write}: a cached row survived: {got}"


def test_named_statements_invalidate_each_execution_in_session_mode(levee_factory, pg):
    """A statement prepared once and executed with different keys (what ORMs and
    pgbench -M prepared do) invalidates each row it is executed for."""
    pt_setup(pg)
    lv = levee_factory(cfg(PT_RULE, {"pool": {"pool_mode": "session"}}), name="pt_named")
    c = lv.conn(prepare_threshold=0)
    pt_fill(c, range(1, 11))
    direct(pg, "UPDATE c_pt SET v = 'direct' || id")
    for i in (2, 9):
        c.execute("UPDATE c_pt SET v = %s WHERE id = %s", (f"named{i}", i))
    got = pt_vals(c, range(1, 11))
    assert got[2] == "named2" and got[9] == "named9", got
    assert got[1] == "v1" and got[5] == "v5", got


def test_point_write_through_one_instance_invalidates_the_other(levee_factory, pg, redis):
    pt_setup(pg)
    a = levee_factory(cfg(PT_RULE), name="pt_a")
    b = levee_factory(cfg(PT_RULE), name="pt_b")
    ca, cb = a.conn(), b.conn()
    pt_fill(cb, range(1, 6))
    direct(pg, "UPDATE c_pt SET v = 'direct' || id")
    ca.execute("UPDATE c_pt SET v = 'from_a' WHERE id = %s", (2,))
    wait_until(lambda: pt_vals(cb, [2])[2] == "from_a", 5 * SLOW, message="b to drop row 2")
    assert pt_vals(cb, [1, 3])[1] == "v1"


def test_invalidation_and_l2_survive_a_redis_script_flush(levee_factory, pg, redis):
    """Levee sends its Redis scripts by SHA; a Redis that lost them (restart,
    SCRIPT FLUSH) answers NOSCRIPT, and Levee must resend them, not drop the
    invalidation."""
    pt_setup(pg)
    a = levee_factory(cfg(PT_RULE), name="flush_a")
    b = levee_factory(cfg(PT_RULE), name="flush_b")
    ca, cb = a.conn(), b.conn()
    pt_fill(cb, range(1, 4))
    redis.client().script_flush()
    direct(pg, "UPDATE c_pt SET v = 'direct' || id")
    ca.execute("UPDATE c_pt SET v = 'after_flush' WHERE id = %s", (1,))
    wait_until(lambda: pt_vals(cb, [1])[1] == "after_flush", 5 * SLOW, message="b to drop row 1")
    assert pt_vals(cb, [2])[2] == "v2"
    # The L2 lookup script: the first lookup after a flush fails (counted, answered by the
    # server), and reloads the scripts, so the next lookup works again.
    redis.client().script_flush()
    e0 = counter(a, "levee_cache_l2_total", result="error")
    assert val(ca, "/* levee:cache ttl=60s */ SELECT v FROM c_pt WHERE id = 3") == "direct3"
    assert counter(a, "levee_cache_l2_total", result="error") == e0 + 1
    m0 = counter(a, "levee_cache_l2_total", result="miss")
    assert val(ca, "/* levee:cache ttl=60s */ SELECT v FROM c_pt WHERE id = 2") == "direct2"
    assert counter(a, "levee_cache_l2_total", result="miss") == m0 + 1


def test_a_reload_that_drops_a_rule_stops_serving_its_entries(levee_factory, pg):
    """Entries are filled under the rules of their time: after a reload removes
    the rule, none of them is served, by either path (a simple Query hit does
    not classify the statement again)."""
    table(pg, "c_rl", rows=[(1, "old")])
    lv = levee_factory(cfg(rule("rl", tables="c_rl")), name="reload_rule")
    c = lv.conn()
    q = "SELECT v FROM c_rl WHERE id = 1"
    assert val(c, q) == "old"
    direct(pg, "UPDATE c_rl SET v = 'new'")
    assert val(c, q) == "old"  # cached
    lv.overrides.pop("cache.rule rl")
    lv.reload({})  # the same settings without the rule
    # The workers take the new generation from their mailboxes, at most a loop turn later.
    wait_until(lambda: val(c, q) == "new", 5 * SLOW, message="the entry to be dropped")
    direct(pg, "UPDATE c_rl SET v = 'newer'")
    assert val(c, q) == "newer"  # and nothing is cached any more


def test_instances_with_and_without_the_key_rule_invalidate_each_other(levee_factory, pg, redis):
    """During a rolling config change one instance has key = id and another not:
    a write through either must reach the other's entries of the rows it changed."""
    pt_setup(pg)
    keyed = levee_factory(cfg(PT_RULE), name="keyed")
    plain = levee_factory(cfg(rule("pt", tables="c_pt")), name="plain")
    ck, cp = keyed.conn(), plain.conn()
    pt_fill(ck, range(1, 6))
    pt_fill(cp, range(1, 6))
    assert pt_vals(cp, [2, 4]) == {2: "v2", 4: "v4"}
    # A point write through the keyed instance.
    ck.execute("UPDATE c_pt SET v = 'k2' WHERE id = %s", (2,))
    wait_until(lambda: pt_vals(cp, [2])[2] == "k2", 5 * SLOW, message="plain to see row 2")
    # The same statement through the plain instance is a table-wide write there.
    cp.execute("UPDATE c_pt SET v = 'p4' WHERE id = %s", (4,))
    wait_until(lambda: pt_vals(ck, [4])[4] == "p4", 5 * SLOW, message="keyed to see row 4")
    assert pt_vals(ck, [1, 2, 3, 4, 5]) == {1: "v1", 2: "k2", 3: "v3", 4: "p4", 5: "v5"}
    assert pt_vals(cp, [1, 2, 3, 4, 5]) == {1: "v1", 2: "k2", 3: "v3", 4: "p4", 5: "v5"}


def test_session_mode_statement_names_follow_close_and_sql_prepare(levee_factory, pg):
    """Session mode keeps each client's statement names to know what a Bind
    writes: a name closed and prepared again runs its new text, and a name
    prepared in SQL (which Levee does not see) invalidates everything."""
    pt_setup(pg)
    lv = levee_factory(cfg(PT_RULE, {"pool": {"pool_mode": "session"}}), name="pt_names")
    c = lv.conn()
    pt_fill(c, range(1, 6))
    direct(pg, "UPDATE c_pt SET v = 'direct' || id")
    with raw_login(lv.port) as rc:
        request(rc, utils.parse_message("s1", "UPDATE c_pt SET v = 'r2' WHERE id = 2"),
                utils.bind_message("s1"), utils.execute_message())
        request(rc, utils.close_message("S", "s1"),
                utils.parse_message("s1", "UPDATE c_pt SET v = 'r3' WHERE id = 3"),
                utils.bind_message("s1"), utils.execute_message())
    assert pt_vals(c, [1, 2, 3, 4]) == {1: "v1", 2: "r2", 3: "r3", 4: "v4"}
    with raw_login(lv.port) as rc:
        assert [k for k, _ in rc.query("PREPARE s2 AS UPDATE c_pt SET v = 'r4' WHERE id = 4")][-1] == b"Z"
        request(rc, utils.bind_message("s2"), utils.execute_message())
    assert pt_vals(c, [1, 4, 5]) == {1: "direct1", 4: "r4", 5: "direct5"}


NO_REDIS = {"levee": {"redis": None}}


def test_writes_are_classified_only_once_the_cache_is_used(levee_factory, pg):
    # Without Redis (no other instance can cache) and before anything was looked up
    # in the cache, a write is not classified: no entry can depend on it.
    table(pg, "c_lazy", rows=[(1, "a")])
    lv = levee_factory(cfg(NO_REDIS))
    before = counter(lv, "levee_sql_classifications_total")
    with lv.conn() as c:
        for i in range(20):
            c.execute("UPDATE c_lazy SET v = %s WHERE id = 1", (f"w{i}",))
    assert counter(lv, "levee_sql_classifications_total") == before
    assert counter(lv, "levee_cache_invalidations_total") == 0
    # Once a statement used the cache, writes invalidate what they touch.
    sel = "SELECT /* levee:cache ttl=60s */ v FROM c_lazy WHERE id = 1"
    with lv.conn() as c:
        assert val(c, sel) == "w19"
        c.execute("UPDATE c_lazy SET v = 'after' WHERE id = 1")
        assert val(c, sel) == "after"
    assert counter(lv, "levee_cache_invalidations_total") >= 1


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_a_write_begun_before_the_cache_was_used_still_invalidates(levee_factory, pg, protocol):
    # The transaction writes while nothing is cached (its write is not classified,
    # nor, with the extended protocol, its unnamed statement kept); another client
    # then fills an entry from the row the transaction has not committed yet. The
    # transaction's end must make that entry stale.
    table(pg, "c_lazy2", rows=[(1, "old")])
    lv = levee_factory(cfg(NO_REDIS))
    sel = "SELECT /* levee:cache ttl=60s */ v FROM c_lazy2 WHERE id = 1"
    writer = lv.conn(autocommit=False)
    if protocol == "simple":
        writer.execute("UPDATE c_lazy2 SET v = 'new' WHERE id = 1")
    else:
        writer.execute("UPDATE c_lazy2 SET v = %s WHERE id = %s", ("new", 1))
    with lv.conn() as reader:
        assert val(reader, sel) == "old"  # filled under the open transaction
        assert val(reader, sel) == "old"  # and served from the cache
        assert requests(lv, "hit") >= 1
        writer.commit()
        assert val(reader, sel) == "new"
    writer.close()
