#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Result cache: Levee with its cache, next to Levee without, Pgpool-II's query cache
and PostgreSQL direct.

Run by bench/run-cache.sh (`make bench-cache`): `cache.py [--quick] /abs/path/to/levee`.

What it does, in order:
  1. starts a PostgreSQL 15 primary tuned as in bench.py (bench.start_postgres)
     and a Redis 7 (tools/stack.py, no persistence); creates
     bench_items(id int primary key, val text, n int) with BENCH_CACHE_ROWS
     (100,000) rows, and bench_counters(id, n) for the mixed-other workload;
  2. starts four targets over the same server:
       levee-cache    Levee, transaction mode, `redis = <the Redis>`, [cache]
                      memory = 256MB, [cache.rule items] tables = bench_items,
                      key = id, ttl = 600s;
       levee-nocache  the same Levee without [cache], the rule and Redis;
       pgpool-cache   Pgpool-II as in bench.py plus memory_cache_enabled = on,
                      memqcache_method = shmem, memqcache_expire = 600,
                      memqcache_auto_cache_invalidation = on;
       direct         pgbench straight to PostgreSQL;
     a target that does not start (a Levee that does not know [cache] yet) is
     reported as not available and the others go on;
  3. runs the mixed workloads, 64 clients, -M extended (and simple in a full
     run), BENCH_ROUNDS rounds, targets interleaved: mixed
     (bench/scripts/cache-mixed.sql: 95% point SELECTs, 5% UPDATEs of the same
     table) and mixed-other (the UPDATEs go to bench_counters, so they do not
     invalidate the cached table); per Levee run it takes the cache counters
     from /metrics, per Pgpool-II run SHOW POOL_CACHE;
  4. right after the mixed rounds of each protocol (quick: the first only),
     while the entries they filled are within their TTL, reads every row of
     bench_items through each caching target with the point SELECT pgbench
     sends, byte for byte, three times (after the runs; again, from the cache;
     after 1,000 UPDATEs sent through the target) and compares each pass with
     PostgreSQL direct;
  5. runs select-only over a small hot set (bench/scripts/cache-select.sql,
     BENCH_CACHE_HOT_ROWS ids, warmed first) at 1 and 64 clients with pgbench
     -l: per-transaction latency p50/p99, CPU per hit against CPU per forwarded
     query, and the p99 of Levee's own levee_cache_hit_seconds histogram;
  6. prints the report with the targets next to the figures (not assertions)
     and writes it to bench/results/<time>-cache[-quick].md.

Everything started is stopped at the end, on error and on Ctrl-C / SIGTERM.

Environment (see bench/README.md):
  BENCH_QUICK=1 or --quick   5 s runs, 2 rounds, correctness check on the first protocol only
  BENCH_SECONDS=N            seconds per pgbench run (default 10; quick 5)
  BENCH_ROUNDS=N             rounds (default 3; quick 2)
  BENCH_CLIENTS=64           client counts of the mixed runs
  BENCH_PROTOCOLS=extended,simple
  BENCH_CACHE_WORKLOADS=mixed,mixed-other
  BENCH_CACHE_TARGETS=levee-cache,levee-nocache,pgpool-cache,direct
  BENCH_CACHE_ROWS=100000    rows of bench_items
  BENCH_CACHE_HOT_ROWS=1000  ids the select-only latency runs read
  BENCH_CACHE_LAT_CLIENTS=1,64   client counts of the select-only runs (empty: none)
  BENCH_CACHE_CHECK=1        0 skips the row-by-row correctness check
  BENCH_LEVEE_WORKERS, BENCH_POOL_SIZE as in bench.py; LEVEE_KEEP_STACK=1
"""

import datetime
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench as B  # noqa: E402  (puts tools/ on sys.path too)
import targets as T  # noqa: E402

import psycopg  # noqa: E402

ORDER = ["levee-cache", "levee-nocache", "pgpool-cache", "direct"]
LABELS = {"levee-cache": "Levee cache", "levee-nocache": "Levee no cache",
          "pgpool-cache": "Pgpool-II cache", "direct": "direct"}
PROTOCOLS = ["extended", "simple"]
WORKLOADS = {"mixed": "cache-mixed.sql", "mixed-other": "cache-mixed-other.sql"}
SELECT_SCRIPT = "cache-select.sql"
SCRIPTS = os.path.join(HERE, "scripts")
CACHE_MEMORY = "256MB"
# Longer than a whole run, so that entries leave by invalidation (what is measured), not
# because the interleaved rounds outlast a TTL while other targets run.
CACHE_TTL = "600s"
PGPOOL_CACHE_SIZE = "256MB"
PGPOOL_EXPIRE = 600
# The statement pgbench sends for the read, byte for byte (extended: $1 for :id;
# pgbench keeps the script's semicolon), so that the correctness check meets
# the entries the runs filled: the cache key covers the exact text.
POINT_SELECT = "SELECT val, n FROM bench_items WHERE id = $1;"

# Targets printed next to the figures.
GOAL_VS_DIRECT = 3.0
GOAL_VS_PGPOOL = 5.0
GOAL_HIT_P99_MS = 0.3
GOAL_HIT_RATIO = 0.85


class Settings(B.CommonSettings):
    def __init__(self, levee_binary, quick):
        super().__init__(levee_binary, quick, seconds=(5, 10), rounds=(2, 3),
                         targets_env="BENCH_CACHE_TARGETS", order=ORDER)
        self.clients = B.env_list("BENCH_CLIENTS", [64], conv=B.positive_int)
        self.protocols = B.env_list("BENCH_PROTOCOLS", PROTOCOLS, PROTOCOLS + ["prepared"])
        self.workloads = B.env_list("BENCH_CACHE_WORKLOADS", list(WORKLOADS), list(WORKLOADS))
        self.rows = B.env_int("BENCH_CACHE_ROWS", 100000, 1)
        self.hot_rows = min(self.rows, B.env_int("BENCH_CACHE_HOT_ROWS", 1000, 1))
        raw = os.environ.get("BENCH_CACHE_LAT_CLIENTS")
        self.lat_clients = ([] if raw is not None and raw.strip() == "" else
                            B.env_list("BENCH_CACHE_LAT_CLIENTS", [1, 64], conv=B.positive_int))
        self.check = B.env_int("BENCH_CACHE_CHECK", 1, 0) != 0
        checkable = [p for p in self.protocols if p in ("extended", "simple")]
        self.check_protocols = checkable[:1] if self.quick else checkable


# ---------------------------------------------------------------------------
# Data


def load_data(pg, rows):
    db = T.BENCH_DB
    pg.sql("CREATE TABLE bench_items (id int PRIMARY KEY, val text, n int)", dbname=db)
    pg.sql("INSERT INTO bench_items SELECT i, md5(i::text), 0 FROM generate_series(1, %s) i",
           (rows,), dbname=db)
    pg.sql("CREATE TABLE bench_counters (id int PRIMARY KEY, n int)", dbname=db)
    pg.sql("INSERT INTO bench_counters SELECT i, 0 FROM generate_series(1, %s) i", (rows,),
           dbname=db)
    pg.sql(f"ALTER TABLE bench_items OWNER TO {T.BENCH_USER}", dbname=db)
    pg.sql(f"ALTER TABLE bench_counters OWNER TO {T.BENCH_USER}", dbname=db)
    pg.sql("VACUUM ANALYZE bench_items", dbname=db)
    pg.sql("VACUUM ANALYZE bench_counters", dbname=db)


# ---------------------------------------------------------------------------
# Targets


def make_levee(st, pg, cfg, rd, with_cache):
    sections = ""
    if with_cache:
        sections = (f"[cache]\nmemory = {CACHE_MEMORY}\n\n"
                    f"[cache.rule items]\ntables = bench_items\nkey = id\nttl = {CACHE_TTL}\n")
    tag = "levee-cache" if with_cache else "levee-nocache"
    return T.Levee(st, pg, cfg.levee_binary, "transaction", cfg.pool_size, cfg.levee_workers,
                   tag=tag, levee_lines=f"redis = {rd.url}\n" if with_cache else "", sections=sections,
                   label=LABELS[tag])


def make_pgpool(st, pg, children):
    conf = T.pgpool_memqcache_conf(total_size=PGPOOL_CACHE_SIZE, expire=PGPOOL_EXPIRE)
    return T.Pgpool(st, pg, children, tag="pgpool-cache", extra_conf=conf,
                    label=LABELS["pgpool-cache"])


def cache_snapshot(t):
    """What the target says about its cache now: Levee /metrics or Pgpool SHOW POOL_CACHE."""
    try:
        if isinstance(t, T.Levee):
            return ("levee", t.metrics())
        if isinstance(t, T.Pgpool):
            return ("pgpool", t.pool_cache())
    except Exception as exc:  # noqa: BLE001 - a figure, not an assertion
        return ("error", str(exc))
    return None


def cache_delta(before, after):
    """{hits, lookups, ratio, by_result, hit_p99_s} between two cache_snapshot()s, or None."""
    if before is None or after is None or before[0] != after[0] or before[0] == "error":
        return None
    if before[0] == "levee":
        b, a = before[1], after[1]
        by = {}
        for res in ("hit", "miss", "stale", "coalesced", "bypass"):
            d = T.metric_delta(b, a, "levee_cache_requests_total", result=res)
            if d is not None:
                by[res] = d
        if not by:
            return {"hits": None, "lookups": None, "ratio": None, "by_result": {},
                    "hit_p99_s": None, "note": "no levee_cache_requests_total in /metrics"}
        lookups = sum(by.values())
        hits = by.get("hit", 0.0)
        counters = T.series_deltas(b, a, lambda name: (
            name.startswith(("levee_cache_", "levee_redis_"))
            and not name.endswith(("_bucket", "_sum", "_count"))
            and name not in ("levee_cache_entries", "levee_cache_bytes", "levee_redis_up")))
        return {"hits": hits, "lookups": lookups, "ratio": hits / lookups if lookups else None,
                "by_result": by, "counters": counters,
                "entries": T.metric(a, "levee_cache_entries"),
                "hit_p99_s": T.histogram_quantile(b, a, "levee_cache_hit_seconds", 0.99)}
    b, a = before[1], after[1]
    if "num_cache_hits" not in a or "num_selects" not in a:
        return None
    hits = a["num_cache_hits"] - b.get("num_cache_hits", 0.0)
    # num_selects counts the SELECTs that went to PostgreSQL (misses).
    misses = a["num_selects"] - b.get("num_selects", 0.0)
    lookups = hits + misses
    return {"hits": hits, "lookups": lookups, "ratio": hits / lookups if lookups else None,
            "by_result": {"hit": hits, "miss": misses}, "hit_p99_s": None}


def measured_run(t, workload, protocol, clients, seconds, cfg, scripts, defines, log_dir=None):
    before = cache_snapshot(t)
    r = B.run_pgbench(t, workload, protocol, clients, seconds, cfg.nproc, scripts=scripts,
                      defines=defines, log_dir=log_dir)
    r.cache = cache_delta(before, cache_snapshot(t))
    return r


def describe_run(r):
    if not r.ok:
        return f"FAILED: {r.error}"
    s = f"{B.fmt(r.tps)} tps, {B.fmt(r.latency_ms, 2)} ms"
    if r.lat_p99_ms is not None:
        s += f", p99 {r.lat_p99_ms:.3f} ms"
    if r.cpu_us is not None:
        s += f", proxy {r.cpu_us:.1f} µs/txn"
    c = getattr(r, "cache", None)
    if c and c.get("ratio") is not None:
        s += f", hit ratio {c['ratio'] * 100:.1f}% (" + ", ".join(
            f"{k} {v:,.0f}" for k, v in c["by_result"].items() if v) + ")"
    return s


# ---------------------------------------------------------------------------
# Correctness: every row through the cache against direct


def read_all(port, rows, protocol, threads=4):
    """{id: (val, n)} read one point SELECT at a time, as pgbench sends it.

    extended: PQexecParams with an untyped text parameter (pgbench -M extended);
    simple: the literal statement (pgbench -M simple). Several connections in
    parallel, each on its own share of the ids."""
    out, errors = {}, []
    lock = threading.Lock()

    def worker(ids):
        try:
            conn = psycopg.connect(host=T.HOST, port=port, user=T.BENCH_USER,
                                   password=T.BENCH_PASSWORD, dbname=T.BENCH_DB,
                                   autocommit=True, connect_timeout=10)
        except Exception as exc:  # noqa: BLE001
            with lock:
                errors.append(repr(exc))
            return
        pq = conn.pgconn
        got = {}
        try:
            for i in ids:
                if protocol == "simple":
                    res = pq.exec_(f"SELECT val, n FROM bench_items WHERE id = {i};".encode())
                else:
                    res = pq.exec_params(POINT_SELECT.encode(), [str(i).encode()])
                if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
                    raise RuntimeError(f"id {i}: {res.error_message.decode(errors='replace')}")
                if res.ntuples == 1:
                    got[i] = (res.get_value(0, 0).decode(), int(res.get_value(0, 1)))
                else:
                    got[i] = None
        except Exception as exc:  # noqa: BLE001
            with lock:
                errors.append(repr(exc)[:200])
        finally:
            conn.close()
        with lock:
            out.update(got)

    ids = list(range(1, rows + 1))
    ths = [threading.Thread(target=worker, args=(ids[k::threads],)) for k in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return out, errors


CHECK_UPDATES = 1000
PASS_NAMES = ["after the runs", "again (cacheable)",
              f"after {CHECK_UPDATES:,} UPDATEs through the target"]


def update_through(t, rows, n):
    """n autocommit UPDATEs of random rows of bench_items through target t."""
    import random
    with psycopg.connect(host=T.HOST, port=t.port, user=T.BENCH_USER,
                         password=T.BENCH_PASSWORD, dbname=T.BENCH_DB, autocommit=True,
                         connect_timeout=10) as conn:
        pq = conn.pgconn
        for i in random.sample(range(1, rows + 1), min(n, rows)):
            res = pq.exec_(f"UPDATE bench_items SET n = n + 1 WHERE id = {i};".encode())
            if res.status != psycopg.pq.ExecStatus.COMMAND_OK:
                raise RuntimeError(f"UPDATE id {i}: "
                                   f"{res.error_message.decode(errors='replace')}")


def check_rows(pg, t, rows, protocol):
    """Reads every row through t three times (PASS_NAMES), each compared with direct."""
    out = []
    for k in range(len(PASS_NAMES)):
        if k == 2:
            update_through(t, rows, CHECK_UPDATES)
        truth = {r[0]: (r[1], r[2]) for r in
                 pg.sql("SELECT id, val, n FROM bench_items", dbname=T.BENCH_DB)}
        before = cache_snapshot(t)
        t0 = time.monotonic()
        got, errors = read_all(t.port, rows, protocol)
        took = time.monotonic() - t0
        c = cache_delta(before, cache_snapshot(t))
        mismatched = [i for i in truth if i in got and got[i] != truth[i]]
        missing = [i for i in truth if i not in got]
        out.append({"rows": len(truth), "read": len(got), "mismatched": len(mismatched),
                    "examples": [(i, got[i], truth[i]) for i in mismatched[:3]],
                    "missing": len(missing), "errors": errors[:3], "seconds": took,
                    "cache": c})
    return out


# ---------------------------------------------------------------------------
# Report


def pct(v, digits=1):
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def median_cache(runs, key="ratio"):
    vals = [r.cache[key] for r in runs
            if r.ok and getattr(r, "cache", None) and r.cache.get(key) is not None]
    return B.statistics.median(vals) if vals else None


def render(cfg, ctx, mixed, lat, checks, started, finished):
    L = B.header_lines(ctx, "Levee result-cache benchmark", started)
    L[0] += f" ({'QUICK MODE' if cfg.quick else 'full run'})"
    pgs = ctx["pg"]
    L.append(f"- PostgreSQL: shared_buffers {pgs['shared_buffers']}, fsync {pgs['fsync']}, "
             f"synchronous_commit {pgs['synchronous_commit']}; Redis {ctx['redis_version']} "
             f"(no persistence) for Levee's L2 and invalidations")
    L.append(f"- Data: bench_items(id int primary key, val text, n int), {cfg.rows:,} rows; "
             f"bench_counters(id, n), {cfg.rows:,} rows (target of mixed-other's writes)")
    L.append(f"- Levee: pool_mode transaction, pool_size {cfg.pool_size}, workers "
             f"{cfg.levee_workers or 'auto'}, `redis = <the Redis>`; cache: `[cache] memory = "
             f"{CACHE_MEMORY}`, `[cache.rule items] tables = bench_items, key = id, ttl = {CACHE_TTL}`; "
             f"no cache: the same without [cache], the rule and Redis (its writes are not seen "
             f"by the caching instance, like the other targets' writes)")
    L.append(f"- Pgpool-II: as in bench.py (raw mode, connection_cache, max_pool 1, "
             f"num_init_children {ctx['pgpool_children']}) plus memory_cache_enabled = on, "
             f"memqcache_method = shmem, memqcache_total_size = {PGPOOL_CACHE_SIZE}, "
             f"memqcache_max_num_cache = 1000000, memqcache_expire = {PGPOOL_EXPIRE}, "
             f"memqcache_auto_cache_invalidation = on")
    L.append(f"- Runs: pgbench -n -T {cfg.seconds} -P 1 -j min(clients, {cfg.nproc}) "
             f"-D rows={cfg.rows}, {cfg.rounds} rounds, targets interleaved "
             f"({' → '.join(cfg.targets)}); medians over rounds")
    L.append("- Workloads: mixed = bench/scripts/cache-mixed.sql (95% `SELECT val, n FROM "
             "bench_items WHERE id = :id`, 5% `UPDATE bench_items SET n = n + 1 WHERE id = "
             ":id`); mixed-other = the same with the UPDATE on bench_counters, so nothing "
             "invalidates bench_items; before each workload and protocol the caching targets are "
             "pre-filled (every row read once as pgbench sends it), so the runs measure the steady state")
    for name, why in ctx["unavailable"].items():
        L.append(f"- **{LABELS[name]}: not available**: {why}")
    L += B.run_lines(ctx, started, finished)
    L.append("")

    cols = cfg.targets
    pairs = [(a, b) for a, b in (("levee-cache", "direct"), ("levee-cache", "pgpool-cache"),
                                 ("levee-cache", "levee-nocache"))
             if a in cols and b in cols]
    L.append(f"## Mixed workloads: median tps over {cfg.rounds} rounds")
    L.append("")
    hdr = ["workload", "protocol", "clients"] + [LABELS[c] for c in cols] + \
        [f"{LABELS[a]} / {LABELS[b]}" for a, b in pairs]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(hdr) - 3)) + "|")
    for (w, p, c), per in mixed.items():
        row = [w, p, str(c)] + [B.cell(per.get(t, []), "tps") for t in cols]
        row += [B.ratio(B.median_of(per.get(a, []), "tps"), B.median_of(per.get(b, []), "tps"))
                for a, b in pairs]
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    L.append("## Mixed workloads: cache hit ratio and proxy CPU per transaction (medians)")
    L.append("")
    L.append("Hit ratio = hits / all cacheable lookups (Levee: `levee_cache_requests_total` "
             "deltas, results hit / miss / stale / coalesced / bypass; Pgpool-II: SHOW "
             "POOL_CACHE num_cache_hits / (num_cache_hits + num_selects)). CPU = utime + stime "
             "of the proxy process tree over the steady part of the run / transactions.")
    L.append("")
    proxies = [t for t in cols if t != "direct"]
    hdr = ["workload", "protocol", "clients"] + \
        [f"{LABELS[t]} hit ratio" for t in proxies if t != "levee-nocache"] + \
        [f"{LABELS[t]} µs/txn" for t in proxies]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(hdr) - 3)) + "|")
    for (w, p, c), per in mixed.items():
        row = [w, p, str(c)]
        row += [pct(median_cache(per.get(t, []))) for t in proxies if t != "levee-nocache"]
        row += [B.cell(per.get(t, []), "cpu_us", 1) for t in proxies]
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    rows = []
    for (w, p, c), per in mixed.items():
        tot = {}
        for r in per.get("levee-cache", []):
            for k, v in ((getattr(r, "cache", None) or {}).get("counters") or {}).items():
                tot[k] = tot.get(k, 0.0) + v
        if tot:
            rows.append(f"- {w} -M {p} c={c}: " + ", ".join(
                f"{k} {v:,.0f}" for k, v in sorted(tot.items()) if v))
    if rows:
        L.append("Levee cache counters over all rounds of each mixed workload (deltas of "
                 "levee_cache_* and levee_redis_* in /metrics; zeros left out):")
        L.append("")
        L += rows
        L.append("")

    if lat:
        L.append(f"## Select-only over a hot set of {cfg.hot_rows:,} ids (-M extended, warmed "
                 f"first): latency from pgbench -l, medians over rounds")
        L.append("")
        L.append("p50/p99 are per-transaction latencies as pgbench sees them (each transaction "
                 "is one point SELECT); with the cache every lookup of the run should be a hit "
                 "(hit ratio column). Levee hit p99 (server) is the bucket of "
                 "`levee_cache_hit_seconds` (Levee's own timing of a hit) that holds the 99th "
                 "percentile.")
        L.append("")
        hdr = ["clients", "target", "tps", "p50 ms", "p99 ms", "proxy µs/txn", "hit ratio",
               "Levee hit p99 (server)"]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|---|---|" + "---:|" * (len(hdr) - 2))
        for c, per in lat.items():
            for t in cols:
                runs = per.get(t, [])
                if not runs:
                    continue
                hp = [r.cache["hit_p99_s"] for r in runs if r.ok and getattr(r, "cache", None)
                      and r.cache.get("hit_p99_s") is not None]
                hp = sorted(hp)[len(hp) // 2] if hp else None
                L.append(f"| {c} | {LABELS[t]} | {B.cell(runs, 'tps')} | "
                         f"{B.cell(runs, 'lat_p50_ms', 3)} | {B.cell(runs, 'lat_p99_ms', 3)} | "
                         f"{B.cell(runs, 'cpu_us', 1)} | "
                         f"{pct(median_cache(runs)) if t != 'direct' else '—'} | "
                         f"{f'{hp[0] * 1000:g}–{hp[1] * 1000:g} ms' if hp else '—'} |")
        L.append("")

    if checks:
        L.append("## Correctness: every row read through the cache against PostgreSQL direct")
        L.append("")
        L.append("After the rounds of the mixed workload in a protocol, each caching target is "
                 "checked on its own: the other targets' runs wrote to bench_items around it "
                 "(writes a cache cannot see, bounded only by the TTL), so the target is "
                 "restarted with an empty cache (and Redis flushed), every row is read once "
                 "through it, and the mixed workload runs through it alone for 5 s; then "
                 "each id of bench_items is read through the caching target with the "
                 "point SELECT pgbench sends, byte for byte (extended: PQexecParams with an "
                 "untyped text parameter; simple: the literal statement), and compared with "
                 "`SELECT id, val, n FROM bench_items` read directly. Pass 1: after the runs; "
                 "pass 2: the same again, which the cache can answer entirely; pass 3: after "
                 f"{CHECK_UPDATES:,} autocommit UPDATEs of random rows sent through the same "
                 "target. A stale value in any pass is a mismatch.")
        L.append("")
        L.append("| target | protocol | pass | rows | read | mismatched | missing | hits "
                 "(ratio) | time | verdict |")
        L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
        for (t, p), passes in checks.items():
            if isinstance(passes, dict):
                L.append(f"| {LABELS[t]} | {p} | | | | | | | | failed: {passes['error']} |")
                continue
            for k, d in enumerate(passes, 1):
                c = d["cache"]
                hits = (f"{B.fmt(c['hits'])} ({pct(c['ratio'])})"
                        if c and c.get("hits") is not None else "—")
                ok = d["mismatched"] == 0 and d["missing"] == 0 and not d["errors"]
                L.append(f"| {LABELS[t]} | {p} | {k}: {PASS_NAMES[k - 1]} | {d['rows']:,} | "
                         f"{d['read']:,} | "
                         f"{d['mismatched']:,} | {d['missing']:,} | {hits} | "
                         f"{d['seconds']:.1f} s | "
                         f"{'**all rows match**' if ok else '**MISMATCH**'} |")
        for (t, p), passes in checks.items():
            for k, d in enumerate(passes if isinstance(passes, list) else [], 1):
                for i, g, want in d.get("examples", []):
                    L.append(f"- {LABELS[t]} {p} pass {k}: id {i} read {g}, PostgreSQL has "
                             f"{want}")
                for e in d.get("errors", []):
                    L.append(f"- {LABELS[t]} {p} pass {k}: {e}")
        L.append("")

    L.append("## Against the targets (figures, not assertions)")
    L.append("")
    def figure(w, fn):
        """(fn(per), 'where') for the first (w, protocol, clients) cell where fn(per) is
        not None, extended first."""
        for p in ("extended", "simple", "prepared"):
            for (w2, p2, c), per in mixed.items():
                if w2 != w or p2 != p:
                    continue
                v = fn(per)
                if v is not None:
                    return v, f"{w} -M {p}, {c} clients"
        return None, w

    def tps_ratio(other):
        def fn(per):
            a = B.median_of(per.get("levee-cache", []), "tps")
            b = B.median_of(per.get(other, []), "tps")
            return a / b if a and b else None
        return fn
    for w in cfg.workloads:
        v, where = figure(w, tps_ratio("direct"))
        L.append(f"- Levee cache ≥ {GOAL_VS_DIRECT:g}× direct tps ({where}): " +
                 B.target_note(v, GOAL_VS_DIRECT, ">=", lambda x: f"{x:.2f}×"))
        v, where = figure(w, tps_ratio("pgpool-cache"))
        L.append(f"- Levee cache ≥ {GOAL_VS_PGPOOL:g}× Pgpool-II cached tps ({where}): " +
                 B.target_note(v, GOAL_VS_PGPOOL, ">=", lambda x: f"{x:.2f}×"))
        v, where = figure(w, lambda per: median_cache(per.get("levee-cache", [])))
        L.append(f"- Hit ratio ≥ {GOAL_HIT_RATIO * 100:.0f}% ({where}): " +
                 B.target_note(v, GOAL_HIT_RATIO, ">=", lambda x: f"{x * 100:.1f}%"))
    big = max(lat) if lat else None
    small = min(lat) if lat else None
    cpu_hit = B.median_of(lat.get(big, {}).get("levee-cache", []), "cpu_us") if lat else None
    cpu_fwd = B.median_of(lat.get(big, {}).get("levee-nocache", []), "cpu_us") if lat else None
    L.append(f"- Levee CPU per hit < CPU per forwarded query (select-only, {big} clients): " + (
        f"{cpu_hit:.1f} µs against {cpu_fwd:.1f} µs "
        f"({'met' if cpu_hit < cpu_fwd else 'not met'})" if cpu_hit is not None and cpu_fwd
        else "not measured"))
    p99 = B.median_of(lat.get(small, {}).get("levee-cache", []), "lat_p99_ms") if lat else None
    L.append(f"- Hit p99 ≤ {GOAL_HIT_P99_MS} ms (select-only, {small} client(s), pgbench "
             f"-l): " + B.target_note(p99, GOAL_HIT_P99_MS, "<=", lambda v: f"{v:.3f} ms"))
    L.append("")

    L.append("## Every run (tps / proxy µs per txn / hit ratio)")
    L.append("")
    L += B.runs_table_head(["workload", "protocol", "clients", "target"], cfg.rounds)
    for (w, p, c), per in mixed.items():
        for t in cols:
            cells = []
            for r in per.get(t, []):
                if not r.ok:
                    cells.append("hung" if r.hung else "error")
                    continue
                hr = r.cache.get("ratio") if getattr(r, "cache", None) else None
                cells.append(f"{B.fmt(r.tps)} / {B.fmt(r.cpu_us, 1)} / {pct(hr)}")
            L.append(f"| {w} | {p} | {c} | {LABELS[t]} | " + " | ".join(cells) + " |")
    fails = B.failed_runs(mixed, LABELS, lambda k: f"{k[0]} {k[1]} c={k[2]}")
    fails += B.failed_runs(lat, LABELS, lambda c: f"select-only c={c}")
    if fails:
        L += ["", "## Failed runs", ""] + fails
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------
# Main


def main(argv):
    binary, quick = B.parse_command(argv, "cache", (B.PGBENCH, T.PGPOOL, T.PSQL))
    cfg = Settings(binary, quick)
    started = datetime.datetime.now()
    ctx = dict(B.base_context(cfg, "bench/run-cache.sh", quick), unavailable={},
               pgpool_children=max(max(cfg.clients), max(cfg.lat_clients or [1])) + 8)
    B.log(f"cache: {'QUICK MODE: ' if cfg.quick else ''}{cfg.seconds} s runs, {cfg.rounds} "
          f"rounds, clients {cfg.clients}, protocols {cfg.protocols}, workloads "
          f"{cfg.workloads}, targets {cfg.targets}")
    st = B.new_stack(cfg)
    live, mixed, lat, checks, checked = [], {}, {}, {}, set()
    defines = {"rows": cfg.rows}
    hot = {"rows": cfg.hot_rows}
    try:
        pg, ctx["pg"] = B.start_postgres(st)
        rd = st.start_redis()
        ctx["redis_version"] = rd.client().info("server").get("redis_version", "?")
        load_data(pg, cfg.rows)
        B.log(f"cache: PostgreSQL on {pg.port}, Redis on {rd.port}, {cfg.rows:,} rows loaded")

        makers = {
            "levee-cache": lambda: make_levee(st, pg, cfg, rd, True),
            "levee-nocache": lambda: make_levee(st, pg, cfg, rd, False),
            "pgpool-cache": lambda: make_pgpool(st, pg, ctx["pgpool_children"]),
            "direct": lambda: T.Direct(st, pg),
        }
        tg = B.start_targets(makers, cfg.targets, live, "cache", ctx["unavailable"])
        names = [n for n in cfg.targets if n in tg]
        sel = [os.path.join(SCRIPTS, SELECT_SCRIPT)]

        # Warm-up, not recorded: pools filled, table and caches warm.
        for name in names:
            r = B.run_pgbench(tg[name], "select", "extended", max(cfg.clients), 3, cfg.nproc,
                              scripts=sel, defines=defines)
            B.log(f"cache: warm-up {LABELS[name]}: {describe_run(r)}")

        combos = [(w, p, c) for w in cfg.workloads for p in cfg.protocols for c in cfg.clients]
        total, k = len(combos) * cfg.rounds * len(names), 0
        for (w, p, c) in combos:
            per = mixed.setdefault((w, p, c), {})
            script = [os.path.join(SCRIPTS, WORKLOADS[w])]
            if p in ("extended", "simple"):
                # The steady state is what is measured: start from a warm cache, every
                # row read once, as pgbench will send it (mixed's UPDATEs then invalidate
                # the rows they change, or the whole table without a key column).
                for name in ("levee-cache", "pgpool-cache"):
                    if name in tg:
                        t0 = time.monotonic()
                        _, errs = read_all(tg[name].port, cfg.rows, p)
                        B.log(f"cache: {LABELS[name]} pre-filled for {w} -M {p} in "
                              f"{time.monotonic() - t0:.1f} s" +
                              (f" ({len(errs)} errors, first {errs[0]})" if errs else ""))
            for rnd in range(cfg.rounds):
                for name in names:
                    k += 1
                    t = tg[name]
                    r = measured_run(t, w, p, c, cfg.seconds, cfg, script, defines)
                    per.setdefault(name, []).append(r)
                    B.log(f"[{k}/{total}] {w} {p} c={c} round {rnd + 1} {LABELS[name]}: "
                          f"{describe_run(r)}")
                    B.after_run(t, r, "cache")
            if w == "mixed" and cfg.check and p in cfg.check_protocols and \
                    (w, p) not in checked:
                checked.add((w, p))
                run_checks(cfg, pg, tg, p, checks,
                           isolate=lambda t, p=p, script=script: isolate_target(t, rd, cfg, p, script, defines))

        # Select-only over the hot set: latency and CPU per hit.
        if cfg.lat_clients:
            log_dir = os.path.join(st.dir, "pgbench-logs")
            for name in names:
                r = B.run_pgbench(tg[name], "select", "extended", max(cfg.lat_clients),
                                  cfg.seconds, cfg.nproc, scripts=sel, defines=hot)
                B.log(f"cache: hot-set warm-up {LABELS[name]}: {describe_run(r)}")
            total, k = len(cfg.lat_clients) * cfg.rounds * len(names), 0
            for c in cfg.lat_clients:
                per = lat.setdefault(c, {})
                for rnd in range(cfg.rounds):
                    for name in names:
                        k += 1
                        t = tg[name]
                        r = measured_run(t, "select", "extended", c, cfg.seconds, cfg, sel, hot,
                                         log_dir=log_dir)
                        per.setdefault(name, []).append(r)
                        B.log(f"[{k}/{total}] select-only hot c={c} round {rnd + 1} "
                              f"{LABELS[name]}: {describe_run(r)}")
                        B.after_run(t, r, "cache")

    finally:
        for t in reversed(live):
            t.stop()
        st.stop()

    finished = datetime.datetime.now()
    ctx["loadavg_end"] = B.loadavg()
    B.publish("cache", started, "cache", cfg.quick,
              render(cfg, ctx, mixed, lat, checks, started, finished))
    return 0


def isolate_target(t, rd, cfg, p, script, defines):
    """Leaves t with a cache that only writes through t have touched: a restart (an empty
    memory cache; Redis flushed for Levee's L2 and generations), every row read once, and
    5 s of the mixed workload through t alone."""
    if isinstance(t, T.Levee):
        rd.client().flushall()
    t.stop()
    t.start()
    read_all(t.port, cfg.rows, p)
    r = B.run_pgbench(t, "mixed", p, max(cfg.clients), 5, cfg.nproc, scripts=script, defines=defines)
    B.log(f"cache: check {t.label} -M {p}: isolated run {describe_run(r)}")


def run_checks(cfg, pg, tg, p, checks, isolate=None):
    """The correctness check of every caching target in protocol p, into checks."""
    for name in ("levee-cache", "pgpool-cache"):
        if name not in tg:
            continue
        try:
            if isolate:
                isolate(tg[name])
            d = check_rows(pg, tg[name], cfg.rows, p)
            for k, x in enumerate(d, 1):
                B.log(f"cache: check {LABELS[name]} -M {p} pass {k} ({PASS_NAMES[k - 1]}): "
                      f"{x['read']:,}/{x['rows']:,} read, {x['mismatched']} mismatched, "
                      f"{x['missing']} missing, hits {(x['cache'] or {}).get('hits')}, "
                      f"{x['seconds']:.1f} s" + (f", errors {x['errors']}" if x['errors'] else ""))
        except Exception as exc:  # noqa: BLE001 - a figure, not an assertion
            d = {"error": str(exc).splitlines()[0][:200]}
            B.log(f"cache: check {LABELS[name]} -M {p} failed: {d['error']}")
        checks[(name, p)] = d


if __name__ == "__main__":
    B.run_main(main, "cache")
