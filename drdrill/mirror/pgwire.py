"""A minimal PostgreSQL client (protocol 3, simple queries) for the mirror's probes and tests.

The project has no PostgreSQL driver dependency; the mirror needs only to connect to a published port
on 127.0.0.1, authenticate (trust, cleartext, MD5 or SCRAM-SHA-256) and run a few statements. Values
come back as text (``str``) or ``None``; a server error raises :class:`PgError` with its SQLSTATE.

    with connect(port=5432, password="postgres") as conn:
        conn.execute("create table if not exists t (k text primary key)")
        rows = conn.query("select k from t")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct

__all__ = ["PgConnection", "PgError", "connect"]


class PgError(Exception):
    """An error the server reported (``sqlstate``) or a broken conversation."""

    def __init__(self, message: str, sqlstate: str = "") -> None:
        super().__init__(f"{sqlstate}: {message}" if sqlstate else message)
        self.sqlstate = sqlstate


def connect(
    host: str = "127.0.0.1",
    port: int = 5432,
    user: str = "postgres",
    password: str = "postgres",
    dbname: str = "postgres",
    timeout_s: float = 5.0,
) -> PgConnection:
    """An authenticated connection; :class:`PgError` or :class:`OSError` when that fails."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        conn = PgConnection(sock)
        conn._startup(user, password, dbname)
    except BaseException:
        sock.close()
        raise
    return conn


class PgConnection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parameters: dict[str, str] = {}

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._send(b"X", b"")
        except OSError:
            pass
        self.sock.close()

    def query(self, sql: str) -> list[tuple[str | None, ...]]:
        """Run ``sql`` (one or more statements); the rows of the last result set."""
        self._send(b"Q", sql.encode() + b"\0")
        rows: list[tuple[str | None, ...]] = []
        error: PgError | None = None
        while True:
            kind, body = self._receive()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                rows.append(_data_row(body))
            elif kind == b"E":
                error = _error(body)
            elif kind == b"Z":
                if error is not None:
                    raise error
                return rows

    def execute(self, sql: str) -> None:
        self.query(sql)

    def scalar(self, sql: str) -> str | None:
        rows = self.query(sql)
        return rows[0][0] if rows and rows[0] else None

    # --------------------------------------------------------------------------------- protocol

    def _startup(self, user: str, password: str, dbname: str) -> None:
        params = b"".join(
            k.encode() + b"\0" + v.encode() + b"\0"
            for k, v in (("user", user), ("database", dbname), ("application_name", "drdrill"))
        )
        body = struct.pack("!I", 196608) + params + b"\0"
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        scram: _Scram | None = None
        while True:
            kind, body = self._receive()
            if kind == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code == 0:
                    continue
                if code == 3:
                    self._send(b"p", password.encode() + b"\0")
                elif code == 5:
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    self._send(b"p", b"md5" + outer.encode() + b"\0")
                elif code == 10:
                    mechanisms = body[4:].split(b"\0")
                    if b"SCRAM-SHA-256" not in mechanisms:
                        raise PgError(f"no supported SASL mechanism in {mechanisms}")
                    scram = _Scram(password)
                    first = scram.client_first()
                    self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
                elif code == 11:
                    assert scram is not None
                    self._send(b"p", scram.client_final(body[4:]))
                elif code == 12:
                    assert scram is not None
                    scram.verify(body[4:])
                else:
                    raise PgError(f"unsupported authentication request {code}")
            elif kind == b"S":
                key, value, _ = body.split(b"\0", 2)
                self.parameters[key.decode()] = value.decode()
            elif kind == b"E":
                raise _error(body)
            elif kind == b"Z":
                return

    def _send(self, kind: bytes, body: bytes) -> None:
        self.sock.sendall(kind + struct.pack("!I", len(body) + 4) + body)

    def _receive(self) -> tuple[bytes, bytes]:
        header = self._read(5)
        kind, length = header[:1], struct.unpack("!I", header[1:])[0]
        return kind, self._read(length - 4)

    def _read(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise PgError("server closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


def _data_row(body: bytes) -> tuple[str | None, ...]:
    (count,) = struct.unpack("!H", body[:2])
    pos, values = 2, []
    for _ in range(count):
        (size,) = struct.unpack("!i", body[pos : pos + 4])
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[pos : pos + size].decode())
            pos += size
    return tuple(values)


def _error(body: bytes) -> PgError:
    fields = {part[:1]: part[1:].decode(errors="replace") for part in body.split(b"\0") if part}
    return PgError(fields.get(b"M", "unknown error"), fields.get(b"C", ""))


class _Scram:
    """SCRAM-SHA-256 without channel binding (RFC 5802 / 7677)."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_signature = b""

    def client_first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(item.split("=", 1) for item in server_first.decode().split(","))
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce):
            raise PgError("SCRAM: server nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        final_bare = f"c=biws,r={nonce}"
        auth = f"{self.first_bare},{server_first.decode()},{final_bare}".encode()
        signature = hmac.digest(stored_key, auth, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, auth, "sha256")
        return f"{final_bare},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        attrs = dict(item.split("=", 1) for item in server_final.decode().split(","))
        if base64.b64decode(attrs.get("v", "")) != self.server_signature:
            raise PgError("SCRAM: the server's signature does not match")
