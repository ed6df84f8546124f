# SPDX-License-Identifier: ISC
"""Hostile and broken clients. Each case runs on its own raw socket while a
well-behaved psycopg client (the canary) keeps querying: the bad connection
is refused or closed, with at most an ErrorResponse, and nobody else
notices. At the end Levee still answers and its memory is back near where
it started."""

import asyncio
import socket
import struct
import threading
import time

import psycopg
import pytest

import utils
from utils import LEVEE_SAN, SLOW, wait_until


class Canary(threading.Thread):
    """Queries through Levee in a loop; records every failure."""

    def __init__(self, levee):
        super().__init__(daemon=True)
        self.levee = levee
        self.count = 0
        self.errors = []
        self._halt = threading.Event()

    def run(self):
        try:
            with self.levee.conn() as c:
                i = 0
                while not self._halt.is_set():
                    i += 1
                    got = c.execute("SELECT %s::int", (i,)).fetchone()
                    if got != (i,):
                        self.errors.append(f"wrong answer {got} for {i}")
                    self.count += 1
                    self._halt.wait(0.01)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            self.errors.append(repr(exc))

    def progressing(self):
        """Waits until the canary has answered a few more queries."""
        start = self.count
        wait_until(lambda: self.errors or self.count >= start + 3, 5 * SLOW)
        assert not self.errors, self.errors

    def stop(self):
        self._halt.set()
        self.join(10)


@pytest.fixture
def canary(levee):
    c = Canary(levee)
    c.start()
    wait_until(lambda: c.count > 0 or c.errors, 10 * SLOW)
    yield c
    c.stop()
    assert not c.errors, c.errors
    assert c.count > 0


def _closed_with_protocol_error(rc, codes=("08P01",), timeout=None):
    """The connection is closed, after nothing or after ErrorResponses with one of codes."""
    msgs = rc.expect_closed(timeout)
    for kind, body in msgs:
        assert kind == b"E", f"unexpected {kind!r} from levee: {body!r}"
        assert utils.error_fields(body)["C"] in codes, utils.error_fields(body)
    return msgs


# Each case takes the Levee and returns nothing; it asserts on its own socket.

def case_startup_length_0(lv):
    with utils.RawConn(lv.port) as rc:
        rc.send(struct.pack("!I", 0))
        _closed_with_protocol_error(rc)


def case_startup_length_7(lv):
    with utils.RawConn(lv.port) as rc:
        rc.send(struct.pack("!I", 7) + b"\0\3\0")
        _closed_with_protocol_error(rc)


def case_startup_length_2g(lv):
    with utils.RawConn(lv.port) as rc:
        rc.send(struct.pack("!II", 2 ** 31 - 1, utils.PROTOCOL_3) + b"user\0app\0")
        _closed_with_protocol_error(rc)


def case_startup_length_10mb(lv):
    with utils.RawConn(lv.port) as rc:
        rc.send(struct.pack("!II", 10 * 1024 * 1024, utils.PROTOCOL_3) + b"user\0app\0")
        _closed_with_protocol_error(rc)


def case_truncated_startup(lv):
    with utils.RawConn(lv.port) as rc:
        rc.send(utils.startup_packet()[:20])
        rc.sock.shutdown(socket.SHUT_WR)
        _closed_with_protocol_error(rc)


def case_truncated_message_after_login(lv):
    with utils.RawConn(lv.port) as rc:
        rc.login()
        rc.send(b"Q" + struct.pack("!I", 100) + b"SELECT 1")
        rc.sock.shutdown(socket.SHUT_WR)
        _closed_with_protocol_error(rc)


def case_message_length_below_4(lv):
    with utils.RawConn(lv.port) as rc:
        rc.login()
        rc.send(b"Q" + struct.pack("!I", 3))
        _closed_with_protocol_error(rc)


def case_unknown_message_before_login(lv):
    with utils.RawConn(lv.port) as rc:
        rc.startup()
        kind, _ = rc.recv_msg()
        assert kind == b"R"
        rc.send(utils.message(b"z", b"hello\0"))
        _closed_with_protocol_error(rc, ("08P01", "28P01", "28000"))


def case_unknown_protocol_version(lv):
    with utils.RawConn(lv.port) as rc:
        rc.send(utils.startup_packet(version=(9 << 16) | 9))
        _closed_with_protocol_error(rc, ("08P01", "0A000"))


def case_unknown_message_after_login(lv):
    with utils.RawConn(lv.port) as rc:
        rc.login()
        rc.send(utils.message(b"y", b"\0\0"))
        msgs = _closed_with_protocol_error(rc)
        assert msgs, "no ErrorResponse before the close"


def case_garbage_after_sslrequest(lv):
    """SSLRequest and a startup packet in one write: the startup packet was
    not protected by TLS (CVE-2021-23214), so it must not be processed."""
    with utils.RawConn(lv.port) as rc:
        rc.send(utils.ssl_request() + utils.startup_packet())
        data, closed = rc.read_until_closed(5 * SLOW)
        assert closed, f"still open; got {data!r}"
        rest = data[1:] if data[:1] in (b"N", b"S") else data
        if data[:1] == b"S":
            return  # whatever follows is TLS (an alert), never a protocol message
        for kind, body in utils.split_messages(rest):
            assert kind == b"E", f"levee answered {kind!r} to bytes sent before TLS"


CASES = [case_startup_length_0, case_startup_length_7, case_startup_length_2g,
         case_startup_length_10mb, case_truncated_startup, case_truncated_message_after_login,
         case_message_length_below_4, case_unknown_message_before_login,
         case_unknown_protocol_version, case_unknown_message_after_login,
         case_garbage_after_sslrequest]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__[5:])
def test_bad_input(levee, canary, case):
    case(levee)
    canary.progressing()
    assert levee.sql("SELECT 1") == [(1,)]


@pytest.mark.parametrize("tls", ["disable", "allow"])
def test_garbage_after_sslrequest_with_tls(levee_factory, tmp_path, tls):
    overrides = {"levee": {"client_login_timeout": "2s"}, "tls": {"client_tls_mode": tls}}
    if tls != "disable":
        crt, key = utils.make_cert(tmp_path)
        overrides["tls"].update(cert_file=crt, key_file=key)
    lv = levee_factory(overrides)
    case_garbage_after_sslrequest(lv)
    with lv.conn() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.levee_config({"levee": {"client_login_timeout": "2s"}})
def test_one_byte_per_second_dropped_at_login_timeout(levee, canary):
    pkt = utils.startup_packet()
    t0 = time.monotonic()
    closed = False
    with utils.RawConn(levee.port) as rc:
        for b in pkt:
            try:
                rc.send(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            # One byte per second; the wait doubles as the check for the close.
            data, closed = rc.read_until_closed(1.0)
            if closed:
                break
    elapsed = time.monotonic() - t0
    assert closed, "a client trickling its startup packet was not dropped"
    assert 1.5 <= elapsed <= 5 * SLOW, elapsed
    canary.progressing()


async def _connection_storm(port, n, concurrency):
    sem = asyncio.Semaphore(concurrency)
    failures = []
    startup = utils.startup_packet()

    async def one(i):
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 10)
                if i % 2:
                    writer.write(startup)  # half of them get as far as the password prompt
                    await writer.drain()
                writer.close()
                await writer.wait_closed()
            except (OSError, asyncio.TimeoutError) as exc:
                failures.append(repr(exc))
    await asyncio.gather(*(one(i) for i in range(n)))
    return failures


def _storm(lv, n=10000, concurrency=500):
    failures = asyncio.run(_connection_storm(lv.port, n, concurrency))
    assert not failures, f"{len(failures)} of {n} connects failed, e.g. {failures[:3]}"


@pytest.mark.slow
def test_10000_connections_open_and_close(levee, canary):
    _storm(levee)
    canary.progressing()
    # Levee forgets them all.
    wait_until(lambda: len([r for r in levee.admin("SHOW CLIENTS")
                            if r["database"] != "levee"]) == 1, 10 * SLOW)


@pytest.mark.slow
@pytest.mark.levee_config({"levee": {"client_login_timeout": "2s"}})
def test_all_of_it_then_levee_answers_and_rss_returns(levee, canary):
    # Warm up: a few clients and queries, so the baseline includes what any use allocates.
    for _ in range(3):
        with levee.conn() as c:
            c.execute("SELECT 1")
    baseline = levee.rss_kb()
    for case in CASES:
        case(levee)
    _storm(levee)
    for case in CASES:
        case(levee)
    canary.progressing()
    with levee.conn() as c:
        assert c.execute("SELECT 42").fetchone() == (42,)
    assert levee.admin("SHOW VERSION")[0]["version"].startswith("Levee ")
    if not LEVEE_SAN:  # ASan's quarantine holds freed memory on purpose
        limit = baseline + 20 * 1024
        try:
            wait_until(lambda: levee.rss_kb() < limit, 10)
        except TimeoutError:
            pytest.fail(f"RSS {levee.rss_kb()} kB stayed above {limit} kB "
                        f"(baseline {baseline} kB)")
    with pytest.raises(psycopg.OperationalError):
        levee.conn(password="wrong")
