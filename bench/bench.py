#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Levee side by side with PgBouncer, Pgpool-II and PostgreSQL direct.

Run by bench/run.sh (`make bench`): `bench.py [--quick] /abs/path/to/levee`.

What it does, in order:
  1. starts a PostgreSQL 15 primary (tools/stack.py) tuned for the run, creates
     the role and database `bench` and runs `pgbench -i -s 10` directly, once;
  2. finds out whether Levee's transaction pooling works (a probe instance with
     pool_size = 1 serves two open clients from one server backend) and picks
     Levee's pool mode from that;
  3. starts Levee, PgBouncer and Pgpool-II on free loopback ports;
  4. for every workload (select-only and tpcb-like) x protocol (simple,
     extended, prepared) x client count (8, 64, 256) runs pgbench through
     Levee, PgBouncer, Pgpool-II and directly, interleaved (A B C D per round,
     BENCH_ROUNDS rounds), measuring tps and, for each proxy, CPU time per
     transaction over the steady part of the run;
  5. opens BENCH_IDLE_CLIENTS idle clients through Levee (transaction mode
     only) and PgBouncer, and reports RSS per client;
  6. prints the results as markdown and writes them to bench/results/<time>.md.

Everything started is stopped at the end, on error and on Ctrl-C / SIGTERM.
Figures, not assertions: a failed pgbench run is reported, not fatal.

Environment:
  BENCH_QUICK=1 or --quick   one client count (64), 3 s runs, 3 rounds
  BENCH_SECONDS=N        seconds per pgbench run (default 10; quick 3)
  BENCH_ROUNDS=N         rounds per workload (default 3, at least 1)
  BENCH_CLIENTS=8,64,256 client counts
  BENCH_PROTOCOLS=simple,extended,prepared
  BENCH_WORKLOADS=select-only,tpcb-like
  BENCH_TARGETS=levee,pgbouncer,pgpool,direct
  BENCH_IDLE_CLIENTS=N   idle clients for the memory test (default 10000; 0 skips it)
  BENCH_LEVEE_MODE=auto|session|transaction   (default auto: probe)
  BENCH_LEVEE_WORKERS=N  Levee's `workers` (default 0 = number of CPUs)
  BENCH_POOL_SIZE=N      pool size of Levee (transaction mode) and PgBouncer (default 16)
  LEVEE_KEEP_STACK=1     keep the work directory (configs, logs) afterwards
"""

import asyncio
import datetime
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)

import stack as stk  # noqa: E402
import targets as T  # noqa: E402
from pgwire import PgConn  # noqa: E402

PG_BINDIR = stk.PG_BINDIR
PGBENCH = os.path.join(PG_BINDIR, "pgbench")
SCALE = 10
PG_MAX_CONNECTIONS = 1000
TARGET_ORDER = ["levee", "pgbouncer", "pgpool", "direct"]
WORKLOADS = ["select-only", "tpcb-like"]
PROTOCOLS = ["simple", "extended", "prepared"]


def log(msg):
    print(msg, flush=True)


def env_int(name, default, minimum=0):
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        sys.exit(f"bench: {name}={raw!r} is not an integer")
    if v < minimum:
        sys.exit(f"bench: {name} must be >= {minimum}")
    return v


def env_list(name, default, allowed=None, conv=str):
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return list(default)
    out = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = conv(part)
        except ValueError:
            sys.exit(f"bench: bad value {part!r} in {name}")
        if allowed is not None and v not in allowed:
            sys.exit(f"bench: {name}: {part!r} is not one of {', '.join(map(str, allowed))}")
        out.append(v)
    if not out:
        sys.exit(f"bench: {name} is empty")
    return out


def positive_int(text):
    """int(text), for env_list(conv=): a value under 1 is a ValueError."""
    v = int(text)
    if v < 1:
        raise ValueError(text)
    return v


class CommonSettings:
    """What every benchmark of bench/ reads alike: the Levee binary, quick mode (--quick or
    BENCH_QUICK), BENCH_SECONDS, BENCH_ROUNDS, the targets (targets_env, any subset of
    order, kept in that order), BENCH_LEVEE_WORKERS and BENCH_POOL_SIZE.

    seconds and rounds are the defaults as (quick, full)."""

    def __init__(self, levee_binary, quick, *, seconds, rounds, targets_env, order,
                 default_targets=None):
        self.levee_binary = levee_binary
        self.quick = quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
        self.seconds = env_int("BENCH_SECONDS", seconds[0] if self.quick else seconds[1], 2)
        self.rounds = env_int("BENCH_ROUNDS", rounds[0] if self.quick else rounds[1], 1)
        chosen = env_list(targets_env, default_targets or order, order)
        self.targets = [t for t in order if t in chosen]
        self.levee_workers = env_int("BENCH_LEVEE_WORKERS", 0, 0)
        self.pool_size = env_int("BENCH_POOL_SIZE", 16, 1)
        self.nproc = os.cpu_count() or 1


class Settings(CommonSettings):
    def __init__(self, levee_binary, quick):
        super().__init__(levee_binary, quick, seconds=(3, 10), rounds=(3, 3),
                         targets_env="BENCH_TARGETS", order=TARGET_ORDER)
        self.clients = env_list("BENCH_CLIENTS", [64] if self.quick else [8, 64, 256],
                                conv=positive_int)
        self.protocols = env_list("BENCH_PROTOCOLS", PROTOCOLS, PROTOCOLS)
        self.workloads = env_list("BENCH_WORKLOADS", WORKLOADS, WORKLOADS)
        self.idle_clients = env_int("BENCH_IDLE_CLIENTS", 10000, 0)
        self.levee_mode = os.environ.get("BENCH_LEVEE_MODE", "auto") or "auto"
        if self.levee_mode not in ("auto", "session", "transaction"):
            sys.exit("bench: BENCH_LEVEE_MODE must be auto, session or transaction")


# ---------------------------------------------------------------------------
# Machine and versions


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "loadavg": loadavg(),
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def first_line(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=10)
        return (p.stdout.strip().splitlines() or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def versions(levee_binary):
    git = "?"
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               timeout=10).stdout.strip()
        git = rev + (" + uncommitted changes" if dirty else "") if rev else "?"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "levee": f"{first_line([levee_binary, '--version'])} (git {git})",
        "pgbouncer": first_line([T.PGBOUNCER, "--version"]),
        "pgpool": first_line([T.PGPOOL, "--version"]),
        "postgres": first_line([os.path.join(PG_BINDIR, "postgres"), "--version"]),
    }


# ---------------------------------------------------------------------------
# PostgreSQL

PG_SETTINGS = {
    "shared_buffers": "256MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_preload_libraries": "",
    "log_connections": "off",
    "log_disconnections": "off",
    "autovacuum": "on",
}


def start_postgres(st, overrides=None):
    """Starts the tuned primary, creates role and database `bench`; returns (pg, settings).

    overrides: {setting: value} applied over PG_SETTINGS (bench/queue.py turns
    durability back on with it)."""
    pg = st.start_primary(max_connections=PG_MAX_CONNECTIONS, host_auth="scram-sha-256")
    settings = dict(PG_SETTINGS, **(overrides or {}))
    # postgresql.auto.conf is read last, so these win over tools/stack.py's defaults.
    with open(os.path.join(pg.datadir, "postgresql.auto.conf"), "a") as f:
        f.write("# bench/bench.py\n")
        for k, v in settings.items():
            f.write(f"{k} = '{v}'\n")
    pg.restart()
    pg.sql(f"CREATE ROLE {T.BENCH_USER} LOGIN PASSWORD '{T.BENCH_PASSWORD}'")
    pg.sql(f"CREATE DATABASE {T.BENCH_DB} OWNER {T.BENCH_USER}")
    got = pg.sql("SELECT current_setting('shared_buffers'), current_setting('max_connections'), "
                 "current_setting('fsync'), current_setting('synchronous_commit'), "
                 "current_setting('full_page_writes')")[0]
    return pg, {"shared_buffers": got[0], "max_connections": got[1], "fsync": got[2],
                "synchronous_commit": got[3], "full_page_writes": got[4],
                "auth": "scram-sha-256 on 127.0.0.1"}


def pgbench_init(pg):
    env = dict(os.environ, PGPASSWORD=T.BENCH_PASSWORD)
    p = subprocess.run([PGBENCH, "-i", "-s", str(SCALE), "-q", "-h", T.HOST, "-p", str(pg.port),
                        "-U", T.BENCH_USER, T.BENCH_DB], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"pgbench -i failed:\n{p.stdout}")


def reset_tpcb(pg):
    """What pgbench does before a run unless -n: empty history, vacuum the small tables."""
    pg.sql("TRUNCATE pgbench_history", dbname=T.BENCH_DB)
    pg.sql("VACUUM pgbench_branches", dbname=T.BENCH_DB)
    pg.sql("VACUUM pgbench_tellers", dbname=T.BENCH_DB)


# ---------------------------------------------------------------------------
# pgbench

# A run still going this long after its -T has hung: connecting 256 clients
# takes a few seconds even on a busy machine.
HANG_MARGIN = 30
PROGRESS_RE = re.compile(r"^progress: ([\d.]+) s, ([\d.]+) tps")


class Run:
    """One pgbench run's figures."""

    def __init__(self):
        self.ok = False
        self.tps = None
        self.latency_ms = None
        self.txns = None
        self.failed = None
        self.cpu_us = None       # proxy CPU per transaction, steady window
        self.error = ""
        self.hung = False
        self.lat_n = None        # per-transaction latencies read from pgbench -l
        self.lat_p50_ms = None
        self.lat_p99_ms = None
        self.t_start = None      # time.monotonic() when pgbench started / exited
        self.t_end = None


def run_pgbench(target, workload, protocol, clients, seconds, nproc, *, scripts=None,
                defines=None, log_dir=None, on_progress=None, rate=None):
    """Runs pgbench once against target; returns a Run (never raises for a failed run).

    workload is "select-only", "tpcb-like", or a label for `scripts`: a list of
    pgbench script files ("path" or "path@weight") run with -f. defines are
    passed as -D name=value. With log_dir, pgbench writes per-transaction logs
    there (-l) and the Run gets lat_n / lat_p50_ms / lat_p99_ms from them; the
    log files are removed afterwards. on_progress(elapsed_s) is called at each of
    pgbench's one-second progress reports (the queue benchmark samples the
    primary's commit counter there). rate: pgbench -R (transactions per second
    over all clients, Poisson arrivals); latencies then count from each
    transaction's scheduled start, so time spent waiting for a client counts.
    """
    # pgbench prepares statements synchronously (PQprepare): with more clients
    # than a transaction pooler's pool_size, one blocked client stalls its
    # whole thread, whose other clients hold servers mid-transaction, and the
    # run deadlocks in pgbench itself. One thread per client avoids that for
    # every target alike.
    threads = clients if protocol == "prepared" else max(1, min(clients, nproc))
    cmd = [PGBENCH, "-h", T.HOST, "-p", str(target.port), "-U", T.BENCH_USER, "-n",
           "-M", protocol, "-c", str(clients), "-j", str(threads),
           "-T", str(seconds), "-P", "1"]
    if scripts:
        for sc in scripts:
            cmd += ["-f", sc]
    elif workload == "select-only":
        cmd.append("-S")
    for k, v in (defines or {}).items():
        cmd += ["-D", f"{k}={v}"]
    if rate:
        cmd += ["-R", str(rate)]
    log_prefix = None
    if log_dir is not None:
        os.makedirs(log_dir, exist_ok=True)
        _remove_logs(log_dir)
        log_prefix = os.path.join(log_dir, "tx")
        cmd += ["-l", f"--log-prefix={log_prefix}"]
    cmd.append(T.BENCH_DB)
    env = dict(os.environ, PGPASSWORD=T.BENCH_PASSWORD)
    r = Run()
    samples = []  # (elapsed s, tps over the interval ending then, cpu ticks)
    errors = []
    out = []
    cpu_start = target.cpu_ticks()
    r.t_start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        _kill(proc)
    killer = threading.Timer(seconds + HANG_MARGIN, on_timeout)
    killer.start()
    try:
        for line in proc.stderr:
            m = PROGRESS_RE.match(line)
            if m:
                samples.append((float(m.group(1)), float(m.group(2)), target.cpu_ticks()))
                if on_progress is not None:
                    on_progress(float(m.group(1)))
            elif line.strip():
                errors.append(line.strip())
        proc.wait()
        r.t_end = time.monotonic()
        cpu_end = target.cpu_ticks()
        reader.join(10)
    finally:
        killer.cancel()
        _kill(proc)
    text = "".join(out)
    if timed_out.is_set():
        r.hung = True
        errors.insert(0, f"pgbench did not finish within {seconds + HANG_MARGIN} s "
                         f"(hung); killed, and the proxy restarted")

    def grab(pattern, conv=float):
        m = re.search(pattern, text, re.M)
        return conv(m.group(1)) if m else None
    r.tps = grab(r"^tps = ([\d.]+)")
    r.latency_ms = grab(r"^latency average = ([\d.]+) ms")
    r.txns = grab(r"^number of transactions actually processed: (\d+)", int)
    r.failed = grab(r"^number of failed transactions: (\d+)", int)
    aborted = "aborted" in text or any("aborted" in e for e in errors)
    r.ok = (proc.returncode == 0 and r.tps is not None and not r.failed and not aborted
            and bool(r.txns))
    if log_dir is not None:
        lats = read_latency_logs(log_dir)
        _remove_logs(log_dir)
        if lats:
            r.lat_n = len(lats)
            r.lat_p50_ms = percentile(lats, 50) / 1000.0
            r.lat_p99_ms = percentile(lats, 99) / 1000.0
    if not r.ok:
        # Most telling first: a hang, then pgbench's own error, then a run
        # that connected for its whole -T, then whatever it printed.
        error_line = next((e for e in errors if "error" in e.lower()), None)
        if r.hung:
            msg = errors[0]
        elif error_line:
            msg = error_line
        elif r.txns == 0:
            msg = (f"no transaction completed: connecting {clients} clients took the whole "
                   f"{seconds} s run (pgbench's -T includes connection time)")
        else:
            msg = errors[0] if errors else ""
        if not msg:
            tail = " | ".join(text.strip().splitlines()[-2:])
            msg = f"pgbench exited {proc.returncode}" + (f": {tail}" if tail else "")
        r.error = msg[:300]
    if not r.ok or cpu_start is None:
        return r
    # CPU per transaction over the steady window: from the first progress report
    # (connections made, pools warm) to the last one. When connecting ate most
    # of a short run and that window is under a second, the whole run is used.
    if len(samples) >= 2 and samples[-1][0] - samples[0][0] >= 0.99:
        txns = 0.0
        for (t0, _, _), (t1, tps, _) in zip(samples, samples[1:]):
            txns += tps * (t1 - t0)
        ticks = samples[-1][2] - samples[0][2]
    else:
        txns, ticks = r.txns or 0, cpu_end - cpu_start
    if txns > 0:
        r.cpu_us = ticks / T.CLK_TCK * 1e6 / txns
    return r


def _kill(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _remove_logs(log_dir):
    for n in os.listdir(log_dir):
        if n.startswith("tx."):
            os.unlink(os.path.join(log_dir, n))


def read_latency_logs(log_dir):
    """Latencies in µs of every completed transaction in pgbench -l files under log_dir.

    A line is "client_id transaction_no time script_no time_epoch time_us [...]";
    failed or skipped transactions (time not a number) are left out."""
    out = []
    for n in sorted(os.listdir(log_dir)):
        if not n.startswith("tx."):
            continue
        with open(os.path.join(log_dir, n)) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 4 or not parts[2].isdigit():
                    continue
                out.append(int(parts[2]))
    return out


def percentile(values, q):
    """The q-th percentile (0-100) of values, nearest rank; None when empty."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))
    return v[k]


# ---------------------------------------------------------------------------
# Levee's pool mode


async def _probe(port):
    a = b = None
    try:
        a = await PgConn.connect(T.HOST, port, T.BENCH_USER, T.BENCH_PASSWORD, T.BENCH_DB, 5)
        pa = await a.query("SELECT pg_backend_pid()", 5)
        b = await PgConn.connect(T.HOST, port, T.BENCH_USER, T.BENCH_PASSWORD, T.BENCH_DB, 5)
        pb = await b.query("SELECT pg_backend_pid()", 5)
        pa2 = await a.query("SELECT pg_backend_pid()", 5)
        return pa == pb == pa2, f"backend pids {pa[0][0]}, {pb[0][0]}, {pa2[0][0]}"
    finally:
        for c in (a, b):
            if c is not None:
                c.close()


def probe_transaction_mode(st, pg, binary):
    """(works, reason): does Levee serve two open clients with one server in transaction mode?"""
    t = T.Levee(st, pg, binary, "transaction", 1, workers=1, tag="levee-probe")
    try:
        t.start()
    except Exception as exc:  # noqa: BLE001 - the answer is "no", with the reason
        t.stop()  # a Levee that never answered may still run, and holds its ports
        return False, f"Levee did not start with pool_mode = transaction: {exc}"
    try:
        ok, why = asyncio.run(_probe(t.port))
        if ok:
            return True, f"probe: two open clients shared one server ({why})"
        return False, f"probe: clients did not share the server ({why})"
    except asyncio.TimeoutError:
        return False, ("probe: with pool_size = 1 a second open client was not served "
                       "within 5 s (session pooling)")
    except Exception as exc:  # noqa: BLE001
        return False, f"probe failed: {exc!r}"
    finally:
        t.stop()


# ---------------------------------------------------------------------------
# Idle connections


async def _hold_idle(port, n, concurrency=200):
    conns, errors = [], []
    sem = asyncio.Semaphore(concurrency)

    async def one():
        async with sem:
            try:
                conns.append(await PgConn.connect(T.HOST, port, T.BENCH_USER, T.BENCH_PASSWORD,
                                                  T.BENCH_DB, 60))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(repr(exc))
    await asyncio.gather(*(one() for _ in range(n)))
    return conns, errors


def idle_test(target, n):
    """Opens n idle clients through target; returns a dict of figures."""
    pid = target.main_pid()

    async def body():
        # One client first, so that whatever the proxy sets up lazily for the
        # first login (a server connection, its parameters) is in the baseline.
        first = await PgConn.connect(T.HOST, target.port, T.BENCH_USER, T.BENCH_PASSWORD,
                                     T.BENCH_DB, 30)
        await first.query("SELECT 1")
        first.close()
        base = T.rss_kib(pid)
        t0 = time.monotonic()
        conns, errors = await _hold_idle(target.port, n)
        opened = time.monotonic() - t0
        try:
            held = T.rss_kib(pid)
            # They are real sessions: a sample of them still answers.
            sample = random.sample(conns, min(50, len(conns)))
            answers = await asyncio.gather(*(c.query("SELECT 1", 30) for c in sample),
                                           return_exceptions=True)
            good = sum(1 for a in answers if a == [("1",)])
            servers = target.pg.connection_count(dbname=T.BENCH_DB, user=T.BENCH_USER)
        finally:
            for c in conns:
                c.close()
        return {"clients": len(conns), "errors": errors, "base_kib": base, "held_kib": held,
                "per_client_kib": (held - base) / len(conns) if conns else None,
                "sample_ok": f"{good}/{len(sample)}", "servers": servers,
                "open_s": opened}
    return asyncio.run(body())


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(need, soft)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------
# Report


def fmt(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def median_of(runs, attr):
    vals = [getattr(r, attr) for r in runs if r.ok and getattr(r, attr) is not None]
    return statistics.median(vals) if vals else None


def cell(runs, attr, digits=0):
    """Median over the ok runs; marks partial failure as 'x (k/n ok)' and total as 'failed'."""
    if not runs:
        return "—"
    ok = [r for r in runs if r.ok]
    if not ok:
        return "hung" if any(r.hung for r in runs) else "error"
    v = fmt(median_of(runs, attr), digits)
    if len(ok) < len(runs):
        v += f" ({len(ok)}/{len(runs)} ok)"
    return v


def target_note(value, target, op, fmt_value):
    """'**met**' / 'not met' / 'not measured' for a printed target (a figure, not an assertion)."""
    if value is None:
        return "not measured"
    met = value >= target if op == ">=" else value <= target if op == "<=" else value < target
    return f"{fmt_value(value)} ({'met' if met else 'not met'})"


def header_lines(ctx, title, started, extra_versions=("pgpool", "postgres"),
                 sharing="PostgreSQL, the proxies and pgbench"):
    """The title and the machine / version lines every report starts with."""
    m, v = ctx["machine"], ctx["versions"]
    L = [f"# {title}, {started:%Y-%m-%d %H:%M:%S}", ""]
    L.append(f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram']} RAM, Linux {m['kernel']} "
             f"({sharing} share it)")
    L.append(f"- Levee: {v['levee']}")
    L.append("- " + "; ".join(v[k] for k in extra_versions if k in v))
    return L


def run_lines(ctx, started, finished):
    """The command and wall-time lines that end every report's header."""
    return [f"- Command: `{ctx['command']}`",
            f"- Wall time: {(finished - started).total_seconds() / 60:.1f} min; load average "
            f"(1/5/15 min) {ctx['machine']['loadavg']} at the start, {ctx['loadavg_end']} at "
            f"the end"]


def runs_table_head(columns, rounds):
    """The two head lines of an "every run" table: columns, then one per round."""
    return ["| " + " | ".join(columns + [f"round {i + 1}" for i in range(rounds)]) + " |",
            "|" + "---|" * len(columns) + "---:|" * rounds]


def failed_runs(results, labels, describe_key):
    """'- <target>, <describe_key(key)> round <i>: <error>' for every failed run of
    results ({key: {target: [Run]}})."""
    return [f"- {labels[t]}, {describe_key(key)} round {i + 1}: {r.error}"
            for key, per in results.items() for t, runs in per.items()
            for i, r in enumerate(runs) if not r.ok]


def publish(prog, started, suffix, quick, report):
    """Writes bench/results/<time>[-<suffix>][-quick].md, prints the report and where it went."""
    out_dir = os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    name = f"{started:%Y%m%d-%H%M%S}" + (f"-{suffix}" if suffix else "") + \
        ("-quick" if quick else "")
    path = os.path.join(out_dir, name + ".md")
    with open(path, "w") as f:
        f.write(report + "\n")
    log("")
    log(report)
    log(f"{prog}: results written to {os.path.relpath(path, ROOT)}")


def base_context(cfg, wrapper, quick_flag):
    """What every report's header starts from: the machine, the versions, and how the run
    was started (the BENCH_* settings, wrapper, --quick when it was given, the binary)."""
    command = " ".join([f"{k}={os.environ[k]}" for k in sorted(os.environ)
                        if k.startswith("BENCH_")] +
                       [wrapper] + (["--quick"] if quick_flag else []) + [cfg.levee_binary])
    return {"machine": machine_info(), "versions": versions(cfg.levee_binary),
            "command": command}


def render(cfg, ctx, results, idle, started, finished):
    L = []
    custom = any(k.startswith("BENCH_") and k != "BENCH_QUICK" for k in os.environ)
    label = ("QUICK MODE" if cfg.quick else "full run") + (", custom settings" if custom else "")
    L.append(f"# Levee benchmark, {started:%Y-%m-%d %H:%M:%S} ({label})")
    L.append("")
    m = ctx["machine"]
    L.append(f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram']} RAM, Linux {m['kernel']}")
    v = ctx["versions"]
    L.append(f"- Levee: {v['levee']}")
    L.append(f"- {v['pgbouncer']}; {v['pgpool']}; {v['postgres']}")
    pgs = ctx["pg"]
    L.append(f"- PostgreSQL: shared_buffers {pgs['shared_buffers']}, max_connections "
             f"{pgs['max_connections']}, fsync {pgs['fsync']}, synchronous_commit off, "
             f"full_page_writes off (durability off: this measures the proxies, not the disk); "
             f"client auth {pgs['auth']}")
    L.append(f"- Data: pgbench -i -s {SCALE}, run once, directly")
    L.append(f"- Runs: {cfg.seconds} s each, {cfg.rounds} rounds, targets interleaved "
             f"({' → '.join(cfg.targets)}) within each round; pgbench -j = min(clients, "
             f"{cfg.nproc}), -j = clients for -M prepared; medians over rounds")
    L.append(f"- Levee: pool_mode **{ctx['levee_mode']}**, pool_size {ctx['levee_pool_size']}, "
             f"workers {cfg.levee_workers or 'auto'} ({cfg.levee_workers or cfg.nproc}), "
             f"auth md5. {ctx['levee_mode_reason']}")
    if "pgbouncer" in cfg.targets:
        L.append(f"- PgBouncer: pool_mode transaction, default_pool_size {cfg.pool_size}, "
                 f"auth md5")
    if "pgpool" in cfg.targets:
        L.append(f"- Pgpool-II: raw mode + connection_cache (connection pooling mode), "
                 f"num_init_children {ctx['pgpool_children']}, max_pool 1, load_balance off, "
                 f"auth md5 (pool_passwd)")
    L += run_lines(ctx, started, finished)
    L.append("")

    names = {"levee": "Levee", "pgbouncer": "PgBouncer", "pgpool": "Pgpool-II",
             "direct": "direct"}
    cols = cfg.targets
    L.append(f"## Throughput: median tps over {cfg.rounds} rounds")
    L.append("")
    hdr = ["workload", "protocol", "clients"] + [names[c] for c in cols]
    rat = []
    if "levee" in cols:
        rat = [c for c in ("pgbouncer", "pgpool", "direct") if c in cols]
        hdr += [f"Levee/{names[c]}" for c in rat]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(hdr) - 3)) + "|")
    for (w, p, c), per in results.items():
        row = [w, p, str(c)] + [cell(per.get(t, []), "tps") for t in cols]
        lv = median_of(per.get("levee", []), "tps")
        row += [ratio(lv, median_of(per.get(t, []), "tps")) for t in rat]
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    proxies = [t for t in cols if t != "direct"]
    if proxies:
        L.append("## Proxy CPU per transaction: median µs/txn (utime+stime of the proxy "
                 "process tree over the steady part of each run)")
        L.append("")
        hdr = ["workload", "protocol", "clients"] + [names[t] for t in proxies]
        if "levee" in proxies and "pgbouncer" in proxies:
            hdr.append("Levee/PgBouncer")
        if "levee" in proxies and "pgpool" in proxies:
            hdr.append("Levee/Pgpool-II")
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(hdr) - 3)) + "|")
        for (w, p, c), per in results.items():
            row = [w, p, str(c)] + [cell(per.get(t, []), "cpu_us", 1) for t in proxies]
            lv = median_of(per.get("levee", []), "cpu_us")
            if "levee" in proxies and "pgbouncer" in proxies:
                row.append(ratio(lv, median_of(per.get("pgbouncer", []), "cpu_us")))
            if "levee" in proxies and "pgpool" in proxies:
                row.append(ratio(lv, median_of(per.get("pgpool", []), "cpu_us")))
            L.append("| " + " | ".join(row) + " |")
        L.append("")

    L.append("## Idle clients: memory per connection")
    L.append("")
    if idle.get("skipped"):
        for why in idle["skipped"]:
            L.append(f"- {why}")
        L.append("")
    rows = [(k, v) for k, v in idle.items() if k != "skipped"]
    if rows:
        L.append("| proxy | idle clients held | RSS before (KiB) | RSS with clients (KiB) | "
                 "KiB per client | server connections | sample of clients answering | "
                 "time to open |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for k, d in rows:
            if "error" in d:
                L.append(f"| {names[k]} | failed: {d['error']} | | | | | | |")
                continue
            L.append(f"| {names[k]} | {d['clients']:,} | {d['base_kib']:,} | {d['held_kib']:,} | "
                     f"{fmt(d['per_client_kib'], 2)} | {d['servers']} | {d['sample_ok']} | "
                     f"{d['open_s']:.1f} s |")
        for k, d in rows:
            if d.get("errors"):
                L.append(f"- {names[k]}: {len(d['errors'])} connections failed, first: "
                         f"{d['errors'][0]}")
        L.append("")

    fails = failed_runs(results, names, lambda k: f"{k[0]} {k[1]} c={k[2]}")
    if fails:
        L.append("## Failed runs")
        L.append("")
        L.extend(fails)
        L.append("")

    L.append("## Every run (tps / proxy µs per txn / pgbench latency ms)")
    L.append("")
    L += runs_table_head(["workload", "protocol", "clients", "target"], cfg.rounds)
    for (w, p, c), per in results.items():
        for t in cols:
            runs = per.get(t, [])
            cells = []
            for r in runs:
                if r.ok:
                    cells.append(f"{fmt(r.tps)} / {fmt(r.cpu_us, 1)} / {fmt(r.latency_ms, 2)}")
                elif r.hung:
                    cells.append("hung")
                elif r.error.startswith("not run"):
                    cells.append("not run")
                else:
                    cells.append("error")
            L.append(f"| {w} | {p} | {c} | {names[t]} | " + " | ".join(cells) + " |")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------
# What every benchmark's main() does alike


def parse_command(argv, prog, tools):
    """(levee binary, --quick given) from `argv[0] [--quick] /abs/path/to/levee`.

    -h / --help prints the usage and the script's docstring; other arguments exit
    with the usage (status 2); a binary or one of tools that is not an executable
    exits with a message."""
    usage = f"usage: {argv[0]} [--quick] /abs/path/to/levee"
    args = argv[1:]
    if "-h" in args or "--help" in args:
        print(usage + "\n\n" + (sys.modules["__main__"].__doc__ or "").strip())
        sys.exit(0)
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    if len(args) != 1:
        print(usage, file=sys.stderr)
        sys.exit(2)
    binary = os.path.abspath(args[0])
    if not os.access(binary, os.X_OK):
        sys.exit(f"{prog}: {binary} is not an executable (run `make` first)")
    for tool in tools:
        if not os.access(tool, os.X_OK):
            sys.exit(f"{prog}: {tool} not found (tools/install-deps.sh installs it)")
    return binary, quick


def new_stack(cfg):
    """A Stack, with the Levee under test copied into it; cfg.levee_binary then names the
    copy. The whole run uses one build, even if build/levee is rebuilt meanwhile (a proxy
    restarted after a hang must be the same program)."""
    st = stk.Stack()
    binary = os.path.join(st.dir, "levee-under-test")
    shutil.copy2(cfg.levee_binary, binary)
    cfg.levee_binary = binary
    return st


def start_targets(makers, names, live, prog, unavailable=None):
    """Starts makers[name]() for each of names, in order; returns {name: started target}.

    Each target goes into live (which the caller stops in its finally) before it
    starts. Without `unavailable` a target that fails to start fails the run;
    with it (a dict) that target is stopped, left out, and its first error line
    recorded there under its name, and the others go on."""
    tg = {}
    for name in names:
        t = makers[name]()
        live.append(t)
        try:
            t.start()
        except T.TargetError as exc:
            if unavailable is None:
                raise
            live.remove(t)
            t.stop()
            unavailable[name] = str(exc).splitlines()[0][:300]
            log(f"{prog}: {t.label} not available: {unavailable[name]}")
            continue
        tg[name] = t
        log(f"{prog}: {t.label} on port {t.port}")
    return tg


def after_run(t, r, prog):
    """After a measured run r through t: fails the benchmark when the proxy died; after a
    hung run starts it afresh, so that whatever state the hang left behind (servers stuck
    in a transaction, queued clients) does not spill into the next runs."""
    if not r.ok and t.proc is not None and t.proc.poll() is not None:
        raise RuntimeError(f"{t.label} died:\n{t.log_tail()}")
    if r.hung and t.proc is not None:
        t.stop()
        t.start()
        log(f"{prog}: {t.label} restarted after a hung run; now on port {t.port}")


def run_main(main, prog):
    """Runs main(sys.argv) as a benchmark's entry point and exits with its status: 130 on
    Ctrl-C, 1 when something could not be started or died (main's finally has stopped
    everything it started by then)."""
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
    except (T.TargetError, stk.StackError, RuntimeError, TimeoutError) as exc:
        print(f"{prog}: error: {exc}\n{prog}: everything started was stopped", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------------------
# Main


def main(argv):
    binary, quick = parse_command(argv, "bench", (PGBENCH, T.PGBOUNCER, T.PGPOOL, T.PSQL))
    cfg = Settings(binary, quick)

    started = datetime.datetime.now()
    nofile = raise_nofile(cfg.idle_clients + 1000)
    if cfg.idle_clients and nofile < cfg.idle_clients + 200:
        n = max(0, nofile - 200)
        log(f"bench: open-file limit is {nofile}; idle test lowered from "
            f"{cfg.idle_clients} to {n} clients")
        cfg.idle_clients = n

    ctx = dict(base_context(cfg, "bench/run.sh", quick), pgpool_children=max(cfg.clients) + 8)
    log(f"bench: {'QUICK MODE: ' if cfg.quick else ''}{cfg.seconds} s runs, {cfg.rounds} rounds, "
        f"clients {cfg.clients}, protocols {cfg.protocols}, workloads {cfg.workloads}")
    m = ctx["machine"]
    log(f"bench: machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram']}")

    st = new_stack(cfg)
    live = []
    results = {}
    idle = {"skipped": []}
    try:
        log("bench: starting PostgreSQL")
        pg, ctx["pg"] = start_postgres(st)
        log(f"bench: PostgreSQL on port {pg.port}; pgbench -i -s {SCALE}")
        pgbench_init(pg)

        # Levee's pool mode.
        if cfg.levee_mode == "auto":
            works, why = probe_transaction_mode(st, pg, cfg.levee_binary)
            mode = "transaction" if works else "session"
            reason = (f"Transaction pooling detected ({why})." if works else
                      f"**Transaction pooling not available yet** ({why}); Levee runs in "
                      f"session mode.")
        else:
            mode, reason = cfg.levee_mode, f"Forced by BENCH_LEVEE_MODE={cfg.levee_mode}."
        if mode == "session":
            # A session-mode client keeps its server until it disconnects, so a
            # pool smaller than the client count would leave pgbench's extra
            # clients waiting forever: give every client its own server.
            pool = max(max(cfg.clients), cfg.pool_size)
            reason += (f" In session mode each client holds a server connection, so Levee's "
                       f"pool_size is {pool} (one server per client) where PgBouncer has "
                       f"{cfg.pool_size}: Levee's figures are then not a like-for-like "
                       f"pooling comparison.")
        else:
            pool = cfg.pool_size
        ctx.update(levee_mode=mode, levee_pool_size=pool, levee_mode_reason=reason)
        log(f"bench: Levee pool_mode {mode}, pool_size {pool}: {reason}")

        makers = {
            "levee": lambda: T.Levee(st, pg, cfg.levee_binary, mode, pool, cfg.levee_workers),
            "pgbouncer": lambda: T.PgBouncer(st, pg, cfg.pool_size),
            "pgpool": lambda: T.Pgpool(st, pg, ctx["pgpool_children"]),
            "direct": lambda: T.Direct(st, pg),
        }
        tg = start_targets(makers, cfg.targets, live, "bench")

        # Warm-up, not recorded: pools filled, tables cached.
        for name in cfg.targets:
            r = run_pgbench(tg[name], "select-only", "simple", max(cfg.clients), 3, cfg.nproc)
            log(f"bench: warm-up {tg[name].label}: "
                f"{fmt(r.tps) + ' tps' if r.ok else 'FAILED: ' + r.error}")

        combos = [(w, p, c) for w in cfg.workloads for p in cfg.protocols for c in cfg.clients]
        total = len(combos) * cfg.rounds * len(cfg.targets)
        k = 0
        for (w, p, c) in combos:
            per = results.setdefault((w, p, c), {})
            for rnd in range(cfg.rounds):
                for name in cfg.targets:
                    k += 1
                    hung = next((i for i, x in enumerate(per.get(name, [])) if x.hung), None)
                    if hung is not None:
                        # A hang costs a timeout and a restart every time;
                        # one is enough to report.
                        r = Run()
                        r.error = f"not run: hung in round {hung + 1}"
                        per.setdefault(name, []).append(r)
                        log(f"[{k}/{total}] {w} {p} c={c} round {rnd + 1} {tg[name].label}: "
                            f"{r.error}")
                        continue
                    if w == "tpcb-like":
                        reset_tpcb(pg)
                    r = run_pgbench(tg[name], w, p, c, cfg.seconds, cfg.nproc)
                    per.setdefault(name, []).append(r)
                    what = (f"{fmt(r.tps)} tps, {fmt(r.latency_ms, 2)} ms" if r.ok
                            else f"FAILED: {r.error}")
                    if r.ok and r.cpu_us is not None:
                        what += f", proxy {r.cpu_us:.1f} µs/txn"
                    log(f"[{k}/{total}] {w} {p} c={c} round {rnd + 1} {tg[name].label}: {what}")
                    after_run(tg[name], r, "bench")

        for t in live:
            t.stop()
        live.clear()

        # Idle clients.
        if cfg.idle_clients <= 0:
            idle["skipped"].append("Idle test skipped (BENCH_IDLE_CLIENTS=0).")
        else:
            idle_targets = []
            if mode == "transaction":
                idle_targets.append(("levee", lambda: T.Levee(
                    st, pg, cfg.levee_binary, "transaction", cfg.pool_size, cfg.levee_workers,
                    tag="levee-idle")))
            else:
                idle["skipped"].append(
                    f"Levee skipped: {cfg.idle_clients:,} idle clients need transaction pooling "
                    f"(in session mode each client holds a server connection), and Levee runs "
                    f"in session mode here (see the Levee line above for why).")
            idle_targets.append(("pgbouncer", lambda: T.PgBouncer(st, pg, cfg.pool_size,
                                                                   tag="pgbouncer-idle")))
            for name, make in idle_targets:
                t = make()
                live.append(t)
                try:
                    t.start()
                    log(f"bench: idle test: {cfg.idle_clients:,} clients through {t.label}")
                    d = idle_test(t, cfg.idle_clients)
                    idle[name] = d
                    log(f"bench: {t.label}: {d['clients']:,} held, RSS {d['base_kib']:,} → "
                        f"{d['held_kib']:,} KiB = {fmt(d['per_client_kib'], 2)} KiB/client, "
                        f"{d['servers']} server connections, {len(d['errors'])} failed")
                except Exception as exc:  # noqa: BLE001 - a figure, not an assertion
                    idle[name] = {"error": str(exc).splitlines()[0][:200]}
                    log(f"bench: idle test through {t.label} failed: {exc}")
                finally:
                    t.stop()
                    live.remove(t)
    finally:
        for t in reversed(live):
            t.stop()
        st.stop()

    finished = datetime.datetime.now()
    ctx["loadavg_end"] = loadavg()
    publish("bench", started, "", cfg.quick, render(cfg, ctx, results, idle, started, finished))
    return 0


if __name__ == "__main__":
    run_main(main, "bench")
