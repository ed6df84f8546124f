#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Throwaway servers for Levee's tests and `make run`.

A Stack owns one base directory (/tmp/levee-stack-XXXX) and everything started
in it: a PostgreSQL 15 primary, any number of streaming replicas made with
pg_basebackup -R, and a Redis 7 server. Every server listens on 127.0.0.1 on a
port picked with bind(0) and held by a PortLock (a file lock in
/tmp/levee-ports), so parallel runs (pytest-xdist workers, a `make run` next
to a `make check`) never collide.

PostgreSQL refuses to run as root, so when this runs as root the data
directories belong to, and the servers run as, the `postgres` OS user; as any
other user they run as that user.

Lifetimes: a Stack stops what it started when stop() is called, at interpreter
exit (atexit, which SIGINT's KeyboardInterrupt reaches) and on SIGTERM/SIGHUP
(a handler stops everything, then dies of the signal), then removes its directory
unless LEVEE_KEEP_STACK=1. Redis is a child process with a parent-death signal,
so it dies with us even on SIGKILL; PostgreSQL is daemonised by pg_ctl, so a
stack whose owner was killed with SIGKILL is left behind: `stack.py reap`
(which the test suite runs at start) stops such orphans.

Library use:

    st = Stack()
    pg = st.start_primary()
    r1 = st.start_replica()
    rd = st.start_redis()
    pg.sql("SELECT 1")  ->  [(1,)]

CLI:

    python3 tools/stack.py up --replicas 1 --redis --json [--ports N]
        starts, prints one JSON line describing the stack, and waits for a signal
    python3 tools/stack.py reap
        stops stacks whose owner process is gone
"""

import argparse
import atexit
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

try:
    import filelock
except ImportError:  # pragma: no cover - install-deps.sh provides it
    filelock = None

PG_BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PSQL = os.environ.get("PSQL", "/usr/bin/psql")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
HOST = "127.0.0.1"
SUPERUSER = "postgres"
SUPERPASS = "postgres"
PORT_LOCK_DIR = "/tmp/levee-ports"
STACK_PREFIX = "levee-stack-"


class StackError(Exception):
    pass


def wait_until(predicate, timeout=10.0, interval=0.05, message=None):
    """Polls predicate() until it returns a true value, which is returned.

    Exceptions raised by predicate count as "not yet". Raises TimeoutError
    after timeout seconds, naming the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Ports


class PortLock:
    """A free loopback TCP port, reserved by a file lock until release().

    The port is found with bind(0); the lock file makes every other PortLock
    (in any process) skip it while we hold it. The kernel does not know about
    the lock, so the owner must bind the port soon.
    """

    def __init__(self):
        os.makedirs(PORT_LOCK_DIR, exist_ok=True)
        try:
            os.chmod(PORT_LOCK_DIR, 0o1777)
        except PermissionError:
            pass
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((HOST, 0))
                port = s.getsockname()[1]
            lock = filelock.FileLock(os.path.join(PORT_LOCK_DIR, f"{port}.lock"))
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                continue
            self.port = port
            self._lock = lock
            return
        raise StackError("could not find a free port")

    def release(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __int__(self):
        return self.port

    def __repr__(self):
        return f"PortLock({self.port})"


# ---------------------------------------------------------------------------
# Running things as the server user


def _server_user():
    """(uid, gid, name) the servers run as: postgres when we are root."""
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        return pw.pw_uid, pw.pw_gid, pw.pw_name
    return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name


def _run(cmd, *, as_server=False, check=True, timeout=120, env=None, cwd=None):
    """Runs cmd, returns CompletedProcess; raises StackError with its output on failure."""
    kwargs = {}
    full_env = dict(os.environ)
    full_env.pop("PGPASSWORD", None)
    if env:
        full_env.update(env)
    if as_server and os.geteuid() == 0:
        uid, gid, name = _server_user()
        kwargs.update(user=uid, group=gid, extra_groups=[])
        full_env.update(HOME=cwd or "/tmp", USER=name, LOGNAME=name)
    # A session of its own: the terminal's Ctrl-C does not reach the servers
    # directly, and an interrupted initdb is killed with the postgres --boot
    # child it runs (subprocess.run would kill initdb alone).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, env=full_env, cwd=cwd,
                            start_new_session=True, **kwargs)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, None)
    if check and proc.returncode != 0:
        raise StackError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out}")
    return result


_libc = None


def _set_pdeathsig():
    """preexec_fn: the child gets SIGKILL when the thread that started it dies."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid):
    """Pids whose parent is pid (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


# ---------------------------------------------------------------------------
# PostgreSQL


class Postgres:
    """One PostgreSQL server (primary or streaming replica) in datadir."""

    def __init__(self, stack, name, port_lock, *, primary=None, max_connections=300,
                 host_auth="scram-sha-256"):
        self.stack = stack
        self.name = name
        self._port_lock = port_lock
        self.port = port_lock.port
        self.host = HOST
        self.datadir = os.path.join(stack.dir, name)
        self.logfile = os.path.join(stack.dir, f"{name}.log")
        self.primary = primary  # the Postgres we replicate from, or None
        self.max_connections = max_connections
        self.host_auth = host_auth
        self.running = False
        self.hba_changed = False
        self.conf_changed = False
        self.user = SUPERUSER
        self.password = SUPERPASS
        self._conn = None
        self._conn_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------

    @property
    def is_replica(self):
        return os.path.exists(os.path.join(self.datadir, "standby.signal"))

    def _pg_ctl(self, *args, check=True, timeout=120):
        return _run([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.datadir, *args],
                    as_server=True, check=check, timeout=timeout, cwd=self.stack.dir)

    def init_primary(self):
        pwfile = os.path.join(self.stack.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(SUPERPASS + "\n")
        self.stack._chown(pwfile)
        _run([os.path.join(PG_BINDIR, "initdb"), "-D", self.datadir, "-U", SUPERUSER,
              f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "-N", "--no-instructions",
              "-A", "trust"], as_server=True, cwd=self.stack.dir)
        os.unlink(pwfile)
        self._write_conf({
            "listen_addresses": f"'{HOST}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.stack.dir}'",
            "max_connections": str(self.max_connections),
            "shared_buffers": "'64MB'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "wal_keep_size": "'256MB'",
            "hot_standby": "on",
            "wal_retrieve_retry_interval": "'100ms'",
            "shared_preload_libraries": "'pg_stat_statements'",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d/%a '",
            "log_connections": "on",
            "log_disconnections": "on",
            "log_min_messages": "warning",
        }, "postgresql.conf")
        self.set_hba(None)

    def init_replica(self):
        p = self.primary
        _run([os.path.join(PG_BINDIR, "pg_basebackup"), "-h", HOST, "-p", str(p.port),
              "-U", SUPERUSER, "-D", self.datadir, "-R", "-X", "stream", "-c", "fast", "-N"],
             as_server=True, cwd=self.stack.dir)
        # postgresql.auto.conf is read last, so these win over the copied primary's values.
        self._write_conf({
            "port": str(self.port),
            "primary_conninfo": (f"'host={HOST} port={p.port} user={SUPERUSER} "
                                 f"application_name={self.name}'"),
        }, "postgresql.auto.conf")

    def _write_conf(self, settings, filename):
        path = os.path.join(self.datadir, filename)
        with open(path, "a") as f:
            f.write("\n# levee stack\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")

    def hba_lines(self):
        return [
            "local all all trust",
            "local replication all trust",
            f"host replication all {HOST}/32 trust",
            f"host all all {HOST}/32 {self.host_auth}",
        ]

    def set_hba(self, lines=None, reload=False):
        """Rewrites pg_hba.conf (None: the default rules) and optionally reloads."""
        self.hba_changed = lines is not None
        path = os.path.join(self.datadir, "pg_hba.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines if lines is not None else self.hba_lines()) + "\n")
        self.stack._chown(path)
        if reload:
            self.reload()

    def alter_system(self, **settings):
        """ALTER SYSTEM SET each setting, then reload; reset_config() undoes it."""
        for k, v in settings.items():
            self.sql(f"ALTER SYSTEM SET {k} = '{v}'")
            self.altered = getattr(self, "altered", set()) | {k}
        self.conf_changed = True
        self.sql("SELECT pg_reload_conf()")

    def reset_config(self):
        """Undoes set_hba() and alter_system() (what a test changed) and reloads."""
        if not (self.hba_changed or self.conf_changed):
            return
        if self.hba_changed:
            self.set_hba(None)
        if self.conf_changed:
            # Only what tests set: RESET ALL would also drop the primary_conninfo
            # that pg_basebackup -R wrote for a replica, and stop its streaming.
            for k in sorted(getattr(self, "altered", set())):
                self.sql(f"ALTER SYSTEM RESET {k}")
            self.altered = set()
            self.conf_changed = False
        self.reload()

    def start(self):
        self._pg_ctl("-l", self.logfile, "-w", "-t", "60", "start")
        self.running = True
        return self

    def stop(self, mode="fast"):
        """Stops the server (pg_ctl -m mode); a no-op when it is not running."""
        self._close_conn()
        if not os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self.running = False
            return
        self._pg_ctl("-m", mode, "-w", "-t", "60", "stop", check=False)
        self.running = False

    def restart(self, mode="fast"):
        self._close_conn()
        self._pg_ctl("-m", mode, "-l", self.logfile, "-w", "-t", "60", "restart")
        self.running = True

    def reload(self):
        self._pg_ctl("reload")

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def kill(self):
        """kill -9 the postmaster and wait until it and its children are gone."""
        self._close_conn()
        pid = self.postmaster_pid()
        if pid is None:
            self.running = False
            return
        kids = _children(pid)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _pid_alive(pid), 10, message="postmaster to die")
        # Backends notice the postmaster's death on their own; the next start
        # needs them gone (they hold the shared memory).
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not any(_pid_alive(k) for k in kids), 10,
                   message="backends to exit")
        # Until init reaps the dead postmaster its pid still exists (a zombie),
        # and the next postmaster would take the lock files for a live server.
        for lock in (os.path.join(self.datadir, "postmaster.pid"),
                     os.path.join(self.stack.dir, f".s.PGSQL.{self.port}.lock")):
            try:
                os.unlink(lock)
            except FileNotFoundError:
                pass
        self.running = False

    def promote(self):
        """Turns a replica into a primary and waits until it accepts writes."""
        self._pg_ctl("-w", "-t", "60", "promote")
        wait_until(lambda: not self.sql("SELECT pg_is_in_recovery()")[0][0], 30,
                   message=f"{self.name} to leave recovery")
        self.primary = None

    def ensure_running(self):
        """Starts the server if a test left it stopped or killed."""
        if self.postmaster_pid() is None:
            self.start()

    # -- SQL ---------------------------------------------------------------

    def dsn(self, dbname="postgres", user=None, password=None):
        """A libpq connection string (superuser by default)."""
        if user is None:
            user, password = self.user, self.password
        dsn = f"host={HOST} port={self.port} dbname={dbname} user={user}"
        return dsn + (f" password={password}" if password is not None else "")

    def connect(self, dbname="postgres", user=None, password=None, autocommit=True, **kw):
        """A new psycopg connection straight to this server (superuser by default)."""
        import psycopg
        kw.setdefault("connect_timeout", 10)
        if user is None:
            user, password = self.user, self.password
        return psycopg.connect(host=HOST, port=self.port, dbname=dbname, user=user,
                               password=password, autocommit=autocommit, **kw)

    def _close_conn(self):
        with self._conn_lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001
                    pass
                self._conn = None

    def sql(self, query, params=None, dbname="postgres", user=None, password=None):
        """Runs one statement in autocommit; returns all rows ([] when none).

        Superuser connections to "postgres" are cached and re-opened when broken.
        """
        if dbname != "postgres" or user is not None:
            with self.connect(dbname, user, password) as conn:
                cur = conn.execute(query, params)
                return cur.fetchall() if cur.description else []
        with self._conn_lock:
            for attempt in (0, 1):
                if self._conn is None or self._conn.closed:
                    self._conn = self.connect()
                try:
                    cur = self._conn.execute(query, params)
                    return cur.fetchall() if cur.description else []
                except Exception:
                    broken = self._conn.broken or self._conn.closed
                    if not broken or attempt:
                        raise
                    self._conn = None
        raise AssertionError("unreachable")

    def psql(self, sql, dbname="postgres", user=None, password=None, check=True):
        """Runs psql -At -c sql; returns its stdout."""
        env = {"PGPASSWORD": password if user else self.password}
        proc = _run([PSQL, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p",
                     str(self.port), "-U", user or self.user, "-d", dbname, "-c", sql],
                    env=env, check=check)
        return proc.stdout

    def connection_count(self, dbname=None, user=None):
        """Client backends connected now (not counting the helper's own connection)."""
        q = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
             "AND pid <> pg_backend_pid()")
        params = []
        if dbname is not None:
            q += " AND datname = %s"
            params.append(dbname)
        if user is not None:
            q += " AND usename = %s"
            params.append(user)
        return self.sql(q, params)[0][0]

    def wait_streaming(self, replica, timeout=30):
        """Waits until this primary shows replica streaming in pg_stat_replication."""
        wait_until(lambda: self.sql(
            "SELECT state FROM pg_stat_replication WHERE application_name = %s",
            (replica.name,)) == [("streaming",)], timeout,
            message=f"{replica.name} to stream from {self.name}")

    def wait_replayed(self, replica, timeout=30):
        """Waits until replica has replayed everything the primary has written so far."""
        lsn = self.sql("SELECT pg_current_wal_insert_lsn()")[0][0]
        wait_until(lambda: replica.sql(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0], timeout,
            message=f"{replica.name} to replay {lsn}")

    # -- logs --------------------------------------------------------------

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def describe(self):
        return {"name": self.name, "host": HOST, "port": self.port, "datadir": self.datadir,
                "log": self.logfile, "replica": self.is_replica}


# ---------------------------------------------------------------------------
# Redis


class Redis:
    """One redis-server child process, persistence off unless appendonly=True."""

    def __init__(self, stack, port_lock, appendonly=False):
        self.stack = stack
        self._port_lock = port_lock
        self.port = port_lock.port
        self.host = HOST
        self.dir = os.path.join(stack.dir, "redis")
        self.logfile = os.path.join(stack.dir, "redis.log")
        self.appendonly = appendonly
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)

    @property
    def url(self):
        return f"redis://{HOST}:{self.port}/0"

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return self
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "",
               "--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no",
               "--dir", self.dir, "--logfile", self.logfile,
               "--pidfile", os.path.join(self.dir, "redis.pid")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, preexec_fn=_set_pdeathsig)
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(str(self.proc.pid))

        def ping():
            if self.proc.poll() is not None:
                raise StackError(f"redis-server exited {self.proc.returncode}:\n"
                                 + self.log_tail())
            return self.client().ping()
        try:
            wait_until(ping, 15, message="redis PING")
        except TimeoutError as exc:
            raise StackError(f"{exc}\n{self.log_tail()}") from None
        return self

    def client(self, **kw):
        import redis as redis_py
        kw.setdefault("socket_timeout", 5)
        return redis_py.Redis(host=HOST, port=self.port, **kw)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def ensure_running(self):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            self.start()

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=20):
        return "\n".join(self.log().splitlines()[-lines:])

    def describe(self):
        return {"host": HOST, "port": self.port, "url": self.url, "log": self.logfile}


# ---------------------------------------------------------------------------
# Stack


_live_stacks = []
_handlers_installed = False
_stopping = False


def _cleanup_all():
    global _stopping
    _stopping = True
    for st in list(_live_stacks):
        st.stop()


def _on_signal(signum, frame):
    # An exception, not a cleanup here: subprocess.run() kills the child it is
    # waiting for (initdb, pg_ctl), and pytest runs its teardown for it.
    if not _stopping:
        raise KeyboardInterrupt(f"signal {signum}")


def _install_handlers():
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    atexit.register(_cleanup_all)
    # SIGINT is left alone: Python already turns it into KeyboardInterrupt,
    # and a background job of a non-interactive shell ignores it, which is
    # what that shell wants. SIGTERM and SIGHUP become KeyboardInterrupt too.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_IGN:
            continue
        signal.signal(sig, _on_signal)


class Stack:
    """A base directory and the servers started in it."""

    def __init__(self, base=None, keep=None):
        _install_handlers()
        self.keep = os.environ.get("LEVEE_KEEP_STACK") == "1" if keep is None else keep
        self.dir = None
        self.primary = None
        self.replicas = []
        self.redis = None
        self.extra_ports = []
        self._stopped = False
        self._lock = threading.Lock()
        _live_stacks.append(self)
        self.dir = tempfile.mkdtemp(prefix=STACK_PREFIX, dir=base or "/tmp")
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        os.chmod(self.dir, 0o755)
        self._chown(self.dir)

    def _chown(self, path):
        if os.geteuid() == 0:
            uid, gid, _ = _server_user()
            os.chown(path, uid, gid)

    def start_primary(self, max_connections=300, host_auth="scram-sha-256"):
        """initdb + start; host_auth is the pg_hba method for TCP logins."""
        assert self.primary is None
        self.primary = Postgres(self, "pg0", PortLock(), max_connections=max_connections,
                                host_auth=host_auth)
        self.primary.init_primary()
        return self.primary.start()

    def start_replica(self, primary=None):
        """pg_basebackup -R from primary (default: the stack's primary), start, wait streaming."""
        primary = primary or self.primary
        name = f"pg{1 + len(self.replicas)}"
        rep = Postgres(self, name, PortLock(), primary=primary,
                       max_connections=primary.max_connections, host_auth=primary.host_auth)
        rep.init_replica()
        rep.start()
        self.replicas.append(rep)
        primary.wait_streaming(rep)
        return rep

    def start_redis(self, appendonly=False):
        assert self.redis is None
        self.redis = Redis(self, PortLock(), appendonly=appendonly)
        return self.redis.start()

    def reserve_port(self):
        """A PortLock held for the stack's lifetime (for Levee's own listeners)."""
        lock = PortLock()
        self.extra_ports.append(lock)
        return lock.port

    def servers(self):
        out = [s for s in [self.primary, *self.replicas] if s is not None]
        return out

    def stop(self):
        """Stops everything (replicas first), releases ports, removes the directory. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self.redis is not None:
            self.redis.stop()
        for pg in reversed(self.servers()):
            try:
                pg.stop(mode="immediate")
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"stack: stopping {pg.name}: {exc}", file=sys.stderr)
        for lock in [s._port_lock for s in self.servers()] + \
                ([self.redis._port_lock] if self.redis else []) + self.extra_ports:
            lock.release()
        if not self.keep and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _live_stacks:
            _live_stacks.remove(self)

    def describe(self):
        return {
            "dir": self.dir,
            "superuser": SUPERUSER,
            "password": SUPERPASS,
            "primary": self.primary.describe() if self.primary else None,
            "replicas": [r.describe() for r in self.replicas],
            "redis": self.redis.describe() if self.redis else None,
            "ports": [p.port for p in self.extra_ports],
        }


def reap(base="/tmp", verbose=False):
    """Stops stacks under base whose owner process no longer exists. Returns their dirs."""
    reaped = []
    for entry in sorted(os.listdir(base)):
        if not entry.startswith(STACK_PREFIX):
            continue
        d = os.path.join(base, entry)
        try:
            with open(os.path.join(d, "owner.pid")) as f:
                owner = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        for sub in sorted(os.listdir(d), reverse=True):
            datadir = os.path.join(d, sub)
            if os.path.exists(os.path.join(datadir, "postmaster.pid")):
                _run([os.path.join(PG_BINDIR, "pg_ctl"), "-D", datadir, "-m", "immediate",
                      "-w", "stop"], as_server=True, check=False, cwd=d)
        try:
            with open(os.path.join(d, "redis", "redis.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(d, ignore_errors=True)
        reaped.append(d)
        if verbose:
            print(f"stack: reaped {d}", file=sys.stderr)
    return reaped


# ---------------------------------------------------------------------------
# CLI


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a stack, print it, wait for a signal")
    up.add_argument("--replicas", type=int, default=0)
    up.add_argument("--redis", action="store_true")
    up.add_argument("--appendonly", action="store_true", help="Redis appendonly yes")
    up.add_argument("--ports", type=int, default=0, help="extra free ports to reserve")
    up.add_argument("--max-connections", type=int, default=300)
    up.add_argument("--host-auth", default="scram-sha-256",
                    help="pg_hba method for TCP logins (trust, md5, scram-sha-256)")
    up.add_argument("--json", action="store_true", help="print one JSON line")
    sub.add_parser("reap", help="stop stacks whose owner process is gone")
    args = ap.parse_args(argv)

    if args.cmd == "reap":
        reap(verbose=True)
        return 0

    st = None
    try:
        st = Stack()
        st.start_primary(max_connections=args.max_connections, host_auth=args.host_auth)
        for _ in range(args.replicas):
            st.start_replica()
        if args.redis:
            st.start_redis(appendonly=args.appendonly)
        for _ in range(args.ports):
            st.reserve_port()
        desc = st.describe()
        if args.json:
            print(json.dumps(desc), flush=True)
        else:
            print(f"stack in {st.dir}:", flush=True)
            for pg in st.servers():
                print(f"  {pg.name}: {pg.dsn()}", flush=True)
            if st.redis:
                print(f"  redis: {st.redis.url}", flush=True)
        # Our reader may go away; never write to stdout again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        _cleanup_all()


if __name__ == "__main__":
    sys.exit(main())
