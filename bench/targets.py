# SPDX-License-Identifier: ISC
"""The things a benchmark connects to: Levee, PgBouncer, Pgpool-II, or PostgreSQL directly.

Each proxy runs in the foreground as a child process in a session of its own
(so a terminal's Ctrl-C reaches only the driver, which then stops it in
order), with a parent-death signal so that it dies with the driver even when
the driver is killed with SIGKILL. PgBouncer refuses to run as root, so when
the driver is root PgBouncer and Pgpool-II run as the `postgres` OS user (the
one tools/stack.py runs PostgreSQL as); Levee runs as the invoking user.

A Target owns its work directory (inside the Stack's directory, removed with
it), its config files and its process, from start() until stop(). stop() is
idempotent and never raises.

Extra config: Levee takes extra [levee] lines and extra sections (placed
before [database bench], which stays last so that routing.py can append to
it); Pgpool takes extra lines appended to pgpool.conf (later lines win).
Levee.metrics() reads its /metrics; Pgpool.pool_cache() its SHOW POOL_CACHE.

CPU accounting: cpu_ticks() sums utime+stime+cutime+cstime over the process
and all its descendants (/proc/<pid>/stat), so Pgpool-II's pre-forked
children count, and a child reaped mid-run still counts (in its parent's
cutime).
"""

import os
import re
import signal
import subprocess
import urllib.request

import stack as stk

HOST = stk.HOST
PSQL = stk.PSQL
PGBOUNCER = os.environ.get("PGBOUNCER", "/usr/sbin/pgbouncer")
PGPOOL = os.environ.get("PGPOOL", "/usr/sbin/pgpool")

BENCH_USER = "bench"
BENCH_PASSWORD = "bench"
BENCH_DB = "bench"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"
# Levee's auth_file and PgBouncer's userlist.txt: the same format.
USERS_FILE = f'"{BENCH_USER}" "{BENCH_PASSWORD}"\n"{ADMIN_USER}" "{ADMIN_PASSWORD}"\n'


class TargetError(Exception):
    pass


# ---------------------------------------------------------------------------
# /proc


def _stat_fields(pid):
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid is [1])."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_tree(root):
    """root and all its live descendants, from one scan of /proc."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent_of[int(entry)] = int(_stat_fields(entry)[1])
            except (OSError, IndexError, ValueError):
                continue
    children = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids):
    """Sum of utime+stime+cutime+cstime (clock ticks) over pids; vanished pids count 0."""
    total = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        # utime, stime, cutime, cstime are stat fields 14-17: [11..14] here.
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    """VmRSS of pid in KiB (from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TargetError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------------------
# helpers


def psql(port, sql, user=BENCH_USER, password=BENCH_PASSWORD, dbname=BENCH_DB, timeout=15):
    """Runs psql -At -c sql against 127.0.0.1:port; returns (ok, output)."""
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
    try:
        p = subprocess.run([PSQL, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p",
                            str(port), "-U", user, "-d", dbname, "-c", sql],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "psql timed out"
    return p.returncode == 0, p.stdout.strip()


def _server_ids():
    """(uid, gid) the helper servers run as: postgres when we are root, else ourselves."""
    uid, gid, _ = stk._server_user()
    return uid, gid


def _chown_tree(path):
    if os.geteuid() != 0:
        return
    uid, gid = _server_ids()
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for n in filenames:
            os.chown(os.path.join(dirpath, n), uid, gid)


def _write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """{(name, ((label, value), ...sorted)): float} from Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL_RE.findall(m.group(2) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            continue
    return out


def metric(snap, name, **labels):
    """Sum of the series of name whose labels include labels; None when there is none."""
    total, seen = 0.0, False
    for (n, lab), v in snap.items():
        if n != name:
            continue
        d = dict(lab)
        if all(d.get(k) == want for k, want in labels.items()):
            total += v
            seen = True
    return total if seen else None


def series_deltas(before, after, keep):
    """{'name{label="value",...}': after - before} for every series of after whose name
    keep(name) accepts (a series missing from before counts from 0)."""
    out = {}
    for (name, labels), v in after.items():
        if keep(name):
            key = name + ("{" + ",".join(f'{k}="{x}"' for k, x in labels) + "}"
                          if labels else "")
            out[key] = v - before.get((name, labels), 0.0)
    return out


def metric_delta(before, after, name, **labels):
    a, b = metric(after, name, **labels), metric(before, name, **labels)
    if a is None:
        return None
    return a - (b or 0.0)


def histogram_quantile(before, after, name, q):
    """(lower, upper) bounds in seconds of the bucket holding the q-quantile (0-1)
    of the observations made between two snapshots; None without observations."""
    buckets = {}
    for (n, lab), v in after.items():
        if n != name + "_bucket":
            continue
        d = dict(lab)
        le = d.pop("le", None)
        if le is None:
            continue
        prev = before.get((n, lab), 0.0)
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + v - prev
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    lower = 0.0
    for b in bounds:
        if buckets[b] >= q * total:
            return (lower, b)
        lower = b
    return (lower, bounds[-1])


# ---------------------------------------------------------------------------
# Targets


class Target:
    """Base: something pgbench connects to at 127.0.0.1:port."""

    name = "?"
    label = "?"

    def __init__(self, st):
        self.st = st
        self.port = None
        self.proc = None
        self.logfile = None
        self.note = ""
        self._locks = []  # PortLocks held from start() until stop()

    # CPU of the proxy process tree; None for PostgreSQL direct.
    def cpu_ticks(self):
        if self.proc is None:
            return None
        return cpu_ticks(process_tree(self.proc.pid))

    def main_pid(self):
        return self.proc.pid if self.proc else None

    def _spawn(self, cmd, cwd, as_server):
        self.logfile = os.path.join(cwd, f"{self.name}.log")
        kwargs = {}
        if as_server and os.geteuid() == 0:
            uid, gid = _server_ids()
            kwargs.update(user=uid, group=gid, extra_groups=[])
        log = open(self.logfile, "ab")
        try:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=stk._set_pdeathsig, **kwargs)
        finally:
            log.close()

    def _wait_ready(self, probe, timeout=60):
        """Polls probe() -> (ok, output) until ok; a TargetError when the process exits
        first (at once, not after timeout) or timeout passes."""
        try:
            stk.wait_until(lambda: self.proc.poll() is not None or probe()[0], timeout, 0.1,
                           message=f"{self.label} to answer")
        except TimeoutError as exc:
            raise TargetError(f"{exc}\n{self.log_tail()}") from None
        if self.proc.poll() is not None:
            raise TargetError(f"{self.label} exited with status {self.proc.returncode}:\n"
                              + self.log_tail())

    def log_tail(self, lines=30):
        try:
            with open(self.logfile, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-lines:])
        except (OSError, TypeError):
            return ""

    def stop_signal(self):
        return signal.SIGTERM

    def stop(self, timeout=20):
        """Stops the process group: the polite signal, then SIGKILL after timeout; releases the
        ports start() took. Never raises."""
        p, self.proc = self.proc, None
        if p is not None:
            try:
                if p.poll() is None:
                    os.killpg(p.pid, self.stop_signal())
                    try:
                        p.wait(timeout)
                    except subprocess.TimeoutExpired:
                        pass
                # Children (Pgpool-II's) may outlive the leader for a moment.
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
            except Exception as exc:  # noqa: BLE001 - stopping must go on
                print(f"bench: stopping {self.label}: {exc}", flush=True)
        while self._locks:
            self._locks.pop().release()

    def _new_port(self):
        """A free loopback port, held (stk.PortLock) until stop()."""
        lock = stk.PortLock()
        self._locks.append(lock)
        return lock.port


class Direct(Target):
    name = "direct"
    label = "PostgreSQL (direct)"

    def __init__(self, st, pg):
        super().__init__(st)
        self.pg = pg
        self.port = pg.port

    def start(self):
        return self


class Levee(Target):
    name = "levee"
    label = "Levee"

    def __init__(self, st, pg, binary, pool_mode, pool_size, workers=0, tag="levee",
                 auth_type="md5", levee_lines="", sections="", label=None):
        super().__init__(st)
        self.pg = pg
        self.binary = binary
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.workers = workers
        self.tag = tag
        self.auth_type = auth_type
        self.levee_lines = levee_lines  # extra "key = value" lines for [levee]
        self.sections = sections        # extra sections, before [database bench]
        self.http_port = None
        if label is not None:
            self.name = tag
            self.label = label

    def start(self):
        d = os.path.join(self.st.dir, self.tag)
        os.makedirs(d, exist_ok=True)
        port = self.port = self._new_port()
        self.http_port = self._new_port()
        _write(os.path.join(d, "users.txt"), USERS_FILE)
        conf = os.path.join(d, "levee.ini")
        _write(conf, f"""; written by bench/targets.py
[levee]
listen = {HOST}:{port}
http_listen = {HOST}:{self.http_port}
workers = {self.workers}
auth_file = users.txt
auth_type = {self.auth_type}
admin_users = {ADMIN_USER}
log_level = warning
max_client_conn = 20000
{self.levee_lines}
[pool]
pool_mode = {self.pool_mode}
pool_size = {self.pool_size}

{self.sections}
[database {BENCH_DB}]
primary = {HOST}:{self.pg.port}
""")
        self.conf = conf
        if self.levee_lines or self.sections:
            # A Levee that does not know a section fails here with its own
            # message (file:line), not with a timeout.
            p = subprocess.run([self.binary, "--check-config", "-c", conf], cwd=d,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=30)
            if p.returncode != 0:
                self.stop()
                raise TargetError(f"{self.label}: levee --check-config refused the config: "
                                  + " | ".join(p.stdout.strip().splitlines()[:3]))
        self._spawn([self.binary, "-c", conf], d, as_server=False)
        self._wait_ready(lambda: psql(port, "SHOW VERSION", ADMIN_USER, ADMIN_PASSWORD, "levee"))
        return self

    def metrics(self, timeout=10):
        """A parse_prometheus() snapshot of Levee's /metrics."""
        with urllib.request.urlopen(f"http://{HOST}:{self.http_port}/metrics",
                                    timeout=timeout) as resp:
            return parse_prometheus(resp.read().decode("utf-8", "replace"))


class PgBouncer(Target):
    name = "pgbouncer"
    label = "PgBouncer"

    def __init__(self, st, pg, pool_size=16, tag="pgbouncer"):
        super().__init__(st)
        self.pg = pg
        self.pool_size = pool_size
        self.tag = tag

    def start(self):
        d = os.path.join(self.st.dir, self.tag)
        os.makedirs(d, exist_ok=True)
        port = self.port = self._new_port()
        _write(os.path.join(d, "userlist.txt"), USERS_FILE)
        conf = os.path.join(d, "pgbouncer.ini")
        _write(conf, f"""; written by bench/targets.py
[databases]
{BENCH_DB} = host={HOST} port={self.pg.port} dbname={BENCH_DB}

[pgbouncer]
listen_addr = {HOST}
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {d}/userlist.txt
admin_users = {ADMIN_USER}
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = 20000
max_db_connections = 0
log_connections = 0
log_disconnections = 0
pidfile = {d}/pgbouncer.pid
""")
        _chown_tree(d)
        self._spawn([PGBOUNCER, conf], d, as_server=True)
        self._wait_ready(lambda: psql(port, "SHOW VERSION", ADMIN_USER, ADMIN_PASSWORD,
                                      "pgbouncer"))
        return self


class Pgpool(Target):
    name = "pgpool"
    label = "Pgpool-II"

    def __init__(self, st, pg, children, tag="pgpool", extra_conf="", label=None):
        super().__init__(st)
        self.pg = pg
        self.children = children
        self.tag = tag
        self.extra_conf = extra_conf  # appended to pgpool.conf; later lines win
        if label is not None:
            self.name = tag
            self.label = label

    def stop_signal(self):
        return signal.SIGINT  # fast shutdown; SIGTERM waits for clients

    def start(self):
        d = os.path.join(self.st.dir, self.tag)
        os.makedirs(os.path.join(d, "oiddir"), exist_ok=True)
        port = self.port = self._new_port()
        pcp_port = self._new_port()
        _write(os.path.join(d, "pool_passwd"),
               f"{BENCH_USER}:TEXT{BENCH_PASSWORD}\n{ADMIN_USER}:TEXT{ADMIN_PASSWORD}\n")
        _write(os.path.join(d, "pool_hba.conf"),
               "local all all trust\nhost all all 127.0.0.1/32 md5\n")
        _write(os.path.join(d, "pcp.conf"), "")
        conf = os.path.join(d, "pgpool.conf")
        _write(conf, f"""# written by bench/targets.py: connection pooling, one backend
backend_clustering_mode = 'raw'
listen_addresses = '{HOST}'
port = {port}
socket_dir = '{d}'
pcp_listen_addresses = ''
pcp_port = {pcp_port}
pcp_socket_dir = '{d}'
backend_hostname0 = '{HOST}'
backend_port0 = {self.pg.port}
backend_weight0 = 1
backend_flag0 = 'DISALLOW_TO_FAILOVER'
enable_pool_hba = on
pool_passwd = 'pool_passwd'
allow_clear_text_frontend_auth = off
num_init_children = {self.children}
max_pool = 1
child_life_time = 0
child_max_connections = 0
connection_life_time = 0
client_idle_limit = 0
connection_cache = on
load_balance_mode = off
replicate_select = off
health_check_period = 0
sr_check_period = 0
failover_on_backend_error = off
use_watchdog = off
memory_cache_enabled = off
memqcache_oiddir = '{d}/oiddir'
wd_ipc_socket_dir = '{d}'
pid_file_name = '{d}/pgpool.pid'
logdir = '{d}'
log_destination = 'stderr'
log_min_messages = warning
log_connections = off
listen_backlog_multiplier = 2
{self.extra_conf}""")
        _chown_tree(d)
        self._spawn([PGPOOL, "-n", "-D", "-f", conf, "-F", os.path.join(d, "pcp.conf"),
                     "-a", os.path.join(d, "pool_hba.conf")], d, as_server=True)
        self._wait_ready(lambda: psql(port, "SELECT 1"))
        return self

    def pool_cache(self):
        """SHOW POOL_CACHE as {column: value} (numbers where they parse), {} when it fails."""
        import psycopg
        try:
            with psycopg.connect(host=HOST, port=self.port, user=BENCH_USER,
                                 password=BENCH_PASSWORD, dbname=BENCH_DB, autocommit=True,
                                 connect_timeout=10) as c:
                cur = c.execute("SHOW POOL_CACHE")
                row = cur.fetchone()
                cols = [d.name for d in cur.description]
        except Exception:  # noqa: BLE001 - a figure, not an assertion
            return {}
        out = {}
        for k, v in zip(cols, row or []):
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                out[k] = v
        return out



def pgpool_memqcache_conf(total_size="256MB", expire=60, max_num_cache=1000000,
                          block_size="1MB", maxcache="400kB"):
    """pgpool.conf lines that turn on the in-memory query cache (shared memory)."""
    return f"""# bench: in-memory query cache
memory_cache_enabled = on
memqcache_method = 'shmem'
memqcache_total_size = {total_size}
memqcache_max_num_cache = {max_num_cache}
memqcache_expire = {expire}
memqcache_auto_cache_invalidation = on
memqcache_maxcache = {maxcache}
memqcache_cache_block_size = {block_size}
"""
