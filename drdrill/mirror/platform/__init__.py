"""The reference creator platform: the five HTTP services of the local mirror (psycopg2, redis-py).

They serve the same public API as :mod:`drdrill.testing.groundtruth`, but keep their data in the
region's PostgreSQL (through the regional HAProxy) and auth sessions in Redis, so a drill measures
what real components do when they crash, hang, fail over or are promoted.

Command line (an executable on the PATH of the node image, run by ``/opt/patroni/bin/python``, which
has psycopg2 and redis-py)::

    drdrill-platform --service <payments|auth|users|storefront|analytics> --region <name> --port 8080

Environment (see :data:`ENV`):

``DRDRILL_PG_DSN``          libpq DSN of the region's database, required, e.g.
                            ``host=haproxy port=5432 user=postgres password=postgres dbname=postgres
                            connect_timeout=2``
``DRDRILL_REDIS_URL``       ``redis://host:port/db``; required by ``auth`` (its sessions)
``DRDRILL_REPLICA``         optional replica id, sent back in ``X-Replica`` and in ``/healthz``
``DRDRILL_SAGA_DEADLINE_S`` age (seconds, default 5) after which the payments reconciler settles a
                            pending saga payment: ``captured``, or ``compensated`` if the amount is odd
``DRDRILL_SAGA_INTERVAL_S`` how often the reconciler runs (default 1)
``DRDRILL_PG_POOL``         database connections per service process (default 5)
``DRDRILL_DB_TIMEOUT_S``    bound on one request's database work, connect included (default 2.5)
``DRDRILL_SESSION_TTL_S``   Redis TTL of an auth session (default 3600)

Every response carries ``X-Served-By: <service>`` and ``X-Region: <region>`` (and ``X-Replica``
when set). Endpoints (JSON bodies): ``GET /healthz`` (200 while the process runs), ``GET /readyz``
(200 only when the database is reachable, not in recovery, not read-only and the schema exists; auth
also needs Redis; else 503 with the reasons), ``GET /_lookup?prefix=p`` (every service; the stored
write keys starting with ``p``: ``{"payments": [...], "users": [...], "analytics": [...]}``, in
commit order, works on a read-only replica), and per service:

``payments``   ``POST /payments {"key", "amount_cents", "saga"?}`` → 201 (200 for a key already
               stored), ``GET /payments/<key>`` → 200/404, ``GET /payments/_pending`` → count
``auth``       ``POST /auth/login {"user"}`` → 200 ``{"user", "token"}``;
               ``GET /auth/sessions/<token>`` → 200/404
``users``      ``GET /users/<id>`` → profile, ``PUT /users/<id> {"key", "display_name"}`` → 200
``storefront`` ``GET /storefront`` → items
``analytics``  ``POST /analytics/events {"key", "name"}`` → 202

When the database (or Redis) cannot answer — unreachable, read-only, in recovery, too slow — the
request is answered 503 *with* ``X-Served-By`` within about 3 s; the outcome classifier calls that
``info`` (the write may or may not have landed). The schema is created idempotently in the
background, retried until the database is writable, so a DR-region service started against a
standby comes up, is live but not ready, and becomes ready within a second of the promotion.
"""

from __future__ import annotations

from drdrill.catalog import SERVICES, WRITE_SERVICES, platform_service

__all__ = [
    "DEFAULT_PORT",
    "ENTRY_POINT",
    "ENV",
    "SERVICES",
    "WRITE_SERVICES",
    "service_command",
    "service_environment",
]

DEFAULT_PORT = 8080
ENTRY_POINT = "drdrill-platform"
ENV = {
    "pg_dsn": "DRDRILL_PG_DSN",
    "redis_url": "DRDRILL_REDIS_URL",
    "replica": "DRDRILL_REPLICA",
    "saga_deadline_s": "DRDRILL_SAGA_DEADLINE_S",
    "saga_interval_s": "DRDRILL_SAGA_INTERVAL_S",
    "pg_pool": "DRDRILL_PG_POOL",
    "db_timeout_s": "DRDRILL_DB_TIMEOUT_S",
    "session_ttl_s": "DRDRILL_SESSION_TTL_S",
}


def service_command(service: str, region: str, port: int = DEFAULT_PORT) -> list[str]:
    """The container command that runs one service."""
    platform_service(service)  # ValueError naming the known ones
    return [ENTRY_POINT, "--service", service, "--region", region, "--port", str(port)]


def service_environment(pg_dsn: str, redis_url: str | None = None, replica: str | None = None,
                        **extra: object) -> dict[str, str]:
    """The container environment of a service; ``extra`` by :data:`ENV` name (``saga_deadline_s=2``)."""
    env = {ENV["pg_dsn"]: pg_dsn}
    if redis_url:
        env[ENV["redis_url"]] = redis_url
    if replica:
        env[ENV["replica"]] = replica
    for name, value in extra.items():
        if name not in ENV:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(ENV)}")
        env[ENV[name]] = str(value)
    return env
