"""Steps about synthetic traffic: users of every platform service, recorded into the history."""

from __future__ import annotations

from pytest_bdd import given, parsers


@given(parsers.parse("synthetic traffic of {users:d} users is running"))
def _(drill, users: int):
    """Start this many synthetic users (spread over the five services, 10 requests/s each), wait
    until every service answers them, then observe a 10 s baseline.

    Example: ``Given synthetic traffic of 10 users is running``
    """
    drill.start_traffic(users)


@given(parsers.parse("synthetic traffic of {users:d} users at {rate:g} requests per second each is running"))
def _(drill, users: int, rate: float):
    """The same, at this many requests per second per user.

    Example: ``Given synthetic traffic of 10 users at 4 requests per second each is running``
    """
    drill.start_traffic(users, rate_per_user=rate)
