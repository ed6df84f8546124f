#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Write queue: a spike of single-row INSERTs, straight to PostgreSQL and through
Levee's write queue (`/* levee:async */`).

Run by bench/run-queue.sh (`make bench-queue`): `write_queue.py [--quick] /abs/path/to/levee`.
(Not "queue.py": that name would shadow the standard library's `queue`, which
redis-py imports, for every script in bench/.)

What it does, in order:
  1. starts a PostgreSQL 15 primary (bench.start_postgres; durability back on
     unless BENCH_QUEUE_DURABLE=0: fsync, synchronous_commit and
     full_page_writes on, as PostgreSQL ships) and a Redis 7 with
     appendonly yes (appendfsync everysec, Redis's default); creates
     bench_events(id bigserial, payload text, created_at timestamptz default now());
  2. starts the targets:
       direct       pgbench straight to PostgreSQL, bench/scripts/queue-insert.sql;
       levee-async  Levee, transaction mode, `redis = <the Redis>`,
                    bench/scripts/queue-insert-async.sql (the same INSERT with
                    /* levee:async */ in front);
       levee-rule   (optional) the same Levee plus [queue.rule events] tables =
                    bench_events, with the plain INSERT (for -M extended, where
                    pgbench mangles the hint's ":async" into a parameter);
       levee-sync   (optional) the same Levee with the plain INSERT;
  3. per round and target: empties bench_events, runs pgbench -c 128 -T
     BENCH_SECONDS (20 s; quick 5 s) with per-transaction logs (-l), samples the
     primary's pg_stat_database.xact_commit of `bench` at each progress report
     (top-level commits; not transaction ids, which the queue's per-message
     savepoints also take), then polls
     count(*) on the primary until it reaches the number of acknowledged
     inserts (pgbench's transaction count) and the queue's Redis streams have
     nothing pending: the time from pgbench's exit to then is the drain time;
  4. reports client tps and p99, the primary's commits per second during the
     spike, rows per applied transaction (levee_queue_* counters from /metrics
     when Levee has them; else rows / commits seen on the primary), the drain
     time, rows against acknowledged inserts, and the targets next to the
     figures (not assertions); writes bench/results/<time>-queue[-quick].md.

Everything started is stopped at the end, on error and on Ctrl-C / SIGTERM.

Environment (see bench/README.md):
  BENCH_QUICK=1 or --quick     5 s spikes
  BENCH_SECONDS=N              spike length (default 20; quick 5)
  BENCH_ROUNDS=N               rounds (default 3)
  BENCH_CLIENTS=128            clients
  BENCH_PROTOCOLS=simple       pgbench -M values (simple, extended, prepared)
  BENCH_QUEUE_RATES=0,12000    arrival rates, one spike each: 0 is closed loop (every
                               client sends its next INSERT as soon as the last one is
                               answered, so p99 is mostly clients / throughput); N is
                               pgbench -R N (Poisson arrivals at N/s over all clients,
                               latency counted from each INSERT's scheduled start)
  BENCH_QUEUE_TARGETS=direct,levee-async   (levee-rule, levee-sync also allowed)
  BENCH_QUEUE_DURABLE=1        0: fsync / synchronous_commit off as in bench.py
  BENCH_QUEUE_CONF="k = v; k2 = v2"  lines for Levee's [queue] section
  BENCH_QUEUE_DRAIN_TIMEOUT=N  seconds to wait for the drain (default max(60, 10 x spike))
  BENCH_LEVEE_WORKERS, BENCH_POOL_SIZE as in bench.py; LEVEE_KEEP_STACK=1
"""

import datetime
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench as B  # noqa: E402  (puts tools/ on sys.path too)
import stack as stk  # noqa: E402
import targets as T  # noqa: E402

ORDER = ["direct", "levee-sync", "levee-async", "levee-rule"]
LABELS = {"direct": "direct", "levee-sync": "Levee (no hint)", "levee-async": "Levee async (hint)",
          "levee-rule": "Levee async (queue rule)"}
SCRIPTS = os.path.join(HERE, "scripts")
SCRIPT = {"direct": "queue-insert.sql", "levee-sync": "queue-insert.sql",
          "levee-async": "queue-insert-async.sql", "levee-rule": "queue-insert.sql"}
# pgbench -M extended / prepared turns every ":name" of the statement, comments
# included, into a parameter ($n) when it parses the script: the hint would
# reach Levee as "levee$1". The hint target therefore runs with -M simple only;
# levee-rule defers the same plain INSERT by a [queue.rule] instead.
HINT_PROTOCOLS = ("simple",)
STREAM_PREFIX = "levee:q"

GOAL_P99_MS = 2.0
GOAL_ROWS_PER_TXN = 50.0


class Settings(B.CommonSettings):
    def __init__(self, levee_binary, quick):
        super().__init__(levee_binary, quick, seconds=(5, 20), rounds=(3, 3),
                         targets_env="BENCH_QUEUE_TARGETS", order=ORDER,
                         default_targets=["direct", "levee-async"])
        self.clients = B.env_int("BENCH_CLIENTS", 128, 1)
        self.protocols = B.env_list("BENCH_PROTOCOLS", ["simple"],
                                    ["simple", "extended", "prepared"])
        self.durable = B.env_int("BENCH_QUEUE_DURABLE", 1, 0) != 0
        rates = os.environ.get("BENCH_QUEUE_RATES", "0,12000")
        try:
            self.rates = [int(x) for x in rates.split(",") if x.strip()]
        except ValueError:
            raise SystemExit(f"BENCH_QUEUE_RATES: want comma-separated integers, got {rates!r}")
        if not self.rates or any(r < 0 for r in self.rates):
            raise SystemExit(f"BENCH_QUEUE_RATES: want integers >= 0, got {rates!r}")
        raw = os.environ.get("BENCH_QUEUE_CONF", "")
        self.queue_conf = [x.strip() for x in raw.replace("\n", ";").split(";") if x.strip()]
        self.drain_timeout = B.env_int("BENCH_QUEUE_DRAIN_TIMEOUT",
                                       max(60, 10 * self.seconds), 1)


# ---------------------------------------------------------------------------
# Measuring


def xact_commit(pg):
    """Commits in `bench` so far (pg_stat_database; backends report within about 1 s)."""
    return int(pg.sql("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                      (T.BENCH_DB,))[0][0])


def count_rows(pg):
    return int(pg.sql("SELECT count(*) FROM bench_events", dbname=T.BENCH_DB)[0][0])


def queue_backlog(rd):
    """Messages in the queue's streams not yet applied: the sum over every stream
    under STREAM_PREFIX of each consumer group's pending + lag (entries not yet
    delivered). None when there is no such stream (no queue, or an empty one
    never created)."""
    c = rd.client(decode_responses=True)
    total, seen = 0, False
    for key in c.scan_iter(match=STREAM_PREFIX + "*", count=1000):
        if c.type(key) != "stream":
            continue
        seen = True
        groups = c.xinfo_groups(key)
        if not groups:
            total += int(c.xlen(key))
            continue
        for g in groups:
            lag = g.get("lag")
            total += int(g.get("pending", 0)) + (int(lag) if lag is not None else 0)
    return total if seen else None


class Spike:
    """One measured spike: pgbench's Run plus what the primary and Levee saw."""

    def __init__(self, run):
        self.run = run
        self.ok = run.ok
        self.tps = run.tps
        self.p99_ms = run.lat_p99_ms
        self.p50_ms = run.lat_p50_ms
        self.acked = run.txns
        self.commits_per_s = None
        self.rows_per_txn = None
        self.rows_per_txn_source = ""
        self.drain_s = None
        self.left_at_end = None  # acknowledged inserts not yet in the table when pgbench exited
        self.apply_rate = None   # rows per second applied during the drain
        self.rows = None
        self.backlog = None
        self.queue_metrics = {}
        self.error = run.error


def mode_label(protocol, rate):
    return f"{protocol}, closed loop" if not rate else f"{protocol}, -R {rate:,}"


def run_spike(t, pg, rd, cfg, protocol, rate, log_dir):
    with_metrics = isinstance(t, T.Levee)
    m0 = t.metrics() if with_metrics else None
    xc0 = xact_commit(pg)
    samples = []  # (time.monotonic(), xact_commit)

    def on_progress(_elapsed):
        samples.append((time.monotonic(), xact_commit(pg)))
    script = os.path.join(SCRIPTS, SCRIPT[t.name])
    r = B.run_pgbench(t, "insert", protocol, cfg.clients, cfg.seconds, cfg.nproc,
                      scripts=[script], log_dir=log_dir, on_progress=on_progress, rate=rate)
    s = Spike(r)
    if not r.ok:
        return s
    # Commits per second on the primary during the spike: between the first and
    # the last progress report (connections made; pgbench still running), as
    # the CPU figures of bench.py. Fall back to the whole run.
    if len(samples) >= 2 and samples[-1][0] - samples[0][0] >= 0.99:
        s.commits_per_s = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
    else:
        s.commits_per_s = (xact_commit(pg) - xc0) / max(1e-6, r.t_end - r.t_start)

    # Drain: until count(*) reaches the acknowledged inserts and Redis holds
    # nothing still to apply.
    polls = 0
    deadline = r.t_end + cfg.drain_timeout
    while True:
        rows = count_rows(pg)
        polls += 1
        if s.left_at_end is None:
            s.left_at_end = max(0, s.acked - rows)
        backlog = queue_backlog(rd) if rd is not None else None
        if rows >= s.acked and not backlog:
            s.drain_s = max(0.0, time.monotonic() - r.t_end)
            if s.left_at_end and s.drain_s > 0:
                s.apply_rate = s.left_at_end / s.drain_s
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)  # polling interval, not a readiness stand-in: the loop checks
    s.rows, s.backlog = rows, backlog
    xc_end = xact_commit(pg)
    if with_metrics:
        m1 = t.metrics()
        s.queue_metrics = T.series_deltas(
            m0, m1, lambda name: name.startswith("levee_queue_") and not name.endswith("_bucket"))
        applied = T.metric_delta(m0, m1, "levee_queue_applied_total")
        batches = T.metric_delta(m0, m1, "levee_queue_batches_total")
        if applied is not None and batches:
            s.rows_per_txn = applied / batches
            s.rows_per_txn_source = "levee_queue_applied_total / levee_queue_batches_total"
    if s.rows_per_txn is None:
        # Every commit in `bench` from the start to the end of the drain, less
        # our own count(*) polls (each one a read-only transaction).
        commits = xc_end - xc0 - polls
        if commits > 0:
            s.rows_per_txn = rows / commits
            s.rows_per_txn_source = "rows / commits on the primary"
    return s


def wait_empty(pg, rd, timeout=120):
    """Waits until nothing is left to apply, then empties bench_events."""
    if rd is not None:
        stk.wait_until(lambda: not queue_backlog(rd), timeout, 0.1,
                       message="the queue's streams to drain")
    pg.sql("TRUNCATE bench_events", dbname=T.BENCH_DB)


# ---------------------------------------------------------------------------
# Report


# A Spike has .ok and the figures as attributes, as a Run does.
med = B.median_of


def render(cfg, ctx, results, started, finished):
    L = B.header_lines(ctx, "Levee write-queue benchmark", started, ("postgres",))
    L[0] += f" ({'QUICK MODE' if cfg.quick else 'full run'})"
    pgs = ctx["pg"]
    L.append(f"- PostgreSQL: fsync {pgs['fsync']}, synchronous_commit {pgs['synchronous_commit']}, "
             f"full_page_writes {pgs['full_page_writes']}, shared_buffers "
             f"{pgs['shared_buffers']}")
    L.append(f"- Redis {ctx['redis_version']}: appendonly {ctx['redis_aof']}, appendfsync "
             f"{ctx['redis_fsync']}")
    L.append(f"- Levee: pool_mode transaction, pool_size {cfg.pool_size}, workers "
             f"{cfg.levee_workers or 'auto'}, `redis = <the Redis>`" +
             (f"; [queue] {'; '.join(cfg.queue_conf)}" if cfg.queue_conf else
              "; [queue] defaults"))
    L.append(f"- Spike: pgbench -n -c {cfg.clients} -j {min(cfg.clients, cfg.nproc)} "
             f"-T {cfg.seconds} -l, one single-row INSERT per transaction into "
             f"bench_events(id bigserial, payload text, created_at timestamptz default now()) "
             f"(bench/scripts/queue-insert.sql; queue-insert-async.sql adds "
             f"`/* levee:async */`); arrival: " +
             ", ".join("closed loop (each client sends its next INSERT when the last is "
                       "answered)" if not r else f"pgbench -R {r:,} (Poisson arrivals, latency "
                       "from each INSERT's scheduled start)" for r in cfg.rates) +
             f"; {cfg.rounds} rounds, targets interleaved "
             f"({' → '.join(cfg.targets)}); bench_events emptied before each run; medians")
    for name, why in ctx["unavailable"].items():
        L.append(f"- **{LABELS[name]}: not available**: {why}")
    for why in ctx.get("skipped", []):
        L.append(f"- {why}")
    if ctx.get("queue_active") is False:
        L.append("- **The write queue did not defer anything**: levee_queue_enqueued_total did "
                 "not move and there is no Redis stream under `levee:q`; the async INSERTs went "
                 "straight through to PostgreSQL.")
    L += B.run_lines(ctx, started, finished)
    L.append("")
    L.append(f"## Write spike: medians over {cfg.rounds} rounds")
    L.append("")
    L.append("Client tps and latency are pgbench's (p50/p99 from the per-transaction log). "
             "Primary commits/s: pg_stat_database.xact_commit of `bench` per second between "
             "pgbench's first and last progress report (backends report their counts within "
             "about a second, so a short spike's figure is rough). Rows per applied "
             "transaction: Levee's levee_queue_applied_total / levee_queue_batches_total when "
             "it exports them, else rows / commits on the primary from the start of the spike "
             "to the end of the drain. Drain: from pgbench's exit until count(*) reaches "
             "the acknowledged inserts and the queue's streams have nothing pending. "
             "Closed loop, every client waits for its answer before sending again, so the "
             "run measures throughput and p99 is about clients / tps; at a fixed rate (-R) "
             "p99 is the latency an INSERT sees at that arrival rate, queueing included.")
    L.append("")
    L.append("| protocol, arrival | target | client tps | p50 ms | p99 ms | primary commits/s | "
             "rows per applied txn | left at spike end | drain s | rows/s while draining | "
             "rows / acknowledged |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p, per in results.items():
        for t in cfg.targets:
            sp = per.get(t, [])
            if not sp:
                continue
            ok = [s for s in sp if s.ok]
            ra = "; ".join(f"{B.fmt(s.rows)}/{B.fmt(s.acked)}" for s in ok) or "—"
            drained = [s for s in ok if s.drain_s is None]
            d = med(sp, "drain_s")
            dtext = ("not drained within "
                     f"{cfg.drain_timeout} s" if drained and d is None else B.fmt(d, 2))
            L.append(f"| {p} | {LABELS[t]} | {B.fmt(med(sp, 'tps'))} | "
                     f"{B.fmt(med(sp, 'p50_ms'), 3)} | {B.fmt(med(sp, 'p99_ms'), 3)} | "
                     f"{B.fmt(med(sp, 'commits_per_s'))} | {B.fmt(med(sp, 'rows_per_txn'), 1)} | "
                     f"{B.fmt(med(sp, 'left_at_end'))} | {dtext} | "
                     f"{B.fmt(med(sp, 'apply_rate'))} | {ra} |")
    L.append("")
    L.append("## Against the targets (Levee async; figures, not assertions)")
    L.append("")
    for p, per in results.items():
        which = "levee-async" if per.get("levee-async") else "levee-rule"
        sp = per.get(which, [])
        if not sp:
            continue
        p = f"{p}, {LABELS[which]}"
        L.append(f"- -M {p}: p99 ≤ {GOAL_P99_MS} ms: " + B.target_note(
            med(sp, "p99_ms"), GOAL_P99_MS, "<=", lambda v: f"{v:.3f} ms"))
        L.append(f"- -M {p}: ≥ {GOAL_ROWS_PER_TXN:g} rows per applied transaction: " +
                 B.target_note(med(sp, "rows_per_txn"), GOAL_ROWS_PER_TXN, ">=",
                               lambda v: f"{v:.1f}"))
        L.append(f"- -M {p}: drained within the spike ({cfg.seconds} s): " + B.target_note(
            med(sp, "drain_s"), float(cfg.seconds), "<=", lambda v: f"{v:.2f} s"))
        lost = [s for s in sp if s.ok and s.rows is not None and s.acked is not None
                and s.rows < s.acked]
        extra = [s for s in sp if s.ok and s.rows is not None and s.acked is not None
                 and s.rows > s.acked + cfg.clients]
        L.append(f"- -M {p}: every acknowledged insert applied: " +
                 ("**no: fewer rows than acknowledged inserts in "
                  f"{len(lost)} run(s)**" if lost else "yes" if sp else "not measured") +
                 (f"; **{len(extra)} run(s) with more rows than acknowledged + clients "
                  f"(duplicates?)**" if extra else ""))
    L.append("")
    L.append("## Every run")
    L.append("")
    L.append("| protocol, arrival | target | round | tps | p99 ms | commits/s | rows/txn (source) | "
             "drain s | rows | acknowledged | levee_queue_* deltas |")
    L.append("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for p, per in results.items():
        for t in cfg.targets:
            for i, s in enumerate(per.get(t, [])):
                if not s.ok:
                    L.append(f"| {p} | {LABELS[t]} | {i + 1} | error: {s.error} | | | | | | | |")
                    continue
                qm = ", ".join(f"{k} {v:g}" for k, v in sorted(s.queue_metrics.items())
                               if v) or "—"
                L.append(f"| {p} | {LABELS[t]} | {i + 1} | {B.fmt(s.tps)} | "
                         f"{B.fmt(s.p99_ms, 3)} | {B.fmt(s.commits_per_s)} | "
                         f"{B.fmt(s.rows_per_txn, 1)} ({s.rows_per_txn_source or '—'}) | "
                         f"{B.fmt(s.drain_s, 2)} | {B.fmt(s.rows)} | {B.fmt(s.acked)} | {qm} |")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------
# Main


def main(argv):
    binary, quick = B.parse_command(argv, "queue", (B.PGBENCH,))
    cfg = Settings(binary, quick)
    started = datetime.datetime.now()
    ctx = dict(B.base_context(cfg, "bench/run-queue.sh", quick), unavailable={})
    B.log(f"queue: {'QUICK MODE: ' if cfg.quick else ''}{cfg.seconds} s spikes, {cfg.rounds} "
          f"rounds, {cfg.clients} clients, protocols {cfg.protocols}, targets {cfg.targets}")
    st = B.new_stack(cfg)
    live, results = [], {}
    durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    try:
        pg, ctx["pg"] = B.start_postgres(st, durable if cfg.durable else None)
        rd = st.start_redis(appendonly=True)
        info = rd.client(decode_responses=True)
        ctx["redis_version"] = info.info("server").get("redis_version", "?")
        ctx["redis_aof"] = info.config_get("appendonly").get("appendonly", "?")
        ctx["redis_fsync"] = info.config_get("appendfsync").get("appendfsync", "?")
        pg.sql("CREATE TABLE bench_events (id bigserial, payload text, "
               "created_at timestamptz DEFAULT now())", dbname=T.BENCH_DB)
        pg.sql(f"ALTER TABLE bench_events OWNER TO {T.BENCH_USER}", dbname=T.BENCH_DB)
        B.log(f"queue: PostgreSQL on {pg.port} (fsync {ctx['pg']['fsync']}, synchronous_commit "
              f"{ctx['pg']['synchronous_commit']}), Redis on {rd.port} (appendonly "
              f"{ctx['redis_aof']}, appendfsync {ctx['redis_fsync']})")

        sections = ("[queue]\n" + "\n".join(cfg.queue_conf) + "\n\n") if cfg.queue_conf else ""

        def levee(tag, extra=""):
            return T.Levee(st, pg, cfg.levee_binary, "transaction", cfg.pool_size,
                           cfg.levee_workers, tag=tag, levee_lines=f"redis = {rd.url}\n",
                           sections=sections + extra, label=LABELS[tag])
        makers = {"direct": lambda: T.Direct(st, pg), "levee-sync": lambda: levee("levee-sync"),
                  "levee-async": lambda: levee("levee-async"),
                  "levee-rule": lambda: levee("levee-rule",
                                              "[queue.rule events]\ntables = bench_events\n")}
        tg = B.start_targets(makers, cfg.targets, live, "queue", ctx["unavailable"])
        names = [n for n in cfg.targets if n in tg]

        # Warm-up, not recorded: connections made, the table's first pages.
        for name in names:
            proto = cfg.protocols[0] if name != "levee-async" else "simple"
            r = B.run_pgbench(tg[name], "insert", proto, cfg.clients, 4, cfg.nproc,
                              scripts=[os.path.join(SCRIPTS, SCRIPT[name])])
            B.log(f"queue: warm-up {LABELS[name]}: "
                  f"{B.fmt(r.tps) + ' tps' if r.ok else 'FAILED: ' + r.error}")
            wait_empty(pg, rd)

        log_dir = os.path.join(st.dir, "pgbench-logs")
        runnable = {p: [n for n in names if n != "levee-async" or p in HINT_PROTOCOLS]
                    for p in cfg.protocols}
        for p in cfg.protocols:
            if "levee-async" in names and p not in HINT_PROTOCOLS:
                ctx.setdefault("skipped", []).append(
                    f"{LABELS['levee-async']} not run with -M {p}: pgbench turns the hint's "
                    f"\":async\" into a parameter ($n) in that mode (use levee-rule)")
        total, k = sum(len(v) for v in runnable.values()) * cfg.rounds * len(cfg.rates), 0
        for p, rate in [(p, rate) for p in cfg.protocols for rate in cfg.rates]:
            per = results.setdefault(mode_label(p, rate), {})
            for rnd in range(cfg.rounds):
                for name in runnable[p]:
                    k += 1
                    t = tg[name]
                    wait_empty(pg, rd)
                    s = run_spike(t, pg, rd, cfg, p, rate, log_dir)
                    per.setdefault(name, []).append(s)
                    if s.ok:
                        what = (f"{B.fmt(s.tps)} tps, p99 {B.fmt(s.p99_ms, 3)} ms, primary "
                                f"{B.fmt(s.commits_per_s)} commits/s, rows/txn "
                                f"{B.fmt(s.rows_per_txn, 1)}, drain "
                                f"{B.fmt(s.drain_s, 2)} s, rows {s.rows}/{s.acked} acked")
                    else:
                        what = f"FAILED: {s.error}"
                    B.log(f"[{k}/{total}] -M {mode_label(p, rate)} round {rnd + 1} "
                          f"{LABELS[name]}: {what}")
                    B.after_run(t, s.run, "queue")
        if "levee-async" in tg or "levee-rule" in tg:
            spikes = [s for per in results.values() for t in ("levee-async", "levee-rule")
                      for s in per.get(t, [])]
            ctx["queue_active"] = any(s.queue_metrics.get("levee_queue_enqueued_total", 0) > 0
                                      for s in spikes) or \
                queue_backlog(rd) is not None
    finally:
        for t in reversed(live):
            t.stop()
        st.stop()

    finished = datetime.datetime.now()
    ctx["loadavg_end"] = B.loadavg()
    B.publish("queue", started, "queue", cfg.quick, render(cfg, ctx, results, started, finished))
    return 0


if __name__ == "__main__":
    B.run_main(main, "queue")
