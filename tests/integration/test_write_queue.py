# SPDX-License-Identifier: ISC
"""The write queue (src/wq/wq.h states the contract these tests check).

Consumer-side tests put messages into the streams directly (XADD of a payload
built by encode() below, which matches src/wq/codec.c), so they do not
depend on the producer path in the client state machine. Producer tests
(levee:async hints through a client) are skipped until that path exists.
"""

import json
import os
import signal
import threading
from pathlib import Path

import psycopg
import pytest

from utils import REPO, USERS, md5_secret, merge_overrides, stays_true, wait_until

PARTITIONS = 8
PREFIX = "levee:q"

# Short timings so retries, leases and claims happen within a test.
QUEUE = {"queue": {"claim_idle": "2s", "retry_backoff": "100ms", "retry_backoff_max": "400ms",
                   "max_attempts": "3", "max_wait": "50ms", "batch_size": "100"}}



def queue_config(**keys):
    """A levee_config marker: QUEUE with these [queue] keys on top. The marker
    takes ONE overrides dict (conftest reads only its first argument)."""
    return pytest.mark.levee_config(merge_overrides(QUEUE, {"queue": keys}))


# The producer is exercised in both pool modes: session mode defers at the
# start of each request on the client's server, transaction mode before the
# client gets a server at all.
MODES = [pytest.param("session", marks=pytest.mark.levee_config(QUEUE)),
         pytest.param("transaction", marks=pytest.mark.levee_config(
             merge_overrides(QUEUE, {"pool": {"pool_mode": "transaction"}})))]

HAS_PRODUCER = any("lv_wq_enqueue" in f.read_text() for f in (REPO / "src" / "proxy").glob("*.c"))
needs_producer = pytest.mark.skipif(not HAS_PRODUCER,
                                    reason="the producer path (proxy/) is not wired yet")


# ---------------------------------------------------------------------------
# Helpers


def fnv1a(key):
    h = 2166136261
    for b in key.encode():
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def stream(db, key):
    return f"{PREFIX}:{db}:{fnv1a(key) % PARTITIONS}"


def encode(sql, params=(), db="app", user="app", key=None, table="t"):
    """A payload as codec.c writes it. params: str (text), bytes (binary), None (NULL)."""
    ps = []
    for p in params:
        if p is None:
            ps.append({"t": 0, "f": 0, "n": True})
        elif isinstance(p, bytes):
            import base64
            ps.append({"t": 0, "f": 1, "b": base64.b64encode(p).decode()})
        else:
            ps.append({"t": 0, "f": 0, "v": str(p)})
    return json.dumps({"v": 1, "db": db, "user": user, "key": key or table, "table": table,
                       "sql": sql, "params": ps})


def xadd(r, sql, params=(), db="app", key=None, table="t", **kw):
    k = key or table
    return r.xadd(stream(db, k), {"m": encode(sql, params, db=db, key=k, table=table, **kw)})


def db_sql(pg, query, dbname="app"):
    return pg.sql(query, dbname=dbname)


def count(pg, table, dbname="app"):
    return db_sql(pg, f"SELECT count(*) FROM {table}", dbname)[0][0]


def pending_total(r, db="app"):
    n = 0
    for p in range(PARTITIONS):
        s = f"{PREFIX}:{db}:{p}"
        if r.exists(s):
            try:
                n += r.xpending(s, "levee")["pending"]
            except Exception:  # noqa: BLE001 - no group yet
                pass
    return n


def queue_row(levee, db="app"):
    rows = levee.admin("SHOW QUEUE")
    return next(r for r in rows if r["database"] == db)


CRASH_ENV = "LEVEE_TEST_CRASH_AFTER_COMMIT"


def start_crashing(levee_factory):
    """A Levee whose consumer aborts right after its first COMMIT, before XACK."""
    lv = levee_factory(QUEUE, start=False)
    env = dict(lv.env(), **{CRASH_ENV: "1"})
    lv.env = lambda: env
    lv.start()
    lv._expect_exit = True
    return lv


def restart_without_crash(lv):
    """Starts lv again after the crash, without the crash hook."""
    env = {k: v for k, v in lv.env().items() if k != CRASH_ENV}
    lv.env = lambda: env
    lv.start()


@pytest.fixture
def tables(pg):
    for q in ("DROP TABLE IF EXISTS t, qlog, later_t, levee_applied",
              "CREATE TABLE t (k text, v int, b bytea, n text)",
              "CREATE TABLE qlog (id bigserial PRIMARY KEY, k text NOT NULL, seq int NOT NULL)",
              "GRANT ALL ON t, qlog, qlog_id_seq TO app"):
        db_sql(pg, q)
    yield
    db_sql(pg, "DROP TABLE IF EXISTS t, qlog, later_t, levee_applied")


@pytest.fixture
def rc(redis):
    return redis.client(decode_responses=True)


# ---------------------------------------------------------------------------
# Consumers (messages XADDed directly)


@pytest.mark.levee_config(QUEUE)
def test_consumer_applies_messages_once(levee, pg, rc, tables):
    ids = [xadd(rc, "INSERT INTO t (k, v) VALUES ($1, $2)", (f"k{i % 7}", i), key=f"k{i % 7}")
           for i in range(300)]
    wait_until(lambda: count(pg, "t") == 300, 20, message="300 rows applied")
    rows = db_sql(pg, "SELECT count(DISTINCT v), min(v), max(v) FROM t")[0]
    assert rows == (300, 0, 299)
    markers = {r[0] for r in db_sql(pg, "SELECT id FROM levee_applied")}
    assert len(markers) >= 1  # some may already be pruned below the trim point
    assert markers <= set(ids)  # a marker is its message's stream id
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    assert stays_true(lambda: count(pg, "t") == 300, 0.5)
    # Acknowledged entries are trimmed away.
    wait_until(lambda: sum(rc.xlen(f"{PREFIX}:app:{p}") for p in range(PARTITIONS)) == 0, 10,
               message="streams trimmed")
    m = levee.metrics()
    assert m.sum("levee_queue_applied_total") == 300
    assert m.sum("levee_queue_batches_total") >= 3
    assert m.sum("levee_queue_batch_size_count") >= 3


def spaced_writes(levee, pg, rc, n, gap_s):
    """n single-row inserts with one key, arriving gap_s apart (pacing the
    arrivals, not waiting for anything) at a consumer that is already reading
    their partition; returns how many batches applied them."""
    xadd(rc, "INSERT INTO t (k, v) VALUES ($1, $2)", ("linger", -1), key="linger")
    wait_until(lambda: count(pg, "t") == 1 and pending_total(rc) == 0, 20,
               message="the partition's consumer is running")
    before = levee.metrics().sum("levee_queue_batches_total")
    for i in range(n):
        xadd(rc, "INSERT INTO t (k, v) VALUES ($1, $2)", ("linger", i), key="linger")
        threading.Event().wait(gap_s)
    wait_until(lambda: count(pg, "t") == n + 1, 20, message=f"{n} rows applied")
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    return levee.metrics().sum("levee_queue_batches_total") - before


@queue_config(max_wait="3s")
def test_a_short_batch_waits_max_wait_to_fill(levee, pg, rc, tables):
    # Five writes 100 ms apart: the batch of the first waits up to 3 s for more,
    # so the primary commits all five at once.
    assert spaced_writes(levee, pg, rc, 5, 0.1) == 1
    assert levee.metrics().sum("levee_queue_batch_size_sum") == 1 + 5


@queue_config(max_wait="0ms")
def test_max_wait_0_applies_what_was_read_at_once(levee, pg, rc, tables):
    # The same writes without lingering: each is applied on its own, or nearly.
    assert spaced_writes(levee, pg, rc, 5, 0.1) > 1


@pytest.mark.levee_config(QUEUE)
def test_parameters_text_binary_null(levee, pg, rc, tables):
    xadd(rc, "INSERT INTO t (k, v, b, n) VALUES ($1, $2::int, $3, $4)",
         ("it's", "42", b"\x00\x01\xff", None))
    wait_until(lambda: count(pg, "t") == 1, 10)
    assert db_sql(pg, "SELECT k, v, encode(b, 'hex'), n IS NULL FROM t") == [
        ("it's", 42, "0001ff", True)]


@pytest.mark.levee_config(QUEUE)
def test_fifo_per_key(levee, pg, rc, tables):
    keys = [f"user:{i}" for i in range(10)]
    for seq in range(40):
        for k in keys:
            xadd(rc, "INSERT INTO qlog (k, seq) VALUES ($1, $2)", (k, seq), key=k, table="qlog")
    wait_until(lambda: count(pg, "qlog") == 400, 20)
    for k in keys:
        seqs = [r[0] for r in db_sql(pg, f"SELECT seq FROM qlog WHERE k = '{k}' ORDER BY id")]
        assert seqs == list(range(40)), k


@queue_config(max_attempts="10", retry_backoff_max="200ms")
def test_failing_message_holds_back_its_key_only(levee, pg, rc, tables):
    # later_t does not exist yet: the first message of key A fails and is retried.
    xadd(rc, "INSERT INTO later_t VALUES (1)", key="A", table="later_t")
    xadd(rc, "INSERT INTO qlog (k, seq) VALUES ('A', 2)", key="A", table="qlog")
    xadd(rc, "INSERT INTO qlog (k, seq) VALUES ('B', 1)", key="B", table="qlog")
    wait_until(lambda: count(pg, "qlog") == 1, 10, message="key B applied")
    # A's second message waits behind its failing first one.
    assert stays_true(lambda: count(pg, "qlog") == 1, 1.0)
    assert levee.metrics().sum("levee_queue_retried_total") >= 2
    db_sql(pg, "CREATE TABLE later_t (x int)")
    db_sql(pg, "GRANT ALL ON later_t TO app")
    wait_until(lambda: count(pg, "qlog") == 2, 10, message="key A applied after the fix")
    assert count(pg, "later_t") == 1


@pytest.mark.levee_config(QUEUE)
def test_poison_message_dead_lettered(levee, pg, rc, tables):
    xadd(rc, "INSERT INTO later_t VALUES (1)", key="P", table="later_t")
    for i in range(20):
        xadd(rc, "INSERT INTO t (k, v) VALUES ('ok', $1)", (i,), key=f"o{i}")
    wait_until(lambda: count(pg, "t") == 20, 10)
    dead = f"{PREFIX}:app:dead"
    wait_until(lambda: rc.xlen(dead) == 1, 15, message="dead letter")
    (did, fields), = rc.xrange(dead)
    assert fields["attempts"] == "3"
    assert "later_t" in fields["error"] and fields["error"].startswith("42P01")
    assert json.loads(fields["payload"])["sql"] == "INSERT INTO later_t VALUES (1)"
    assert fields["stream"] == stream("app", "P")
    wait_until(lambda: pending_total(rc) == 0, 10, message="the original acknowledged")
    m = levee.metrics()
    assert m.sum("levee_queue_dead_lettered_total") == 1
    assert m.sum("levee_queue_applied_total") == 20
    row = queue_row(levee)
    assert row["dead"] == 1 and row["dead_lettered"] == 1 and row["pending"] == 0

    # Fixed, then retried from the console: applied.
    db_sql(pg, "CREATE TABLE later_t (x int)")
    db_sql(pg, "GRANT ALL ON later_t TO app")
    levee.admin("RETRY DEAD LETTERS")
    wait_until(lambda: count(pg, "later_t") == 1, 10)
    assert rc.xlen(dead) == 0

    # DROP DEAD LETTER removes one by id.
    xadd(rc, "INSERT INTO missing_t VALUES (1)", key="Q", table="missing_t")
    wait_until(lambda: rc.xlen(dead) == 1, 15)
    (did, _), = rc.xrange(dead)
    levee.admin(f"DROP DEAD LETTER '{did}'")
    assert rc.xlen(dead) == 0


@pytest.mark.levee_config(QUEUE)
@pytest.mark.parametrize("entry", [{"m": "{not json"}, {"x": "no field m"}])
def test_malformed_payload_dead_lettered(levee, pg, rc, tables, entry):
    rc.xadd(stream("app", "t"), entry)
    xadd(rc, "INSERT INTO t (k) VALUES ('fine')")
    wait_until(lambda: count(pg, "t") == 1, 10)
    wait_until(lambda: rc.xlen(f"{PREFIX}:app:dead") == 1, 10)
    (_, fields), = rc.xrange(f"{PREFIX}:app:dead")
    assert "malformed" in fields["error"]
    assert fields["payload"] == entry.get("m", "")
    wait_until(lambda: pending_total(rc) == 0, 10, message="the malformed entry acknowledged")


def test_crash_between_commit_and_ack(levee_factory, pg, rc, tables):
    lv = start_crashing(levee_factory)
    pipe = rc.pipeline(transaction=True)  # all 50 arrive at once, so one batch has several
    for i in range(50):
        k = f"k{i % 5}"
        pipe.xadd(stream("app", k), {"m": encode("INSERT INTO t (k, v) VALUES ($1, $2)",
                                                 (k, i), key=k)})
    pipe.execute()
    lv.wait_exit(20)
    assert lv.log_contains("aborting after COMMIT")
    committed = count(pg, "t")
    assert committed > 0
    # The committed batch was never acknowledged.
    assert pending_total(rc) >= committed

    restart_without_crash(lv)
    # The dead instance's lease expires after claim_idle; then everything lands once.
    wait_until(lambda: count(pg, "t") == 50, 30, message="all 50 applied")
    assert db_sql(pg, "SELECT count(DISTINCT v) FROM t")[0][0] == 50
    wait_until(lambda: pending_total(rc) == 0, 10)
    assert lv.metrics().sum("levee_queue_skipped_total") >= committed
    assert stays_true(lambda: count(pg, "t") == 50, 0.5)


def same_partition_keys(n, prefix="key"):
    """n keys that all map to one stream partition, so their messages share batches."""
    keys, i = [], 0
    while len(keys) < n:
        k = f"{prefix}{i}"
        if fnv1a(k) % PARTITIONS == fnv1a(f"{prefix}0") % PARTITIONS:
            keys.append(k)
        i += 1
    return keys


def per_key_seqs(pg, keys):
    return {k: [r[0] for r in db_sql(pg, f"SELECT seq FROM qlog WHERE k = '{k}' ORDER BY id")]
            for k in keys}


def settle_with_one_dead_letter(pg, rc, keys, total, poison, rows_before):
    """Waits until messages 0..total-1 (message i: key keys[i % len(keys)], seq i)
    are applied but the poison, which is dead-lettered, and all are acknowledged;
    checks each key's order. Returns the dead letter's fields."""
    rows = rows_before + total - 1
    wait_until(lambda: count(pg, "qlog") == rows, 10,
               message=f"the {total - 1} good messages applied")
    wait_until(lambda: rc.exists(DEAD) and rc.xlen(DEAD) == 1, 10, message="dead letter")
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    assert stays_true(lambda: count(pg, "qlog") == rows, 0.5)
    seqs = per_key_seqs(pg, keys)
    for n, k in enumerate(keys):
        assert seqs[k] == [i for i in range(n, total, len(keys)) if i != poison], k
    (_, fields), = rc.xrange(DEAD)
    return fields


@pytest.mark.levee_config(QUEUE)
def test_poison_in_the_middle_of_pipelined_batches(levee, pg, rc, tables):
    """Two poison messages inside full batches of one partition: the pipelined
    batch rolls back whole, is applied again message by message, every other
    message lands exactly once and in key order (the poison's key waits for
    it), and each poison is dead-lettered after max_attempts."""
    keys = same_partition_keys(10)
    poisons = {150: "INSERT INTO later_t VALUES (1)",          # 42P01, at Parse
               230: "INSERT INTO qlog (k, seq) VALUES ($1, 1 / ($2::int - $2::int))"}  # 22012
    levee.stop()  # everything is in the stream before the consumer reads: full batches
    pipe = rc.pipeline(transaction=True)
    for i in range(300):
        k = keys[i % 10]
        sql = poisons.get(i, "INSERT INTO qlog (k, seq) VALUES ($1, $2)")
        pipe.xadd(stream("app", k), {"m": encode(sql, (k, i) if "$" in sql else (), key=k,
                                                 table="qlog")})
    pipe.execute()
    levee.start()
    dead = f"{PREFIX}:app:dead"
    wait_until(lambda: count(pg, "qlog") == 298, 30, message="298 good messages applied")
    wait_until(lambda: rc.xlen(dead) == 2, 15, message="two dead letters")
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    assert stays_true(lambda: count(pg, "qlog") == 298, 0.5)
    assert db_sql(pg, "SELECT count(DISTINCT seq) FROM qlog")[0][0] == 298
    seqs = per_key_seqs(pg, keys)
    for n, k in enumerate(keys):
        assert seqs[k] == [i for i in range(n, 300, 10) if i not in poisons], k
    letters = [f for _, f in rc.xrange(dead)]
    assert sorted(f["error"][:5] for f in letters) == ["22012", "42P01"]
    assert all(f["attempts"] == "3" for f in letters)
    # The pipelined path failed first and the batch was redone message by message.
    assert levee.log_matches(r"pipelined batch of \d+ rolled back \(42P01")
    assert levee.log_matches(r"pipelined batch of \d+ rolled back \(22012")
    m = levee.metrics()
    assert m.sum("levee_queue_applied_total") == 298
    assert m.sum("levee_queue_skipped_total") == 0  # nothing of a rolled-back pipeline stuck
    assert m.sum("levee_queue_dead_lettered_total") == 2
    assert m.sum("levee_queue_batches_total") < 30  # batches stay large (~100 rows)
    assert db_sql(pg, "SELECT count(*) FROM levee_applied WHERE id IN "
                      "(SELECT unnest(%s::text[]))" % ("'{" + ",".join(
                          f["id"] for f in letters) + "}'"))[0][0] == 0


def test_crash_between_commit_and_ack_pipelined(levee_factory, pg, rc, tables):
    """The crash hook fires after a pipelined COMMIT of a full batch: after the
    restart the batch is delivered again, its marker INSERT fails with 23505,
    and the fallback skips exactly what was committed."""
    lv = start_crashing(levee_factory)
    keys = same_partition_keys(5)
    pipe = rc.pipeline(transaction=True)  # all 300 arrive at once: full batches
    for i in range(300):
        k = keys[i % 5]
        pipe.xadd(stream("app", k), {"m": encode("INSERT INTO qlog (k, seq) VALUES ($1, $2)",
                                                 (k, i), key=k, table="qlog")})
    pipe.execute()
    lv.wait_exit(20)
    assert lv.log_contains("aborting after COMMIT")
    committed = count(pg, "qlog")
    assert 1 < committed <= 100  # one whole batch, effects and markers together
    assert db_sql(pg, "SELECT count(*) FROM levee_applied")[0][0] == committed
    assert pending_total(rc) >= committed

    restart_without_crash(lv)
    wait_until(lambda: count(pg, "qlog") == 300, 30, message="all 300 applied")
    wait_until(lambda: pending_total(rc) == 0, 10)
    assert stays_true(lambda: count(pg, "qlog") == 300, 0.5)
    assert db_sql(pg, "SELECT count(DISTINCT seq) FROM qlog")[0][0] == 300
    seqs = per_key_seqs(pg, keys)
    for n, k in enumerate(keys):
        assert seqs[k] == list(range(n, 300, 5)), k
    assert lv.metrics().sum("levee_queue_skipped_total") == committed
    assert lv.log_matches(r"pipelined batch of \d+ rolled back \(23505")


@pytest.mark.levee_config(QUEUE)
def test_fifo_per_key_with_concurrent_partitions(levee, pg, rc, tables):
    """Many keys over every partition, applied by several connections at once:
    each key's rows are in its queue order."""
    db_sql(pg, "ALTER TABLE qlog ADD COLUMN pid int NOT NULL DEFAULT pg_backend_pid()")
    keys = [f"user:{i}" for i in range(24)]
    assert len({fnv1a(k) % PARTITIONS for k in keys}) == PARTITIONS
    levee.stop()
    pipe = rc.pipeline(transaction=False)
    for seq in range(100):
        for k in keys:
            pipe.xadd(stream("app", k), {"m": encode("INSERT INTO qlog (k, seq) VALUES ($1, $2)",
                                                     (k, seq), key=k, table="qlog")})
    pipe.execute()
    levee.start()
    wait_until(lambda: count(pg, "qlog") == 2400, 30, message="2400 rows applied")
    seqs = per_key_seqs(pg, keys)
    for k in keys:
        assert seqs[k] == list(range(100)), k
    # Several PostgreSQL connections applied them (partitions run concurrently).
    assert db_sql(pg, "SELECT count(DISTINCT pid) FROM qlog")[0][0] >= 2
    assert db_sql(pg, "SELECT count(DISTINCT pid) FROM qlog")[0][0] <= 4
    wait_until(lambda: pending_total(rc) == 0, 10)
    assert stays_true(lambda: count(pg, "qlog") == 2400, 0.5)


def push_over_every_partition(rc, keys, seqs):
    pipe = rc.pipeline(transaction=False)
    for seq in seqs:
        for k in keys:
            pipe.xadd(stream("app", k), {"m": encode("INSERT INTO qlog (k, seq) VALUES ($1, $2)",
                                                     (k, seq), key=k, table="qlog")})
    pipe.execute()


@queue_config(connections="8")
def test_queue_connections_setting_bounds_parallel_batches(levee, pg, rc, tables):
    """[queue] connections bounds the PostgreSQL connections that apply one
    database's writes; a reload that lowers it closes the surplus once idle."""
    db_sql(pg, "ALTER TABLE qlog ADD COLUMN pid int NOT NULL DEFAULT pg_backend_pid()")
    keys = [f"user:{i}" for i in range(24)]
    assert len({fnv1a(k) % PARTITIONS for k in keys}) == PARTITIONS
    levee.stop()
    push_over_every_partition(rc, keys, range(100))
    levee.start()
    wait_until(lambda: count(pg, "qlog") == 2400, 30, message="2400 rows applied")
    assert 2 <= db_sql(pg, "SELECT count(DISTINCT pid) FROM qlog")[0][0] <= 8
    assert levee.reload({"queue": {"connections": "1"}}) == {"result": "ok"}
    push_over_every_partition(rc, keys, range(100, 150))
    wait_until(lambda: count(pg, "qlog") == 3600, 30, message="1200 more rows applied")
    assert db_sql(pg, "SELECT count(DISTINCT pid) FROM qlog WHERE seq >= 100")[0][0] == 1
    wait_until(lambda: db_sql(pg, "SELECT count(*) FROM pg_stat_activity "
                                  "WHERE application_name = 'levee queue'")[0][0] == 1, 10,
               message="the surplus connections closed")
    seqs = per_key_seqs(pg, keys)
    for k in keys:
        assert seqs[k] == list(range(150)), k


@queue_config(max_attempts="1")
def test_primary_down_messages_wait(levee, pg, rc, tables):
    xadd(rc, "INSERT INTO t (k, v) VALUES ('before', 0)")
    wait_until(lambda: count(pg, "t") == 1, 10)
    pg.stop()
    try:
        for i in range(1, 21):
            xadd(rc, "INSERT INTO t (k, v) VALUES ($1, $2)", (f"k{i}", i), key=f"k{i}")
        # Without a primary the batches fail whole and are retried, again and again: with
        # max_attempts = 1 a single counted failure would dead-letter a message.
        wait_until(lambda: levee.metrics().sum("levee_queue_batch_failures_total") >= 5, 20)
    finally:
        pg.start()
    wait_until(lambda: count(pg, "t") == 21, 30, message="applied after the primary is back")
    # Connection failures are not attempts: with max_attempts = 1 nothing was dead-lettered.
    assert rc.xlen(f"{PREFIX}:app:dead") == 0
    assert levee.metrics().sum("levee_queue_dead_lettered_total") == 0
    wait_until(lambda: pending_total(rc) == 0, 10)


@queue_config(max_attempts="1")
def test_connection_lost_mid_batch(levee, pg, rc, tables):
    """A statement in the middle of a pipelined batch ends its own PostgreSQL
    session, once (a sequence counts the runs, and survives the rollback):
    nothing of that batch commits or is acknowledged, the loss is not an
    attempt (max_attempts = 1, yet nothing is dead-lettered), and the retried
    batch applies every message exactly once, in key order."""
    db_sql(pg, "CREATE SEQUENCE kill_once")
    db_sql(pg, "GRANT ALL ON kill_once TO app")
    keys = same_partition_keys(5)
    kill = ("INSERT INTO qlog (k, seq) VALUES ($1, CASE WHEN nextval('kill_once') = 1 AND "
            "pg_terminate_backend(pg_backend_pid()) THEN -1 ELSE $2::int END)")
    levee.stop()  # everything is in the stream before the consumer reads: one batch
    pipe = rc.pipeline(transaction=True)
    for i in range(20):
        k = keys[i % 5]
        sql = kill if i == 10 else "INSERT INTO qlog (k, seq) VALUES ($1, $2)"
        pipe.xadd(stream("app", k), {"m": encode(sql, (k, i), key=k, table="qlog")})
    pipe.execute()
    try:
        levee.start()
        wait_until(lambda: count(pg, "qlog") == 20, 20, message="all 20 applied")
        wait_until(lambda: pending_total(rc) == 0, 10)
        assert stays_true(lambda: count(pg, "qlog") == 20, 0.5)
        seqs = per_key_seqs(pg, keys)
        for n, k in enumerate(keys):
            assert seqs[k] == list(range(n, 20, 5)), k
        assert db_sql(pg, "SELECT last_value FROM kill_once")[0][0] >= 2  # killed, then ran again
        assert levee.log_matches(r"batch of \d+ failed \(PostgreSQL: ")
        m = levee.metrics()
        assert m.sum("levee_queue_batch_failures_total") >= 1
        assert m.sum("levee_queue_applied_total") == 20
        assert m.sum("levee_queue_skipped_total") == 0  # the lost batch committed nothing
        assert m.sum("levee_queue_dead_lettered_total") == 0
        assert rc.xlen(f"{PREFIX}:app:dead") == 0
    finally:
        db_sql(pg, "DROP SEQUENCE IF EXISTS kill_once")


@pytest.mark.levee_config(QUEUE)
def test_show_queue_counts(levee, pg, rc, tables):
    before = queue_row(levee)  # answers even before any stream exists
    assert before["length"] == 0 and before["pending"] == 0 and before["applied"] == 0
    levee.stop()
    for i in range(5):
        xadd(rc, "INSERT INTO t (k, v) VALUES ('x', $1)", (i,))
    levee.start()
    wait_until(lambda: count(pg, "t") == 5, 10)
    wait_until(lambda: queue_row(levee)["applied"] == 5, 10)
    row = queue_row(levee)
    assert row["pending"] == 0
    assert float(row["oldest_age_s"]) == 0.0
    assert levee.admin("SHOW QUEUE")  # one row per database
    assert {r["database"] for r in levee.admin("SHOW QUEUE")} == {"app", "app2"}


# ---------------------------------------------------------------------------
# Consumer error paths: login, Redis, BEGIN/COMMIT of the fallback

DEAD = f"{PREFIX}:app:dead"
LOGIN_ROLE = "wq_login"


def pending_ids(r, s):
    """The ids of stream s that the group holds as delivered and not acknowledged."""
    try:
        return {p["message_id"] for p in r.xpending_range(s, "levee", "-", "+", 1000)}
    except Exception:  # noqa: BLE001 - no stream or no group (yet)
        return set()


def qlog_add(r, k, seq, user="app", sql="INSERT INTO qlog (k, seq) VALUES ($1, $2)"):
    return r.xadd(stream("app", k), {"m": encode(sql, (k, seq), key=k, table="qlog", user=user)})


def applied_levee_table(pg):
    """levee_applied as the consumer makes it, owned by app (the database owner)."""
    db_sql(pg, "CREATE TABLE IF NOT EXISTS levee_applied (stream text NOT NULL, "
               "id text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
               "PRIMARY KEY (stream, id))")
    db_sql(pg, "ALTER TABLE levee_applied OWNER TO app")


@pytest.fixture
def login_role(pg, tables):
    """A role that is not the database owner, with the rights an operator would
    grant a queue user: its tables and levee_applied, nothing on the schema."""
    pg.sql(f"CREATE ROLE {LOGIN_ROLE} LOGIN PASSWORD '{md5_secret(LOGIN_ROLE, 'wq_pass')}'")
    applied_levee_table(pg)
    db_sql(pg, f"GRANT ALL ON t, qlog, qlog_id_seq TO {LOGIN_ROLE}")
    db_sql(pg, f"GRANT SELECT, INSERT, DELETE ON levee_applied TO {LOGIN_ROLE}")
    yield LOGIN_ROLE
    pg.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{LOGIN_ROLE}'")
    db_sql(pg, f"DROP OWNED BY {LOGIN_ROLE}")
    pg.sql(f"DROP ROLE {LOGIN_ROLE}")


def test_consumer_login_failure_retried_until_login_works(levee_factory, pg, rc, login_role):
    """The password of a queued message's user changes: the consumer cannot log
    in. The message is not acknowledged, not lost and not dead-lettered (a
    login failure is not the message's fault, so no attempt is counted even
    past max_attempts); batches are retried with backoff and the log says why;
    other users' messages, in the same partition too, go on. Once the login
    works again it is applied exactly once."""
    lv = levee_factory(merge_overrides(QUEUE, {"queue": {"max_attempts": "2"}}),
                       users=dict(USERS, **{LOGIN_ROLE: "wq_pass"}))
    qlog_add(rc, "L", 1, user=LOGIN_ROLE)
    wait_until(lambda: count(pg, "qlog") == 1, 10, message="applied as the role")
    pg.sql(f"ALTER ROLE {LOGIN_ROLE} PASSWORD '{md5_secret(LOGIN_ROLE, 'changed')}'")
    pg.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{LOGIN_ROLE}'")
    wait_until(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity "
                              f"WHERE usename = '{LOGIN_ROLE}'") == [(0,)], 5)
    mid = qlog_add(rc, "L", 2, user=LOGIN_ROLE)
    part = stream("app", "L")
    same = next(k for k in (f"s{i}" for i in range(1000)) if stream("app", k) == part)
    other = next(k for k in (f"o{i}" for i in range(1000)) if stream("app", k) != part)
    for seq in range(3):
        qlog_add(rc, same, seq)
        qlog_add(rc, other, seq)
    # Other users' messages, in L's partition and in others, are applied meanwhile.
    wait_until(lambda: count(pg, "qlog") == 7, 10, message="the app messages applied")
    wait_until(lambda: lv.metrics().sum("levee_queue_batch_failures_total") >= 4, 10,
               message="login failures retried past max_attempts")
    assert lv.log_matches(r"batch of 1 failed \(PostgreSQL: password authentication failed "
                          rf"for user \"{LOGIN_ROLE}\"\); retrying in \d+ ms")
    assert db_sql(pg, "SELECT seq FROM qlog WHERE k = 'L'") == [(1,)]
    assert mid in pending_ids(rc, stream("app", "L"))  # delivered, not acknowledged
    assert not rc.exists(DEAD)
    m = lv.metrics()
    assert m.sum("levee_queue_dead_lettered_total") == 0
    assert m.sum("levee_queue_retried_total") == 0  # no attempt was counted

    pg.sql(f"ALTER ROLE {LOGIN_ROLE} PASSWORD '{md5_secret(LOGIN_ROLE, 'wq_pass')}'")
    wait_until(lambda: count(pg, "qlog") == 8, 10, message="applied once the login works")
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    assert stays_true(lambda: count(pg, "qlog") == 8, 0.5)
    assert db_sql(pg, "SELECT seq FROM qlog WHERE k = 'L' ORDER BY id") == [(1,), (2,)]
    assert not rc.exists(DEAD)
    assert lv.metrics().sum("levee_queue_applied_total") == 8


@queue_config(max_attempts="2")
def test_consumer_rights_revoked_dead_lettered_with_its_error(levee, pg, rc, tables):
    """The user loses INSERT on the table after its message was queued: that is
    the statement's own error (42501), so the documented contract applies: it
    is retried, then dead-lettered after max_attempts with the error, and
    acknowledged; its key's later message waits for it, other keys go on."""
    db_sql(pg, "REVOKE INSERT ON qlog FROM app")
    bad = qlog_add(rc, "R", 1)
    qlog_add(rc, "R", 2, sql="INSERT INTO t (k, v) VALUES ($1, $2)")
    for i in range(5):
        xadd(rc, "INSERT INTO t (k, v) VALUES ('ok', $1)", (i,), key=f"ok{i}")
    wait_until(lambda: count(pg, "t") == 5, 10, message="the other keys applied")
    wait_until(lambda: rc.exists(DEAD) and rc.xlen(DEAD) == 1, 10, message="dead letter")
    (_, fields), = rc.xrange(DEAD)
    assert fields["id"] == bad and fields["attempts"] == "2"
    assert fields["error"].startswith("42501: permission denied for table qlog"), fields
    # After the dead letter, R's second message went on.
    wait_until(lambda: count(pg, "t") == 6, 10, message="R's later message applied")
    wait_until(lambda: pending_total(rc) == 0, 10, message="the original acknowledged")
    m = levee.metrics()
    assert m.sum("levee_queue_dead_lettered_total") == 1
    assert m.sum("levee_queue_retried_total") == 1
    assert levee.log_matches(r"message \S+ dead-lettered after 2 attempts: 42501")
    assert count(pg, "qlog") == 0


@pytest.mark.levee_config(QUEUE)
@pytest.mark.parametrize("how", ["destroy_group", "delete_stream"])
def test_consumer_group_gone_recreated(levee, pg, rc, tables, how):
    """The consumer group (XGROUP DESTROY) or the whole stream (DEL) vanishes
    under a running consumer: its next XREADGROUP gets NOGROUP, it creates the
    group again, says so in the log, and messages queued afterwards are applied
    exactly once and in order."""
    s = stream("app", "g")
    qlog_add(rc, "g", 0)
    wait_until(lambda: count(pg, "qlog") == 1, 10)
    wait_until(lambda: pending_total(rc) == 0, 10)
    if how == "destroy_group":
        assert rc.xgroup_destroy(s, "levee") == 1
    else:
        assert rc.delete(s) == 1
    for seq in range(1, 6):
        qlog_add(rc, "g", seq)
        qlog_add(rc, f"h{seq}", seq)  # other partitions go on as well
    wait_until(lambda: count(pg, "qlog") == 11, 10, message="applied after the group is gone")
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    assert stays_true(lambda: count(pg, "qlog") == 11, 0.5)
    assert per_key_seqs(pg, ["g"]) == {"g": list(range(6))}
    assert any(g["name"] == "levee" for g in rc.xinfo_groups(s))
    # NOGROUP, or UNBLOCKED when the stream was deleted while the read was blocked on it.
    assert levee.log_matches(r"consumer group levee is gone \((NOGROUP|UNBLOCKED) .*\); "
                             r"creating it again")
    m = levee.metrics()
    assert m.sum("levee_queue_applied_total") == 11
    assert m.sum("levee_queue_consumer_redis_errors_total") >= 1


@pytest.mark.levee_config(QUEUE)
def test_stream_key_of_another_type_stops_only_its_partition(levee, pg, rc, tables):
    """A partition's stream key is replaced by a string under a running
    consumer: XREADGROUP fails (WRONGTYPE), the consumer checks every group,
    leaves that partition out (the log says why) and goes on with the others,
    retrying the bad one with backoff rather than in a busy loop; once the key
    is a stream again its messages are applied."""
    bad = stream("app", "w")
    qlog_add(rc, "w", 0)
    wait_until(lambda: count(pg, "qlog") == 1, 10)
    wait_until(lambda: pending_total(rc) == 0, 10)
    rc.delete(bad)
    rc.set(bad, "not a stream")
    others = [k for k in (f"x{i}" for i in range(100)) if stream("app", k) != bad][:6]
    for n, k in enumerate(others):
        qlog_add(rc, k, n)
    wait_until(lambda: count(pg, "qlog") == 7, 10, message="the other partitions applied")
    wait_until(lambda: levee.log_matches(rf"queue {bad}: XGROUP CREATE failed \(WRONGTYPE"), 10)
    m = levee.metrics()
    assert m.get("levee_queue_consumer_redis_errors_total", op="read") >= 1
    assert m.get("levee_queue_consumer_redis_errors_total", op="group") >= 1
    rc.config_resetstat()
    assert stays_true(lambda: rc.get(bad) == "not a stream", 1.0)
    stats = rc.info("commandstats")
    failed = sum(stats.get(c, {}).get("failed_calls", 0)
                 for c in ("cmdstat_xreadgroup", "cmdstat_xgroup|create"))
    assert failed <= 20, stats  # backoff of 100-400 ms, not a busy loop
    qlog_add(rc, others[0], 10)
    wait_until(lambda: count(pg, "qlog") == 8, 10, message="the others still go on")
    rc.delete(bad)
    qlog_add(rc, "w", 1)
    wait_until(lambda: count(pg, "qlog") == 9, 10, message="applied once the key is a stream")
    wait_until(lambda: pending_total(rc) == 0, 10)
    assert per_key_seqs(pg, ["w"]) == {"w": [0, 1]}


@queue_config(max_attempts="2")
def test_dead_letter_xadd_fails_poison_kept(levee, pg, rc, tables):
    """The dead-letter stream's key holds a string, so the dead-letter XADD
    fails (WRONGTYPE): the poison message is not acknowledged (it stays
    pending), the failure is logged, the XADD is retried with backoff (not in
    a busy loop), other keys' messages go on, and once the key is fixed the
    message is dead-lettered and then acknowledged."""
    rc.set(DEAD, "not a stream")
    poison = xadd(rc, "INSERT INTO later_t VALUES (1)", key="P", table="later_t")
    for i in range(10):
        xadd(rc, "INSERT INTO t (k, v) VALUES ('ok', $1)", (i,), key=f"o{i}")
    wait_until(lambda: count(pg, "t") == 10, 10)
    wait_until(lambda: levee.log_matches(rf"cannot dead-letter message {poison} .*WRONGTYPE"), 10,
               message="the failed dead-letter XADD logged")
    rc.config_resetstat()
    assert stays_true(lambda: poison in pending_ids(rc, stream("app", "P")), 1.0)
    failed = rc.info("commandstats").get("cmdstat_xadd", {}).get("failed_calls", 0)
    assert 1 <= failed <= 20, failed  # backoff of 100-400 ms, not a busy loop
    # Messages of other keys queued later still go on.
    xadd(rc, "INSERT INTO t (k, v) VALUES ('after', 1)", key="o_after")
    wait_until(lambda: count(pg, "t") == 11, 10, message="a later message applied")
    assert rc.get(DEAD) == "not a stream"
    m = levee.metrics()
    assert m.sum("levee_queue_dead_lettered_total") == 0
    assert m.get("levee_queue_consumer_redis_errors_total", op="dead_letter") >= 1

    rc.delete(DEAD)
    wait_until(lambda: rc.exists(DEAD) and rc.xlen(DEAD) == 1, 10, message="dead-lettered")
    (_, fields), = rc.xrange(DEAD)
    assert fields["id"] == poison and fields["attempts"] == "2"
    assert fields["error"].startswith("42P01")
    wait_until(lambda: pending_total(rc) == 0, 10, message="the original acknowledged")
    assert levee.metrics().sum("levee_queue_dead_lettered_total") == 1
    assert stays_true(lambda: rc.xlen(DEAD) == 1, 0.3)


@pytest.fixture
def refuse_at_commit(pg, tables):
    """qlog refuses seq 13 in a DEFERRABLE INITIALLY DEFERRED constraint
    trigger: the INSERT itself succeeds and the error comes at COMMIT."""
    db_sql(pg, "CREATE FUNCTION qlog_no_13() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               "IF NEW.seq = 13 THEN RAISE EXCEPTION 'seq 13 refused at commit'; END IF; "
               "RETURN NULL; END $$")
    db_sql(pg, "CREATE CONSTRAINT TRIGGER qlog_no_13 AFTER INSERT ON qlog "
               "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION qlog_no_13()")
    yield
    db_sql(pg, "DROP FUNCTION qlog_no_13() CASCADE")


@pytest.mark.levee_config(QUEUE)
def test_commit_fails_in_the_fallback(levee, pg, rc, refuse_at_commit):
    """One message of a batch breaks a deferred constraint, so the pipelined
    batch fails at COMMIT and is rolled back (nothing acknowledged). The
    message-by-message fallback must find the culprit: the 19 good messages
    are applied exactly once and in key order, the bad one is dead-lettered
    after max_attempts with its own error."""
    keys = same_partition_keys(5)
    levee.stop()  # everything is in the stream before the consumer reads: one batch
    pipe = rc.pipeline(transaction=True)
    for i in range(20):
        k = keys[i % 5]
        pipe.xadd(stream("app", k), {"m": encode("INSERT INTO qlog (k, seq) VALUES ($1, $2)",
                                                 (k, i), key=k, table="qlog")})
    pipe.execute()
    levee.start()
    fields = settle_with_one_dead_letter(pg, rc, keys, 20, 13, rows_before=0)
    assert fields["attempts"] == "3"
    assert fields["error"].startswith("P0001: seq 13 refused at commit"), fields
    assert json.loads(fields["payload"])["params"][1]["v"] == "13"
    assert levee.log_matches(r"pipelined batch of 20 rolled back \(P0001: seq 13")
    m = levee.metrics()
    assert m.sum("levee_queue_applied_total") == 19
    assert m.sum("levee_queue_skipped_total") == 0
    assert m.sum("levee_queue_dead_lettered_total") == 1


@pytest.mark.levee_config(QUEUE)
def test_begin_fails_in_the_fallback(levee, pg, rc, tables):
    """The fallback's first step (BEGIN; SELECT the applied ids) fails because
    the consumer lost SELECT on levee_applied: not the messages' fault, so the
    batch is retried whole with backoff, nothing of it is applied or
    acknowledged, no attempt is counted (nothing dead-lettered however often
    it fails) and the log says why; once the right is back, the good messages
    are applied exactly once and the poison is dead-lettered after max_attempts."""
    qlog_add(rc, "first", 0)
    wait_until(lambda: count(pg, "qlog") == 1, 10, message="levee_applied made")
    keys = same_partition_keys(4)
    levee.stop()
    pipe = rc.pipeline(transaction=True)
    for i in range(12):
        k = keys[i % 4]
        sql = ("INSERT INTO later_t VALUES (1)" if i == 5
               else "INSERT INTO qlog (k, seq) VALUES ($1, $2)")
        pipe.xadd(stream("app", k), {"m": encode(sql, (k, i) if "$" in sql else (), key=k,
                                                 table="qlog")})
    pipe.execute()
    db_sql(pg, "REVOKE SELECT ON levee_applied FROM app")
    try:
        levee.start()
        wait_until(lambda: levee.metrics().sum("levee_queue_batch_failures_total") >= 5, 10,
                   message="the batch failed whole, again and again")
        assert levee.log_matches(r"batch of 12 failed \(42501: permission denied for table "
                                 r"levee_applied\); retrying in \d+ ms")
        assert count(pg, "qlog") == 1
        assert pending_total(rc) == 12
        assert not rc.exists(DEAD)
        assert levee.metrics().sum("levee_queue_retried_total") == 0
    finally:
        db_sql(pg, "GRANT SELECT ON levee_applied TO app")
    fields = settle_with_one_dead_letter(pg, rc, keys, 12, 5, rows_before=1)
    assert fields["attempts"] == "3" and fields["error"].startswith("42P01")
    m = levee.metrics()
    assert m.sum("levee_queue_applied_total") == 11  # since the restart
    assert m.sum("levee_queue_dead_lettered_total") == 1


# ---------------------------------------------------------------------------
# Attempt counts kept in Redis (<stream>:attempts), shared by every instance


def attempts_key(db, key):
    return stream(db, key) + ":attempts"


def attempts_keys(r, db="app"):
    return sorted(r.keys(f"{PREFIX}:{db}:*:attempts"))


@pytest.fixture
def runs(pg, tables):
    """A sequence the poison statement draws from before it fails: nextval is
    not rolled back, so its value is how often the statement really ran."""
    db_sql(pg, "CREATE SEQUENCE poison_runs")
    db_sql(pg, "GRANT ALL ON poison_runs TO app")
    yield lambda: db_sql(pg, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                             "FROM poison_runs")[0][0]
    db_sql(pg, "DROP SEQUENCE IF EXISTS poison_runs")


POISON_RUNS = "INSERT INTO t (k, v) VALUES ('p', 1 / (nextval('poison_runs') * 0))"  # 22012


@queue_config(max_attempts="5", retry_backoff="300ms", retry_backoff_max="300ms")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_attempts_survive_a_restart(levee, pg, rc, runs, sig):
    """A poison message fails k < max_attempts times, then Levee stops (killed
    or terminated) and starts again on the same Redis. The new consumer
    claims the message with its count from Redis and dead-letters it after
    max_attempts attempts in all, not k + max_attempts: the statement runs
    max_attempts times (plus the first, uncounted, pipelined run, and at most
    one more whose count the stop cut off). Then the count is deleted."""
    n = 5
    pid = xadd(rc, POISON_RUNS, key="P")
    akey = attempts_key("app", "P")
    wait_until(lambda: int(rc.hget(akey, pid) or 0) >= 2, 10, message="two attempts stored")
    levee.stop(sig)
    k = int(rc.hget(akey, pid))
    assert 2 <= k < n
    assert not rc.exists(DEAD)
    assert pid in pending_ids(rc, stream("app", "P"))  # still delivered, not acknowledged
    assert runs() in (k + 1, k + 2)  # the pipelined run, k counted, maybe one cut off
    log_before = len(levee.log())

    levee.start()
    wait_until(lambda: rc.exists(DEAD) and rc.xlen(DEAD) == 1, 20, message="dead letter")
    (_, fields), = rc.xrange(DEAD)
    assert fields["id"] == pid and fields["attempts"] == str(n)
    assert fields["error"].startswith("22012"), fields
    # Without the count from Redis it would have run k + 1 + n + 1 times.
    assert n + 1 <= runs() <= n + 2
    log = levee.log()[log_before:]
    assert f"claimed message {pid} has failed {k} of {n} attempts" in log
    assert f"message {pid} failed (attempt {k + 1} of {n}" in log
    assert f"attempt 1 of {n}" not in log
    wait_until(lambda: pending_total(rc) == 0, 10, message="the original acknowledged")
    wait_until(lambda: not rc.hexists(akey, pid), 10, message="its count deleted")
    assert attempts_keys(rc) == []
    m = levee.metrics()
    assert m.sum("levee_queue_dead_lettered_total") == 1
    assert m.sum("levee_queue_retried_total") == n - k - 1
    assert m.sum("levee_queue_consumer_redis_errors_total", op="attempts") == 0


@queue_config(max_attempts="4")
def test_claimed_count_unreadable_message_waits(levee, pg, rc, runs):
    """After a restart the claimed poison's count cannot be read (the hash's
    key holds a string: WRONGTYPE): the message is not run with a fresh set
    of attempts but waits, its key held while other keys go on, and the read
    is retried with backoff; once the count is readable it is dead-lettered
    after max_attempts in all."""
    pid = xadd(rc, POISON_RUNS, key="P")
    akey = attempts_key("app", "P")
    wait_until(lambda: int(rc.hget(akey, pid) or 0) >= 1, 10, message="an attempt stored")
    levee.kill()
    k = int(rc.hget(akey, pid))
    ran = runs()
    rc.delete(akey)
    rc.set(akey, "not a hash")
    levee.start()
    same = next(c for c in (f"s{i}" for i in range(1000)) if stream("app", c) == stream("app", "P"))
    xadd(rc, "INSERT INTO t (k, v) VALUES ('P later', 1)", key="P")
    xadd(rc, "INSERT INTO t (k, v) VALUES ('same partition', 2)", key=same)
    wait_until(lambda: count(pg, "t") == 1, 10, message="another key of the partition applied")
    wait_until(lambda: levee.log_matches(rf"reading of attempt counts in {akey} failed "
                                         r"\(WRONGTYPE"), 10, message="the failed read logged")
    rc.config_resetstat()
    assert stays_true(lambda: runs() == ran and count(pg, "t") == 1, 1.0)
    failed = rc.info("commandstats").get("cmdstat_hmget", {}).get("failed_calls", 0)
    assert 1 <= failed <= 20, failed  # backoff, not a busy loop
    assert levee.metrics().get("levee_queue_consumer_redis_errors_total", op="attempts") >= 1
    assert not rc.exists(DEAD)

    rc.delete(akey)
    rc.hset(akey, pid, str(k))
    wait_until(lambda: rc.exists(DEAD) and rc.xlen(DEAD) == 1, 20, message="dead letter")
    (_, fields), = rc.xrange(DEAD)
    assert fields["id"] == pid and fields["attempts"] == "4"
    assert runs() == ran + 4 - k  # only the attempts left, no fresh set
    wait_until(lambda: count(pg, "t") == 2, 10, message="P's later message applied after it")
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    wait_until(lambda: attempts_keys(rc) == [], 10, message="its count deleted")


@queue_config(max_attempts="3")
def test_claimed_message_out_of_attempts_dead_lettered_at_once(levee, pg, rc, runs):
    """A message whose count already reached max_attempts (its owner died
    between the last failure and the dead letter) is dead-lettered when
    claimed, without running again."""
    levee.stop()
    pid = xadd(rc, POISON_RUNS, key="P")
    s = stream("app", "P")
    if not any(g["name"] == "levee" for g in rc.xinfo_groups(s)):
        rc.xgroup_create(s, "levee", id="0")
    rc.xreadgroup("levee", "gone-instance", {s: ">"})  # delivered to a consumer that died
    rc.hset(attempts_key("app", "P"), pid, "3")
    levee.start()
    wait_until(lambda: rc.exists(DEAD) and rc.xlen(DEAD) == 1, 10, message="dead letter")
    (_, fields), = rc.xrange(DEAD)
    assert fields["id"] == pid and fields["attempts"] == "3"
    assert "out of attempts when claimed" in fields["error"]
    wait_until(lambda: pending_total(rc) == 0, 10, message="the original acknowledged")
    wait_until(lambda: attempts_keys(rc) == [], 10, message="its count deleted")
    assert runs() == 0


@queue_config(max_attempts="10", retry_backoff_max="200ms")
def test_attempt_counts_deleted_when_applied_and_pruned(levee, pg, rc, tables):
    """A message that failed and then succeeded loses its count when it is
    acknowledged; a count left behind for an id below the trim point (a
    crash between XACK and HDEL) is pruned; at the end no count is left."""
    stale = attempts_key("app", "A")
    rc.hset(stale, "1-0", "2")  # an id long acknowledged and trimmed
    bad = xadd(rc, "INSERT INTO later_t VALUES (1)", key="A", table="later_t")
    for i in range(10):
        xadd(rc, "INSERT INTO t (k, v) VALUES ('ok', $1)", (i,), key=f"ok{i}")
    wait_until(lambda: int(rc.hget(stale, bad) or 0) >= 2, 10, message="its failures counted")
    wait_until(lambda: count(pg, "t") == 10, 10)
    db_sql(pg, "CREATE TABLE later_t (x int)")
    db_sql(pg, "GRANT ALL ON later_t TO app")
    wait_until(lambda: count(pg, "later_t") == 1, 10, message="applied after the fix")
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    wait_until(lambda: not rc.hexists(stale, bad), 10, message="its count deleted")
    wait_until(lambda: not rc.hexists(stale, "1-0"), 15, message="the stale count pruned")
    assert attempts_keys(rc) == []
    assert not rc.exists(DEAD)
    assert levee.metrics().sum("levee_queue_consumer_redis_errors_total", op="attempts") == 0


@queue_config(max_attempts="2")
def test_attempts_hash_refused_own_count_decides(levee, pg, rc, tables):
    """The attempts hash's key holds a string, so storing a count fails
    (WRONGTYPE): the failure is logged and counted, the consumer's own count
    decides, and the poison is still dead-lettered after max_attempts."""
    akey = attempts_key("app", "P")
    rc.set(akey, "not a hash")
    pid = xadd(rc, "INSERT INTO later_t VALUES (1)", key="P", table="later_t")
    xadd(rc, "INSERT INTO t (k, v) VALUES ('ok', 1)", key="P")
    wait_until(lambda: rc.exists(DEAD) and rc.xlen(DEAD) == 1, 10, message="dead letter")
    (_, fields), = rc.xrange(DEAD)
    assert fields["id"] == pid and fields["attempts"] == "2"
    wait_until(lambda: count(pg, "t") == 1, 10, message="the key's next message applied")
    wait_until(lambda: pending_total(rc) == 0, 10, message="everything acknowledged")
    assert levee.log_matches(rf"queue {stream('app', 'P')}: storing of attempt counts in "
                             rf"{akey} failed \(WRONGTYPE")
    assert levee.metrics().get("levee_queue_consumer_redis_errors_total", op="attempts") >= 2
    assert rc.get(akey) == "not a hash"


# ---------------------------------------------------------------------------
# Producer (/* levee:async */ through a client)


def async_insert(conn, k, v):
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    cur = conn.execute("/* levee:async */ INSERT INTO t (k, v) VALUES (%s, %s)", (k, v))
    return cur, notices


@needs_producer
@pytest.mark.parametrize("mode", MODES)
def test_async_insert_acknowledged_with_notice_and_tag(levee, pg, tables, mode):
    with levee.conn(autocommit=True) as conn:
        cur, notices = async_insert(conn, "a", 1)
        assert cur.statusmessage == "INSERT 0 0"
        assert cur.rowcount == 0
        assert any("queued" in n for n in notices), notices
    wait_until(lambda: count(pg, "t") == 1, 10)


@needs_producer
@pytest.mark.parametrize("mode", MODES)
def test_async_write_with_many_parameters(levee, pg, tables, mode):
    """A deferred statement with more parameters than the producer keeps on its stack
    (16), text and binary, NULLs among them: every value arrives."""
    n = 40
    sql = ("/* levee:async */ INSERT INTO t (k, v, n) VALUES (%s, %s, concat_ws(',', "
           + ", ".join(["%s::text"] * (n - 2)) + "))")
    params = ["many", 7] + [None if i % 5 == 0 else str(i) for i in range(n - 2)]
    expected = ",".join(str(i) for i in range(n - 2) if i % 5 != 0)
    with levee.conn(autocommit=True) as conn:
        for binary in (False, True):
            assert conn.execute(sql, params, binary=binary).statusmessage == "INSERT 0 0"
    wait_until(lambda: count(pg, "t") == 2, 10, message="both applied")
    assert db_sql(pg, "SELECT k, v, n FROM t") == [("many", 7, expected)] * 2


@needs_producer
@pytest.mark.parametrize("mode", MODES)
def test_ten_thousand_inserts_from_32_clients(levee, pg, tables, mode):
    errors = []

    def client(n):
        try:
            with levee.conn(autocommit=True) as conn:
                for i in range(n * 1000, n * 1000 + 313):
                    conn.execute("/* levee:async */ INSERT INTO t (k, v) VALUES (%s, %s)",
                                 (f"c{n}", i))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    total = 32 * 313
    wait_until(lambda: count(pg, "t") == total, 60, message=f"{total} rows")
    assert db_sql(pg, "SELECT count(DISTINCT v) FROM t")[0][0] == total
    assert stays_true(lambda: count(pg, "t") == total, 0.5)


@needs_producer
@pytest.mark.levee_config(QUEUE)
def test_producer_sends_script_by_sha_and_survives_script_flush(levee, pg, rc, tables):
    """lv_wq_enqueue sends EVALSHA; after SCRIPT FLUSH the NOSCRIPT answer is
    followed by one EVAL of the text, and the write is stored exactly once."""
    for round_ in range(2):
        rc.script_flush()
        rc.config_resetstat()
        with levee.conn(autocommit=True) as conn:
            for i in range(5):
                cur, _ = async_insert(conn, f"s{round_}", i)
                assert cur.statusmessage == "INSERT 0 0"
        stats = rc.info("commandstats")
        sha = stats.get("cmdstat_evalsha", {})
        assert sha.get("calls", 0) >= 5, stats
        assert sha.get("failed_calls", 0) + sha.get("rejected_calls", 0) >= 1, sha  # NOSCRIPT
        wait_until(lambda: count(pg, "t") == 5 * (round_ + 1), 10)
    assert db_sql(pg, "SELECT count(DISTINCT (k, v)) FROM t")[0][0] == 10


@needs_producer
@queue_config(consumers="false", max_length="5")
def test_queue_full_53400(levee, pg, tables):
    with levee.conn(autocommit=True) as conn:
        for i in range(5):
            conn.execute("/* levee:async */ INSERT INTO t (k, v) VALUES ('x', %s)", (i,))
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
            conn.execute("/* levee:async */ INSERT INTO t (k, v) VALUES ('x', 99)")
    assert levee.metrics().sum("levee_queue_refused_total", reason="full") == 1


STATS = f"{PREFIX}:app:stats"


def queued_len(r, db="app"):
    """The entries in db's partitions, by XLEN."""
    return sum(r.xlen(f"{PREFIX}:{db}:{p}") for p in range(PARTITIONS)
               if r.exists(f"{PREFIX}:{db}:{p}"))


def fill_until_refused(conn, k, n):
    """n async writes are queued, the next one is refused with 53400."""
    for i in range(n):
        assert async_insert(conn, k, i)[0].statusmessage == "INSERT 0 0"
    with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="max_length"):
        async_insert(conn, k, 99)


@needs_producer
@queue_config(consumers="false", max_length="5")
def test_queue_full_recounts_a_count_that_drifted_high(levee, pg, rc, tables):
    """The producer keeps the length as a count (stats field len); a count too
    high (a partition deleted by hand) is recounted before a refusal, so
    writes are refused by the real length, not by the count."""
    with levee.conn(autocommit=True) as conn:
        fill_until_refused(conn, "a", 5)
        assert rc.hget(STATS, "len") == "5"
        rc.delete(stream("app", "t"))  # every entry so far (one key, one partition)
        assert queued_len(rc) == 0
        fill_until_refused(conn, "b", 5)
        assert rc.hget(STATS, "len") == "5" and queued_len(rc) == 5
        rc.hset(STATS, "len", 1000000)
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
            async_insert(conn, "c", 1)
        assert rc.hget(STATS, "len") == "5"
    assert levee.metrics().sum("levee_queue_refused_total", reason="full") == 3


@needs_producer
@queue_config(consumers="false", max_length="5")
def test_queue_length_count_healed_by_the_consumers_trim(levee, pg, rc, tables):
    """A count that drifted (too high, then too low: what a producer that does
    not count leaves) is set to the streams' real length when the consumers
    trim, and writes are then queued and refused by the real length."""
    with levee.conn(autocommit=True) as conn:
        fill_until_refused(conn, "a", 5)
        for drifted, applied in ((1000000, 5), (2, 10)):
            rc.hset(STATS, "len", drifted)
            assert levee.reload({"queue": {"consumers": "true"}}) == {"result": "ok"}
            wait_until(lambda: count(pg, "t") == applied, 15, message=f"{applied} applied")
            wait_until(lambda: rc.hget(STATS, "len") == "0", 15,
                       message="the count set to the length at the trim")
            assert queued_len(rc) == 0
            assert levee.reload({"queue": {"consumers": "false"}}) == {"result": "ok"}
            fill_until_refused(conn, "b", 5)
            assert rc.hget(STATS, "len") == "5" and queued_len(rc) == 5


@needs_producer
@queue_config(consumers="false", max_length="5")
def test_retry_dead_letters_keeps_the_length_count(levee, pg, rc, tables):
    """RETRY DEAD LETTERS puts messages back into the partitions: the count
    behind max_length follows, so the next write is refused."""
    with levee.conn(autocommit=True) as conn:
        for i in range(3):
            assert async_insert(conn, "a", i)[0].statusmessage == "INSERT 0 0"
        assert rc.hget(STATS, "len") == "3"
        for i in range(2):
            rc.xadd(DEAD, {"id": f"1-{i}", "stream": stream("app", f"d{i}"), "db": "app",
                           "payload": encode("INSERT INTO t (k, v) VALUES ('d', $1)", (i,),
                                             key=f"d{i}"),
                           "error": "boom", "attempts": "3"})
        levee.admin("RETRY DEAD LETTERS")
        assert rc.xlen(DEAD) == 0
        assert queued_len(rc) == 5
        assert rc.hget(STATS, "len") == "5"
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
            async_insert(conn, "a", 99)
    assert levee.metrics().sum("levee_queue_refused_total", reason="full") == 1


@needs_producer
@pytest.mark.levee_config(QUEUE)
def test_redis_error_reply_58000(levee, pg, rc, tables):
    """Redis answers the enqueue script with an error (a queue key holds a
    string: WRONGTYPE): the client gets 58000 and nothing is stored."""
    keys = [f"{PREFIX}:app:{p}" for p in range(PARTITIONS)]  # whichever the write goes to
    for k in keys:
        rc.set(k, "not a stream")
    with levee.conn(autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as exc:
            async_insert(conn, "w", 1)
        assert exc.value.sqlstate == "58000"
        assert "WRONGTYPE" in str(exc.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    assert levee.metrics().sum("levee_queue_refused_total", reason="redis_error") == 1
    assert [rc.get(k) for k in keys] == ["not a stream"] * PARTITIONS
    assert rc.hget(f"{PREFIX}:app:stats", "len") == "0"  # the length count was undone


@needs_producer
@pytest.mark.levee_config(QUEUE)
def test_redis_down_08006_then_back(levee, pg, redis, tables):
    """With Redis down an async write fails at once with 08006 (nothing
    acknowledged); once Redis is back, writes are queued and applied again."""
    redis.stop()
    with levee.conn(autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as exc:
            async_insert(conn, "down", 1)
        assert exc.value.sqlstate == "08006"
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert levee.metrics().sum("levee_queue_refused_total", reason="redis_down") >= 1
    redis.start()

    def queued():
        try:
            with levee.conn(autocommit=True) as conn:
                return async_insert(conn, "up", 2)[0].statusmessage == "INSERT 0 0"
        except psycopg.Error:
            return False

    wait_until(queued, 15, message="an async write queued after Redis is back")
    wait_until(lambda: count(pg, "t") == 1, 15, message="and applied")
    assert db_sql(pg, "SELECT k FROM t") == [("up",)]


@needs_producer
@queue_config(wait_replicas="1", wait_timeout="50ms")
def test_too_few_redis_replicas_58000_maybe_applied(levee, pg, tables):
    """wait_replicas = 1 without a Redis replica: WAIT confirms none, the client
    gets 58000, and, as the contract says ("maybe"), the stored write is still
    applied."""
    with levee.conn(autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as exc:
            async_insert(conn, "maybe", 1)
        assert exc.value.sqlstate == "58000"
        assert "replicas" in str(exc.value)
    assert levee.metrics().sum("levee_queue_refused_total", reason="no_replicas") == 1
    wait_until(lambda: count(pg, "t") == 1, 10, message="the unconfirmed write applied")


@needs_producer
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sql", [
    "/* levee:async */ SELECT 1",
    "/* levee:async */ INSERT INTO t (k) VALUES ('r') RETURNING k",
])
def test_async_refused_0A000(levee, tables, sql, mode):
    with levee.conn(autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(sql)


@needs_producer
@pytest.mark.parametrize("mode", MODES)
def test_async_inside_transaction_refused(levee, pg, tables, mode):
    """Inside BEGIN ... COMMIT the write cannot be deferred: refused with 0A000,
    the transaction fails as PostgreSQL would fail it, nothing is stored, and
    the session goes on. Simple and extended protocol."""
    stmt = "/* levee:async */ INSERT INTO t (k) VALUES ('in txn')"
    for protocol in ("simple", "extended"):
        with levee.conn(autocommit=False) as conn:
            conn.execute("SELECT 1")  # psycopg opened a transaction
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            if protocol == "simple":
                res = conn.pgconn.exec_(stmt.encode())  # PQexec: the simple query protocol
                assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
                assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"0A000"
                assert b"inside an explicit transaction" in res.error_message
            else:
                with pytest.raises(psycopg.errors.FeatureNotSupported, match="inside an explicit transaction"):
                    conn.execute(stmt)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            conn.rollback()
            assert conn.execute("SELECT 2").fetchone() == (2,)
            conn.commit()
    assert pg.sql("SELECT count(*) FROM t WHERE k = 'in txn'", dbname="app") == [(0,)]


@needs_producer
@pytest.mark.levee_config(QUEUE)
def test_redis_restart_with_appendonly_loses_nothing(levee, pg, redis, tables):
    rc = redis.client()
    redis.appendonly = True
    try:
        redis.stop()
        redis.start()
        rc.config_set("appendfsync", "always")
        levee.stop()  # consumers off while we count what was acknowledged
        levee.set_overrides({"queue": {"consumers": "false"}})
        levee.start()
        acked = 0
        with levee.conn(autocommit=True) as conn:
            for i in range(200):
                conn.execute("/* levee:async */ INSERT INTO t (k, v) VALUES ('r', %s)", (i,))
                acked += 1
        redis.kill()
        redis.start()
        levee.stop()
        levee.set_overrides({"queue": {"consumers": "true"}})
        levee.start()
        wait_until(lambda: count(pg, "t") == acked, 30, message="every acknowledged write")
    finally:
        redis.appendonly = False
        redis.stop()
        redis.start()
