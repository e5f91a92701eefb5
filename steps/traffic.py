"""Steps about synthetic traffic: users of every platform service, recorded into the history."""

from __future__ import annotations

from pytest_bdd import given, parsers


@given(parsers.parse("synthetic traffic of {users:d} users is running"))
def _(drill, users: int):
    """Start ``users`` simulated users (spread over the services, 10 requests/s each)."""
    drill.start_traffic(users)


@given(parsers.parse("synthetic traffic of {users:d} users at {rate:g} requests per second each is running"))
def _(drill, users: int, rate: float):
    """Start ``users`` simulated users at ``rate`` requests per second each."""
    drill.start_traffic(users, rate_per_user=rate)
