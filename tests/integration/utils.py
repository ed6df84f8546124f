# SPDX-License-Identifier: ISC
"""Helpers for Levee's integration tests.

- Levee: one levee process started from levee_test.ini with real ports,
  plus clients for it (psycopg connections, the admin console, /metrics).
- Metrics: a parsed Prometheus text exposition.
- RawConn: a PostgreSQL wire-protocol client on a plain socket, for the
  tests that must send what no driver sends (bad lengths, bad types, cancel
  requests, a client that stops half-way).
- wait_until()/stays_true(): polling instead of sleeping.

The servers themselves (PostgreSQL, replicas, Redis, PortLock) live in
tools/stack.py so that `make run` uses the same code.
"""

import base64
import contextlib
import hashlib
import hmac
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tools"))

import stack as stackmod  # noqa: E402
from stack import PortLock, wait_until  # noqa: E402,F401

LEVEE_BIN = os.environ.get("LEVEE_BIN", str(REPO / "build" / "levee"))
LEVEE_SAN = os.environ.get("LEVEE_SAN") == "1"
# Sanitizer builds start and run slower.
SLOW = 3 if LEVEE_SAN else 1
START_TIMEOUT = 10 * SLOW
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# Users the suite knows: PostgreSQL roles made by conftest.py and the
# default auth_file of every Levee. "admin" exists only in Levee.
USERS = {"app": "app", "scram_user": "scram_pass", "admin": "admin"}


def levee_env():
    """The environment levee runs with (sanitizer options under LEVEE_SAN=1)."""
    env = dict(os.environ)
    if LEVEE_SAN:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    return env


def stays_true(predicate, duration, interval=0.05):
    """True if predicate() holds on every poll for duration seconds.

    For asserting that something does NOT happen (a connection is not opened,
    a query does not finish); returns False at the first poll where it fails.
    """
    deadline = time.monotonic() + duration
    while True:
        if not predicate():
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(interval)


def md5_secret(user, password):
    """The "md5..." form PostgreSQL and auth_file use."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def make_cert(directory):
    """A self-signed certificate for CN=localhost and IP 127.0.0.1; returns (cert, key)."""
    directory = Path(directory)
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.chmod(key, 0o600)
    return str(cert), str(key)


# ---------------------------------------------------------------------------
# INI files


def parse_ini(text):
    """{section: {key: value}} in file order; comments dropped."""
    sections = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        key, _, value = line.partition("=")
        if current is None:
            raise ValueError(f"key outside a section: {raw!r}")
        current[key.strip()] = value.strip()
    return sections


def merge_ini(sections, overrides):
    """A copy of sections with overrides applied.

    overrides is {section: {key: value}}; a value of None removes the key and
    a section of None removes the section. Values are converted with str().
    """
    out = {name: dict(keys) for name, keys in sections.items()}
    for name, keys in (overrides or {}).items():
        if keys is None:
            out.pop(name, None)
            continue
        target = out.setdefault(name, {})
        for key, value in keys.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = str(value)
    return out


def render_ini(sections):
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {v}" for k, v in keys.items())
        lines.append("")
    return "\n".join(lines)


def merge_overrides(*layers):
    """Combines override dicts; later layers win key by key."""
    out = {}
    for layer in layers:
        for name, keys in (layer or {}).items():
            if keys is None:
                out[name] = None
            else:
                if out.get(name) is None:
                    out[name] = {}
                out[name].update(keys)
    return out


# ---------------------------------------------------------------------------
# Prometheus text


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(v):
    return v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


class Metrics:
    """A parsed /metrics page.

    m.types maps each family to its # TYPE; m.samples maps
    (sample_name, frozenset(labels)) to a float. m.get() wants the exact
    label set; m.sum() adds every sample whose labels include the given ones.
    """

    def __init__(self, text):
        self.text = text
        self.types = {}
        self.samples = {}
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3].strip()
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                raise ValueError(f"bad metrics line: {line!r}")
            labels = {}
            if m.group(3):
                pos = 0
                body = m.group(3)
                while pos < len(body):
                    lm = _LABEL_RE.match(body, pos)
                    if not lm:
                        raise ValueError(f"bad labels in: {line!r}")
                    labels[lm.group(1)] = _unescape(lm.group(2))
                    pos = lm.end()
            self.samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))

    @property
    def families(self):
        return set(self.types)

    def names(self):
        return {name for name, _ in self.samples}

    def get(self, name, **labels):
        return self.samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))

    def sum(self, name, **labels):
        want = {(k, str(v)) for k, v in labels.items()}
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)

    def labels(self, name):
        """The label sets seen for a sample name, as dicts."""
        return [dict(ls) for (n, ls) in self.samples if n == name]


# ---------------------------------------------------------------------------
# Levee


class HttpResponse:
    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")


class AdminResult(list):
    """Rows of an admin-console command as dicts, plus .columns in order."""

    def __init__(self, columns, rows):
        super().__init__(dict(zip(columns, r)) for r in rows)
        self.columns = columns


class LeveeError(Exception):
    pass


class Levee:
    """One levee process.

    The config is levee_test.ini with real ports and paths, merged with
    overrides ({section: {key: value}}). The process's stdout and stderr go
    to self.log_path (logfile is left empty so Levee logs to stderr, and
    sanitizer reports land in the same file).
    """

    def __init__(self, workdir, pg, redis=None, replicas=(), overrides=None, users=None,
                 bin_path=None, name="levee"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pg = pg
        self.redis = redis
        self.replicas = list(replicas)
        self.bin = bin_path or LEVEE_BIN
        self.name = name
        self._port_locks = [PortLock(), PortLock()]
        self.port = self._port_locks[0].port
        self.http_port = self._port_locks[1].port
        self.host = "127.0.0.1"
        self.ini_path = self.workdir / f"{name}.ini"
        self.auth_path = self.workdir / f"{name}-users.txt"
        self.log_path = self.workdir / f"{name}.log"
        self.users = dict(USERS if users is None else users)
        self.overrides = merge_overrides(overrides)
        self.proc = None
        self._log_file = None
        self._expect_exit = False
        self._conns = []
        self.write_config()

    # -- config ------------------------------------------------------------

    def base_settings(self):
        text = (HERE / "levee_test.ini").read_text()
        subst = {
            "LEVEE_PORT": self.port,
            "HTTP_PORT": self.http_port,
            "PG_PORT": self.pg.port,
            "REDIS_PORT": self.redis.port if self.redis else 0,
            "AUTH_FILE": self.auth_path,
        }
        for k, v in subst.items():
            text = text.replace(f"@{k}@", str(v))
        sections = parse_ini(text)
        if self.redis is None:
            sections["levee"].pop("redis", None)
        if self.replicas:
            reps = ", ".join(f"127.0.0.1:{r.port}" for r in self.replicas)
            for name in sections:
                if name.startswith("database "):
                    sections[name]["replicas"] = reps
        return sections

    def settings(self):
        return merge_ini(self.base_settings(), self.overrides)

    def write_config(self, text=None):
        """Writes the ini (rendered settings, or text verbatim) and the auth file."""
        self.ini_path.write_text(text if text is not None else render_ini(self.settings()))
        self.auth_path.write_text("".join(f'"{u}" "{p}"\n' for u, p in self.users.items()))

    def set_overrides(self, overrides):
        self.overrides = merge_overrides(self.overrides, overrides)
        self.write_config()

    # -- process -----------------------------------------------------------

    def env(self):
        return levee_env()

    def start(self, timeout=START_TIMEOUT):
        """Starts levee -c ini and waits until SHOW VERSION answers on the admin console."""
        if not os.access(self.bin, os.X_OK):
            raise LeveeError(f"LEVEE_BIN {self.bin} is not an executable; build it with make")
        if self._log_file is None:
            self._log_file = open(self.log_path, "ab")
        self._expect_exit = False
        self.proc = subprocess.Popen([self.bin, "-c", str(self.ini_path)], cwd=self.workdir,
                                     stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=self.env(),
                                     preexec_fn=stackmod._set_pdeathsig)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                raise LeveeError(f"levee exited with {self.proc.returncode} while starting:\n"
                                 + self.log_tail(40))
            try:
                rows = self.admin("SHOW VERSION")
                if rows and str(rows[0].get("version", "")).startswith("Levee "):
                    return self
                last = f"unexpected SHOW VERSION answer {rows!r}"
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = exc
            if time.monotonic() >= deadline:
                raise LeveeError(f"levee not ready after {timeout}s (last: {last!r}):\n"
                                 + self.log_tail(40))
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        """Signals levee; an exit after it is expected from now on."""
        if sig not in (signal.SIGHUP,):
            self._expect_exit = True
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=10):
        """Waits for the process to exit; returns its returncode or raises TimeoutError."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"levee still running {timeout}s later") from None

    def stop(self, sig=signal.SIGTERM, timeout=10 * SLOW):
        """Stops levee with sig (SIGKILL after timeout); returns the returncode.

        Raises LeveeError if it needed SIGKILL."""
        self.close_conns()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise LeveeError(f"levee did not exit within {timeout}s of signal {sig}")
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    @contextlib.contextmanager
    def run_with_config(self, overrides):
        """Restarts levee with overrides applied for the with-block, then with the old settings."""
        was_running = self.is_running()
        saved = self.overrides
        self.stop()
        self.overrides = merge_overrides(saved, overrides)
        self.write_config()
        try:
            self.start()
            yield self
        finally:
            self.stop()
            self.overrides = saved
            self.write_config()
            if was_running:
                self.start()

    def reload(self, overrides=None, timeout=10 * SLOW, text=None):
        """Applies overrides (or writes text verbatim), sends SIGHUP and waits until
        levee_config_reloads_total moves. Returns the labels of the reload counter
        that moved (e.g. {"result": "ok"})."""
        before = self.metrics()
        if text is not None:
            self.write_config(text)
        else:
            self.set_overrides(overrides or {})
        self.proc.send_signal(signal.SIGHUP)

        def moved():
            m = self.metrics()
            for labels in m.labels("levee_config_reloads_total"):
                now = m.get("levee_config_reloads_total", **labels)
                if now > (before.get("levee_config_reloads_total", **labels) or 0):
                    return labels
            return None
        return wait_until(moved, timeout, message="levee_config_reloads_total to move")

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise LeveeError("no VmRSS")

    def cleanup(self):
        """Fixture teardown: stop with SIGTERM, check it exited and left no sanitizer reports."""
        problems = []
        try:
            if self.proc is not None:
                rc_before = self.proc.poll()
                if rc_before is not None and not self._expect_exit:
                    problems.append(f"levee exited during the test with status {rc_before}")
                try:
                    rc = self.stop(signal.SIGTERM)
                except LeveeError as exc:
                    problems.append(str(exc))
                    rc = None
                if rc is not None and rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL,
                                                              signal.SIGINT):
                    problems.append(f"levee died of signal {-rc}")
            if LEVEE_SAN:
                bad = [ln for ln in self.log().splitlines()
                       if any(mark in ln for mark in SANITIZER_MARKERS)]
                if bad:
                    problems.append("sanitizer reports:\n" + "\n".join(bad[:20]))
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            for lock in self._port_locks:
                lock.release()
        if problems:
            raise LeveeError("; ".join(problems) + "\n--- log tail ---\n" + self.log_tail(60))

    # -- clients -----------------------------------------------------------

    def conninfo(self, **kw):
        """Keyword arguments for psycopg.connect() through levee (app/app on app by default)."""
        info = {"host": self.host, "port": self.port, "dbname": "app", "user": "app",
                "connect_timeout": 10 * SLOW}
        info.update(kw)
        if "password" not in kw and info["user"] in self.users:
            info["password"] = self.users[info["user"]]
        return info

    def dsn(self, **kw):
        """A libpq connection string (for psql and pgbench)."""
        return " ".join(f"{k}={v}" for k, v in self.conninfo(**kw).items())

    def conn(self, **kw):
        """A psycopg connection through levee (autocommit unless told otherwise);
        closed at teardown if the test does not close it."""
        import psycopg
        kw.setdefault("autocommit", True)
        c = psycopg.connect(**self.conninfo(**kw))
        self._conns.append(c)
        return c

    async def aconn(self, **kw):
        import psycopg
        kw.setdefault("autocommit", True)
        return await psycopg.AsyncConnection.connect(**self.conninfo(**kw))

    def close_conns(self):
        for c in self._conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self._conns = []

    def sql(self, query, params=None, **kw):
        """Runs one statement on a new connection through levee; returns its rows."""
        import psycopg
        kw.setdefault("autocommit", True)
        with psycopg.connect(**self.conninfo(**kw)) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else []

    def admin(self, command, user="admin", password=None):
        """Runs an admin-console command (simple protocol, autocommit)."""
        import psycopg
        if command.strip().upper().startswith("SHUTDOWN"):
            self._expect_exit = True
        info = self.conninfo(dbname="levee", user=user, autocommit=True,
                             cursor_factory=psycopg.ClientCursor)
        if password is not None:
            info["password"] = password
        with psycopg.connect(**info) as c:
            cur = c.execute(command)
            if cur.description is None:
                return AdminResult([], [])
            return AdminResult([d.name for d in cur.description], cur.fetchall())

    def psql(self, *args, check=True, input=None, **kw):
        """Runs psql against levee; returns CompletedProcess (text)."""
        return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", self.dsn(**kw), *args],
                              input=input, capture_output=True, text=True, check=check,
                              timeout=60 * SLOW)

    def http_get(self, path, timeout=5 * SLOW):
        url = f"http://{self.host}:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return HttpResponse(r.status, r.read(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return HttpResponse(e.code, e.read(), dict(e.headers))

    def metrics(self):
        r = self.http_get("/metrics")
        if r.status != 200:
            raise LeveeError(f"/metrics answered {r.status}")
        return Metrics(r.text)

    # -- logs --------------------------------------------------------------

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def log_contains(self, text):
        return text in self.log()

    def log_matches(self, pattern):
        return re.search(pattern, self.log(), re.M)

    def wait_log(self, text, timeout=10 * SLOW):
        return wait_until(lambda: self.log_contains(text), timeout,
                          message=f"{text!r} in the levee log")


# ---------------------------------------------------------------------------
# Raw protocol


PROTOCOL_3 = 196608
SSL_REQUEST_CODE = 80877103
CANCEL_REQUEST_CODE = 80877102
GSSENC_REQUEST_CODE = 80877104


def startup_packet(user="app", database="app", version=PROTOCOL_3, **params):
    body = struct.pack("!I", version)
    for k, v in {"user": user, "database": database, **params}.items():
        body += k.encode() + b"\0" + str(v).encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request():
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def cancel_request(pid, key):
    return struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, key)


def message(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def query_message(sql):
    return message(b"Q", sql.encode() + b"\0")


def error_fields(body):
    """ErrorResponse/NoticeResponse body -> {"C": sqlstate, "M": message, ...}."""
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def split_messages(data):
    """Splits backend bytes into (type, body) pairs; a trailing partial message is dropped."""
    out = []
    pos = 0
    while pos + 5 <= len(data):
        kind = data[pos:pos + 1]
        (length,) = struct.unpack("!I", data[pos + 1:pos + 5])
        if length < 4 or pos + 1 + length > len(data):
            break
        out.append((kind, data[pos + 5:pos + 1 + length]))
        pos += 1 + length
    return out


class RawConn:
    """A PostgreSQL frontend on a plain TCP socket."""

    def __init__(self, port, host="127.0.0.1", timeout=5 * SLOW):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self._buf = b""
        self.backend_pid = None
        self.backend_key = None
        self.params = {}
        self.last_error = None
        self.auth_codes = []  # authentication request codes seen (5 md5, 10 SASL, ...)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self._buf += chunk

    def recv_bytes(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self._buf) < n:
            self._fill(deadline)
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def recv_msg(self, timeout=None):
        """The next backend message as (type, body); EOFError when the server closed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self._buf) < 5:
            self._fill(deadline)
        (length,) = struct.unpack("!I", self._buf[1:5])
        if length < 4:
            raise ValueError(f"bad length {length} from server")
        while len(self._buf) < 1 + length:
            self._fill(deadline)
        kind, body = self._buf[:1], self._buf[5:1 + length]
        self._buf = self._buf[1 + length:]
        return kind, body

    def read_until_closed(self, timeout=None):
        """Reads until EOF. Returns (bytes, closed): closed is False when the
        timeout passed with the connection still open."""
        deadline = time.monotonic() + (timeout or self.timeout)
        data, self._buf = self._buf, b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return data, False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return data, False
            except ConnectionResetError:
                return data, True
            if not chunk:
                return data, True
            data += chunk

    def expect_closed(self, timeout=None):
        """Reads until EOF and returns the messages received; fails if still open."""
        data, closed = self.read_until_closed(timeout)
        assert closed, f"connection still open after {timeout or self.timeout}s; got {data!r}"
        return split_messages(data)

    def startup(self, user="app", database="app", **params):
        self.send(startup_packet(user, database, **params))

    def login(self, user="app", password="app", database="app", **params):
        """Startup plus whatever authentication the server asks for, up to ReadyForQuery.

        Returns the list of messages after authentication (ParameterStatus,
        BackendKeyData, ReadyForQuery). Raises AssertionError on an ErrorResponse.
        """
        self.startup(user, database, **params)
        self.authenticate(user, password)
        msgs = []
        while True:
            kind, body = self.recv_msg()
            msgs.append((kind, body))
            if kind == b"E":
                self.last_error = error_fields(body)
                raise AssertionError(f"login failed: {self.last_error}")
            if kind == b"K":
                self.backend_pid, self.backend_key = struct.unpack("!II", body)
            if kind == b"S":
                k, v = body[:-1].split(b"\0", 1)
                self.params[k.decode()] = v.decode()
            if kind == b"Z":
                return msgs

    def authenticate(self, user, password, pending=None):
        """Answers authentication requests until AuthenticationOk. pending is
        an authentication request the caller already read with recv_msg()."""
        while True:
            kind, body = pending if pending is not None else self.recv_msg()
            pending = None
            if kind == b"E":
                self.last_error = error_fields(body)
                raise AssertionError(f"authentication failed: {self.last_error}")
            assert kind == b"R", f"expected an authentication request, got {kind!r}"
            (code,) = struct.unpack("!I", body[:4])
            self.auth_codes.append(code)
            if code == 0:
                return
            if code == 3:
                self.send(message(b"p", password.encode() + b"\0"))
            elif code == 5:
                salt = body[4:8]
                inner = hashlib.md5((password + user).encode()).hexdigest()
                outer = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
                self.send(message(b"p", outer.encode() + b"\0"))
            elif code == 10:
                mechs = body[4:].split(b"\0")
                assert b"SCRAM-SHA-256" in mechs, mechs
                self._scram(password)
            else:
                raise AssertionError(f"unsupported authentication request {code}")

    def _scram(self, password):
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = ("n,," + first_bare).encode()
        self.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
        kind, body = self.recv_msg()
        if kind == b"E":
            self.last_error = error_fields(body)
            raise AssertionError(f"authentication failed: {self.last_error}")
        assert kind == b"R" and struct.unpack("!I", body[:4])[0] == 11, (kind, body)
        server_first = body[4:].decode()
        attrs = dict(p.split("=", 1) for p in server_first.split(","))
        assert attrs["r"].startswith(nonce)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        final_bare = f"c=biws,r={attrs['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.send(message(b"p", f"{final_bare},p={base64.b64encode(proof).decode()}".encode()))
        kind, body = self.recv_msg()
        if kind == b"E":
            self.last_error = error_fields(body)
            raise AssertionError(f"authentication failed: {self.last_error}")
        assert kind == b"R" and struct.unpack("!I", body[:4])[0] == 12, (kind, body)
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expected = hmac.new(server_key, auth_message, "sha256").digest()
        got = dict(p.split("=", 1) for p in body[4:].decode().split(","))
        assert base64.b64decode(got["v"]) == expected, "server signature mismatch"

    def try_login(self, user="app", password="app", database="app", **params):
        """Like login(), but returns the ErrorResponse fields on failure and None on success."""
        try:
            self.login(user, password, database, **params)
        except AssertionError as exc:
            text = str(exc)
            if text.startswith(("login failed: ", "authentication failed: ")):
                return self.last_error
            raise
        return None

    def query(self, sql):
        """Simple query; returns the messages up to and including ReadyForQuery
        (or up to the server closing the connection)."""
        self.send(query_message(sql))
        msgs = []
        while True:
            try:
                kind, body = self.recv_msg()
            except EOFError:
                return msgs
            msgs.append((kind, body))
            if kind == b"Z":
                return msgs

    def until_ready(self, timeout=None):
        """The messages up to and including the next ReadyForQuery (for
        requests sent with send(), e.g. an extended-protocol batch)."""
        msgs = []
        while True:
            kind, body = self.recv_msg(timeout)
            msgs.append((kind, body))
            if kind == b"Z":
                return msgs


# Extended-protocol and COPY messages (frontend), for RawConn.send().


def parse_message(name, sql, types=()):
    body = name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", len(types))
    return message(b"P", body + b"".join(struct.pack("!I", t) for t in types))


def bind_message(stmt, params=(), portal=""):
    """Bind with text-format parameters (None is NULL) and text results."""
    body = portal.encode() + b"\0" + stmt.encode() + b"\0" + struct.pack("!HH", 0, len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            v = str(p).encode()
            body += struct.pack("!I", len(v)) + v
    return message(b"B", body + struct.pack("!H", 0))


def describe_message(kind, name):
    """kind is "S" (statement) or "P" (portal)."""
    return message(b"D", kind.encode() + name.encode() + b"\0")


def close_message(kind, name):
    return message(b"C", kind.encode() + name.encode() + b"\0")


def execute_message(portal="", max_rows=0):
    return message(b"E", portal.encode() + b"\0" + struct.pack("!I", max_rows))


def sync_message():
    return message(b"S")


def terminate_message():
    return message(b"X")


def copy_data_message(data):
    return message(b"d", data)


def data_row(body):
    """A DataRow body -> list of text values (None for NULL)."""
    (n,) = struct.unpack("!H", body[:2])
    pos, out = 2, []
    for _ in range(n):
        (length,) = struct.unpack("!i", body[pos:pos + 4])
        pos += 4
        if length < 0:
            out.append(None)
        else:
            out.append(body[pos:pos + length].decode())
            pos += length
    return out


def login_and_query(port, user="app", password="app", database="app", sql="SELECT 1",
                    timeout=None):
    """Logs in with a RawConn and runs sql. Returns (phase, error_fields):
    (None, None) when both worked, else the phase ("login" or "query") that
    got an ErrorResponse, and its fields."""
    with RawConn(port, timeout=timeout or 5 * SLOW) as rc:
        err = rc.try_login(user, password, database)
        if err is not None:
            return "login", err
        msgs = rc.query(sql)
        for kind, body in msgs:
            if kind == b"E":
                return "query", error_fields(body)
        return None, None


def parse_pgbench(output):
    """The numbers `pgbench` prints at the end, as a dict."""
    out = {}
    m = re.search(r"number of transactions actually processed: (\d+)", output)
    if m:
        out["processed"] = int(m.group(1))
    m = re.search(r"number of failed transactions: (\d+)", output)
    if m:
        out["failed"] = int(m.group(1))
    m = re.search(r"tps = ([\d.]+)", output)
    if m:
        out["tps"] = float(m.group(1))
    return out
