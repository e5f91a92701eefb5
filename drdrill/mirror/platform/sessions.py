"""The auth service's session store: a redis-py client bounded for a platform under fire.

Name resolution (with a deadline, :func:`.net.resolve`), connecting and every reply each have a
timeout of ``REDIS_TIMEOUT_S``, so a command costs at most about three of them. A pooled connection
found closed (Redis restarted) is replaced before use by the pool; one that breaks mid-command is
retried once on a fresh connection (the commands used, PING, SET ... EX and GET, are idempotent);
a timeout is not retried, so a hung Redis costs one timeout. The client sends no ``CLIENT SETINFO``
on connect (Debian's Redis 7.0 refuses it anyway), so a connection costs no extra round trips.
"""

from __future__ import annotations

import socket
import urllib.parse

import redis
import redis.backoff
import redis.connection
import redis.exceptions
import redis.retry

from .net import resolve

__all__ = ["REDIS_TIMEOUT_S", "SessionStoreError", "describe", "session_store"]

REDIS_TIMEOUT_S = 0.8

# Anything redis-py raises: unreachable, timed out, or an error reply.
SessionStoreError = redis.exceptions.RedisError


class _Connection(redis.connection.Connection):
    """redis-py's TCP connection, resolving the host name with a deadline first: DNS lookups stall
    for ~10 s in a container whose network was disconnected."""

    def _connect(self) -> socket.socket:
        address = resolve(self.host, self.port, self.socket_connect_timeout)
        sock = socket.create_connection((address, self.port), timeout=self.socket_connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.socket_timeout)
        return sock


def session_store(url: str, timeout_s: float = REDIS_TIMEOUT_S) -> redis.Redis:
    """A client for ``redis://[:password@]host[:port][/db]``; ValueError for any other URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"not a redis://host[:port][/db] URL: {url!r}")
    return redis.Redis.from_url(
        url,
        connection_class=_Connection,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=redis.retry.Retry(redis.backoff.NoBackoff(), retries=1,
                                supported_errors=(redis.exceptions.ConnectionError,)),
        driver_info=None,
    )  # fmt: skip


def describe(client: redis.Redis) -> str:
    """``redis at host:port/db``, for logs and error messages (no password)."""
    kwargs = client.connection_pool.connection_kwargs
    return f"redis at {kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
