# SPDX-License-Identifier: ISC
"""A small asyncio PostgreSQL v3 client for the benchmarks.

It does only what bench/ needs and nothing more: open a connection, answer
cleartext, md5 or SCRAM-SHA-256 authentication, wait for ReadyForQuery, run
simple-protocol queries that return text rows, and hold a connection idle at a
cost of one socket (no libpq, no psycopg), so that 10,000 idle clients fit in
one Python process.

Lifetimes: a PgConn owns its StreamWriter from connect() until close().
"""

import asyncio
import base64
import hashlib
import hmac
import os
import struct

PROTOCOL_3_0 = 196608


class PgError(Exception):
    """An ErrorResponse from the server, or a protocol violation."""

    def __init__(self, message, fields=None):
        super().__init__(message)
        self.fields = fields or {}


def _error_fields(payload):
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class _Scram:
    """SCRAM-SHA-256 client side (RFC 5802/7677), no channel binding."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_signature = None

    def first(self):
        return ("n,," + self.first_bare).encode()

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        if not attrs["r"].startswith(self.nonce):
            raise PgError("SCRAM: server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = ",".join([self.first_bare, server_first.decode(), without_proof]).encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, auth_message, "sha256")
        return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()

    def verify(self, server_final):
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        if base64.b64decode(attrs.get("v", "")) != self.server_signature:
            raise PgError("SCRAM: bad server signature")


class PgConn:
    """One client connection. Use `await PgConn.connect(...)`."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.backend_pid = None
        self.params = {}

    @classmethod
    async def connect(cls, host, port, user, password, database, timeout=30.0):
        """Connects and authenticates; returns a ready PgConn. Raises PgError, OSError."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        conn = cls(reader, writer)
        try:
            await asyncio.wait_for(conn._startup(user, password, database), timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    def _send(self, kind, payload):
        self.writer.write(kind + struct.pack("!i", len(payload) + 4) + payload)

    async def _read(self):
        header = await self.reader.readexactly(5)
        kind, length = header[:1], struct.unpack("!i", header[1:])[0]
        if length < 4 or length > (1 << 30):
            raise PgError(f"bad message length {length}")
        return kind, await self.reader.readexactly(length - 4)

    async def _startup(self, user, password, database):
        body = struct.pack("!i", PROTOCOL_3_0)
        for k, v in (("user", user), ("database", database), ("application_name", "bench")):
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        self.writer.write(struct.pack("!i", len(body) + 4) + body)
        scram = None
        while True:
            kind, payload = await self._read()
            if kind == b"E":
                f = _error_fields(payload)
                raise PgError(f.get("M", "error"), f)
            if kind == b"R":
                code = struct.unpack("!i", payload[:4])[0]
                if code == 0:
                    continue
                if code == 3:
                    self._send(b"p", password.encode() + b"\0")
                elif code == 5:
                    inner = hashlib.md5((password + user).encode()).hexdigest().encode()
                    outer = hashlib.md5(inner + payload[4:8]).hexdigest()
                    self._send(b"p", b"md5" + outer.encode() + b"\0")
                elif code == 10:
                    if b"SCRAM-SHA-256\0" not in payload[4:]:
                        raise PgError("server offers no SCRAM-SHA-256")
                    scram = _Scram(password)
                    first = scram.first()
                    self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
                elif code == 11:
                    self._send(b"p", scram.final(payload[4:]))
                elif code == 12:
                    scram.verify(payload[4:])
                else:
                    raise PgError(f"unsupported authentication request {code}")
                await self.writer.drain()
            elif kind == b"S":
                k, v, _ = payload.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif kind == b"K":
                self.backend_pid = struct.unpack("!i", payload[:4])[0]
            elif kind == b"Z":
                return
            # NoticeResponse and anything else during startup: ignored.

    async def query(self, sql, timeout=30.0):
        """Runs sql (simple protocol); returns the last result's rows as tuples of str/None."""
        return await asyncio.wait_for(self._query(sql), timeout)

    async def _query(self, sql):
        self._send(b"Q", sql.encode() + b"\0")
        await self.writer.drain()
        rows, error = [], None
        while True:
            kind, payload = await self._read()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                n = struct.unpack("!h", payload[:2])[0]
                pos, row = 2, []
                for _ in range(n):
                    ln = struct.unpack("!i", payload[pos:pos + 4])[0]
                    pos += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(payload[pos:pos + ln].decode())
                        pos += ln
                rows.append(tuple(row))
            elif kind == b"E":
                f = _error_fields(payload)
                error = PgError(f.get("M", "error"), f)
            elif kind == b"Z":
                if error:
                    raise error
                return rows

    def close(self):
        """Sends Terminate (best effort) and closes the socket."""
        if self.writer is None:
            return
        try:
            self._send(b"X", b"")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.writer.close()
        self.writer = None
