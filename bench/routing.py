#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Read/write splitting: Levee routing reads to two replicas, next to Pgpool-II load balancing.

Run by bench/run-routing.sh: `routing.py [--quick] /abs/path/to/levee`.

What it does, in order:
  1. starts a PostgreSQL 15 primary tuned as in bench.py (bench.start_postgres),
     creates `bench`, runs `pgbench -i -s 10`, then starts two streaming
     replicas (tools/stack.py, pg_basebackup -R) and waits until they replayed it;
  2. starts four targets over the same three servers:
       levee-split    Levee, transaction mode, primary + replicas, route auto;
       levee-primary  the same Levee config with `route = primary`;
       pgpool-lb      Pgpool-II, streaming_replication mode, load_balance_mode on;
       direct         pgbench straight to the primary;
  3. waits until Levee's SHOW BACKENDS lists both replicas usable, and checks
     that reads really spread: `SELECT inet_server_port()` over fresh
     connections must reach both replica ports through levee-split and
     pgpool-lb, and only the primary through levee-primary;
  4. runs `pgbench -S` (-M simple, then extended) against the four targets,
     interleaved, BENCH_ROUNDS rounds, and reports medians and the ratios
     Levee split / Pgpool-II LB and Levee split / Levee primary-only;
  5. writes the report to bench/results/<time>-routing[-quick].md.

The targets reuse bench/targets.py (Levee, Pgpool) and the pgbench runner of
bench/bench.py; the only difference is extra config lines, appended to the
config file those classes write just before the process is spawned.

Environment: BENCH_QUICK (or --quick), BENCH_SECONDS, BENCH_ROUNDS, BENCH_LEVEE_WORKERS,
BENCH_POOL_SIZE as in bench.py, and
  BENCH_CLIENTS=64                   one or more client counts (default 64)
  BENCH_PROTOCOLS=simple,extended    pgbench -M values
  BENCH_ROUTING_TARGETS=levee-split,levee-primary,pgpool-lb,direct
  BENCH_PGPOOL_PRIMARY_WEIGHT=0      Pgpool-II backend_weight0 (0: reads only on the
                                     replicas, as Levee does; 1: primary takes a third)
"""

import datetime
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench as B  # noqa: E402  (puts tools/ on sys.path too)
import stack as stk  # noqa: E402
import targets as T  # noqa: E402

import psycopg  # noqa: E402

ORDER = ["levee-split", "levee-primary", "pgpool-lb", "direct"]
LABELS = {"levee-split": "Levee split", "levee-primary": "Levee primary-only",
          "pgpool-lb": "Pgpool-II LB", "direct": "direct (primary)"}
PROTOCOLS = ["simple", "extended"]
N_REPLICAS = 2


# ---------------------------------------------------------------------------
# Targets: bench/targets.py's classes plus appended config lines


class LeveeRouted(T.Levee):
    """T.Levee whose [database bench] also names the replicas, plus a [routing] section.

    route is "auto" (split reads to the replicas) or "primary" (everything on
    the primary, health checks still running)."""

    def __init__(self, st, pg, replicas, binary, pool_size, workers, route, tag):
        super().__init__(st, pg, binary, "transaction", pool_size, workers, tag=tag)
        self.replicas = replicas
        self.route = route
        self.name = tag
        self.label = LABELS[tag]

    def _spawn(self, cmd, cwd, as_server):
        conf = cmd[cmd.index("-c") + 1]
        reps = ", ".join(f"{T.HOST}:{r.port}" for r in self.replicas)
        # The file ends inside [database bench], so these lines belong to it.
        with open(conf, "a") as f:
            f.write(f"replicas = {reps}\nroute = {self.route}\n\n"
                    f"[routing]\nhealth_check_user = {T.BENCH_USER}\n"
                    f"health_check_period = 1s\n")
        super()._spawn(cmd, cwd, as_server)

    def start(self):
        """Starts Levee and waits until SHOW BACKENDS lists every replica usable."""
        super().start()
        self.wait_usable()
        return self

    def backends(self):
        """SHOW BACKENDS rows as dicts (empty when the console does not answer)."""
        ok, out = T.psql(self.port, "SHOW BACKENDS", T.ADMIN_USER, T.ADMIN_PASSWORD, "levee")
        if not ok:
            return []
        cols = ["backend", "role", "up", "usable"]
        return [dict(zip(cols, line.split("|"))) for line in out.splitlines() if line]

    def wait_usable(self, timeout=30):
        want = {f"{T.HOST}:{r.port}" for r in self.replicas}

        def ready():
            usable = {b["backend"] for b in self.backends()
                      if b.get("usable") == "yes" and b.get("role") == "replica"}
            return want <= usable
        try:
            stk.wait_until(ready, timeout, 0.2, message="Levee's replicas to be usable")
        except TimeoutError as exc:
            raise T.TargetError(f"{exc}: SHOW BACKENDS = {self.backends()}") from None


class PgpoolLB(T.Pgpool):
    """T.Pgpool switched to streaming_replication mode with load balancing over
    the primary (backend0) and the replicas (backend1, backend2)."""

    def __init__(self, st, pg, replicas, children, primary_weight):
        super().__init__(st, pg, children, tag="pgpool-lb")
        self.replicas = replicas
        self.primary_weight = primary_weight
        self.name = "pgpool-lb"
        self.label = LABELS["pgpool-lb"]

    def _spawn(self, cmd, cwd, as_server):
        conf = cmd[cmd.index("-f") + 1]
        lines = ["", "# bench/routing.py: streaming replication + load balancing",
                 "backend_clustering_mode = 'streaming_replication'",
                 "load_balance_mode = on",
                 f"backend_weight0 = {self.primary_weight}",
                 f"sr_check_user = '{T.BENCH_USER}'",
                 f"sr_check_password = '{T.BENCH_PASSWORD}'",
                 "sr_check_period = 0", "health_check_period = 0"]
        for i, r in enumerate(self.replicas, 1):
            lines += [f"backend_hostname{i} = '{T.HOST}'", f"backend_port{i} = {r.port}",
                      f"backend_weight{i} = 1", f"backend_flag{i} = 'DISALLOW_TO_FAILOVER'"]
        # Later lines of pgpool.conf override earlier ones.
        with open(conf, "a") as f:
            f.write("\n".join(lines) + "\n")
        super()._spawn(cmd, cwd, as_server)

    def pool_nodes(self):
        """{port: select_cnt} from SHOW POOL_NODES."""
        with psycopg.connect(host=T.HOST, port=self.port, user=T.BENCH_USER,
                             password=T.BENCH_PASSWORD, dbname=T.BENCH_DB,
                             autocommit=True, connect_timeout=10) as c:
            cur = c.execute("SHOW POOL_NODES")
            cols = [d.name for d in cur.description]
            return {int(row[cols.index("port")]): int(row[cols.index("select_cnt")])
                    for row in cur.fetchall()}


def ports_seen(port, n=20):
    """inet_server_port() over n fresh connections (Pgpool-II picks a node per session)."""
    seen = {}
    for _ in range(n):
        with psycopg.connect(host=T.HOST, port=port, user=T.BENCH_USER,
                             password=T.BENCH_PASSWORD, dbname=T.BENCH_DB, autocommit=True,
                             connect_timeout=10) as c:
            for _ in range(2):
                p = c.execute("SELECT inet_server_port()").fetchone()[0]
                seen[p] = seen.get(p, 0) + 1
    return seen


# ---------------------------------------------------------------------------
# Report


def render(cfg, ctx, results, started, finished):
    L = B.header_lines(ctx, "Levee read/write-splitting benchmark", started,
                       sharing="the primary, both replicas, the proxies and pgbench")
    L[0] += f" ({'QUICK MODE' if cfg.quick else 'full run'})"
    L.append(f"- PostgreSQL: primary + {N_REPLICAS} streaming replicas (pg_basebackup -R), each "
             f"shared_buffers {ctx['pg']['shared_buffers']}, fsync off; "
             f"data pgbench -i -s {B.SCALE}")
    L.append(f"- Levee: pool_mode transaction, pool_size {cfg.pool_size} per backend, workers "
             f"{cfg.levee_workers or 'auto'}; split = `replicas = R1, R2` (route auto), "
             f"primary-only = the same with `route = primary`; [routing] health_check_user "
             f"{T.BENCH_USER}, health_check_period 1s")
    L.append(f"- Pgpool-II: streaming_replication mode, load_balance_mode on, backend_weight "
             f"primary {cfg.primary_weight} / replicas 1 / 1, connection_cache on, max_pool 1, "
             f"num_init_children {ctx['pgpool_children']}, sr_check_period 0, "
             f"health_check_period 0")
    L.append(f"- Runs: pgbench -S -n, {cfg.seconds} s each, {cfg.rounds} rounds, targets "
             f"interleaved ({' → '.join(cfg.targets)}); pgbench -j = min(clients, {cfg.nproc}); "
             f"medians over rounds")
    L.append("- Spread checks (inet_server_port() over 20 fresh connections, 2 queries each): "
             + "; ".join(f"{LABELS[k]} {v}" for k, v in ctx["spread"].items()))
    if "pool_nodes" in ctx:
        L.append(f"- Pgpool-II SHOW POOL_NODES select_cnt after the runs (port: count): "
                 f"{ctx['pool_nodes']}")
    L.append(f"- Ports: primary {ctx['ports']['primary']}, replicas "
             f"{', '.join(map(str, ctx['ports']['replicas']))}")
    L += B.run_lines(ctx, started, finished)
    L.append("")
    cols = cfg.targets
    L.append(f"## pgbench -S: median tps over {cfg.rounds} rounds")
    L.append("")
    hdr = ["protocol", "clients"] + [LABELS[c] for c in cols]
    pairs = [(a, b) for a, b in (("levee-split", "pgpool-lb"), ("levee-split", "levee-primary"),
                                 ("levee-split", "direct"), ("pgpool-lb", "direct"))
             if a in cols and b in cols]
    hdr += [f"{LABELS[a]} / {LABELS[b]}" for a, b in pairs]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(hdr) - 2)) + "|")
    for (p, c), per in results.items():
        row = [p, str(c)] + [B.cell(per.get(t, []), "tps") for t in cols]
        row += [B.ratio(B.median_of(per.get(a, []), "tps"), B.median_of(per.get(b, []), "tps"))
                for a, b in pairs]
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("## Every run (tps / pgbench latency ms)")
    L.append("")
    L += B.runs_table_head(["protocol", "clients", "target"], cfg.rounds)
    for (p, c), per in results.items():
        for t in cols:
            cells = [f"{B.fmt(r.tps)} / {B.fmt(r.latency_ms, 2)}" if r.ok
                     else ("hung" if r.hung else "error") for r in per.get(t, [])]
            L.append(f"| {p} | {c} | {LABELS[t]} | " + " | ".join(cells) + " |")
    fails = B.failed_runs(results, LABELS, lambda k: f"{k[0]} c={k[1]}")
    if fails:
        L += ["", "## Failed runs", ""] + fails
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------
# Main


class Settings(B.CommonSettings):
    def __init__(self, levee_binary, quick):
        super().__init__(levee_binary, quick, seconds=(3, 10), rounds=(3, 3),
                         targets_env="BENCH_ROUTING_TARGETS", order=ORDER)
        self.clients = B.env_list("BENCH_CLIENTS", [64], conv=B.positive_int)
        self.protocols = B.env_list("BENCH_PROTOCOLS", PROTOCOLS, PROTOCOLS + ["prepared"])
        self.primary_weight = B.env_int("BENCH_PGPOOL_PRIMARY_WEIGHT", 0, 0)


def main(argv):
    binary, quick = B.parse_command(argv, "routing", (B.PGBENCH, T.PGPOOL, T.PSQL))
    cfg = Settings(binary, quick)
    started = datetime.datetime.now()
    ctx = dict(B.base_context(cfg, "bench/run-routing.sh", quick), spread={},
               pgpool_children=max(cfg.clients) + 8)
    B.log(f"routing: {'QUICK MODE: ' if cfg.quick else ''}{cfg.seconds} s runs, {cfg.rounds} "
          f"rounds, clients {cfg.clients}, protocols {cfg.protocols}, targets {cfg.targets}")
    st = B.new_stack(cfg)
    live, results = [], {}
    try:
        pg, ctx["pg"] = B.start_postgres(st)
        B.pgbench_init(pg)
        replicas = [st.start_replica(pg) for _ in range(N_REPLICAS)]
        for r in replicas:
            pg.wait_replayed(r, timeout=120)
        ctx["ports"] = {"primary": pg.port, "replicas": [r.port for r in replicas]}
        B.log(f"routing: primary on {pg.port}, replicas on {[r.port for r in replicas]}")

        makers = {
            "levee-split": lambda: LeveeRouted(st, pg, replicas, cfg.levee_binary, cfg.pool_size,
                                               cfg.levee_workers, "auto", "levee-split"),
            "levee-primary": lambda: LeveeRouted(st, pg, replicas, cfg.levee_binary,
                                                 cfg.pool_size, cfg.levee_workers, "primary",
                                                 "levee-primary"),
            "pgpool-lb": lambda: PgpoolLB(st, pg, replicas, ctx["pgpool_children"],
                                          cfg.primary_weight),
            "direct": lambda: T.Direct(st, pg),
        }
        tg = B.start_targets(makers, cfg.targets, live, "routing")

        # Where reads go, checked before anything is measured.
        rep_ports = {r.port for r in replicas}
        for name, t in tg.items():
            seen = ports_seen(t.port)
            ctx["spread"][name] = dict(sorted(seen.items()))
            B.log(f"routing: {LABELS[name]} reads reached ports {seen}")
            want = (rep_ports if name == "levee-split"
                    else rep_ports | ({pg.port} if cfg.primary_weight else set())
                    if name == "pgpool-lb" else {pg.port})
            if set(seen) != want:
                raise RuntimeError(f"{LABELS[name]}: reads reached ports {sorted(seen)}, "
                                   f"expected {sorted(want)}")

        for name in cfg.targets:
            r = B.run_pgbench(tg[name], "select-only", "simple", max(cfg.clients), 3, cfg.nproc)
            B.log(f"routing: warm-up {LABELS[name]}: "
                  f"{B.fmt(r.tps) + ' tps' if r.ok else 'FAILED: ' + r.error}")

        combos = [(p, c) for p in cfg.protocols for c in cfg.clients]
        total, k = len(combos) * cfg.rounds * len(cfg.targets), 0
        for (p, c) in combos:
            per = results.setdefault((p, c), {})
            for rnd in range(cfg.rounds):
                for name in cfg.targets:
                    k += 1
                    r = B.run_pgbench(tg[name], "select-only", p, c, cfg.seconds, cfg.nproc)
                    per.setdefault(name, []).append(r)
                    B.log(f"[{k}/{total}] -S {p} c={c} round {rnd + 1} {LABELS[name]}: " +
                          (f"{B.fmt(r.tps)} tps, {B.fmt(r.latency_ms, 2)} ms" if r.ok
                           else f"FAILED: {r.error}"))
                    B.after_run(tg[name], r, "routing")
        if "pgpool-lb" in tg:
            try:
                ctx["pool_nodes"] = tg["pgpool-lb"].pool_nodes()
            except Exception as exc:  # noqa: BLE001 - a figure, not an assertion
                ctx["pool_nodes"] = f"SHOW POOL_NODES failed: {exc}"
    finally:
        for t in reversed(live):
            t.stop()
        st.stop()

    finished = datetime.datetime.now()
    ctx["loadavg_end"] = B.loadavg()
    B.publish("routing", started, "routing", cfg.quick,
              render(cfg, ctx, results, started, finished))
    return 0


if __name__ == "__main__":
    B.run_main(main, "routing")
