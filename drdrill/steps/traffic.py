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


@given(parsers.parse("synthetic traffic of {users:d} users and {payments:g} payments per second is running"))
def _(drill, users: int, payments: float):
    """A production write rate: payment writers create this many payments per second between them
    (at most 5 each), beside the users (their payments user then only reads). Rate > 0, ≤ 5000.

    Example: ``Given synthetic traffic of 10 users and 200 payments per second is running``
    """
    drill.start_traffic(users, payments_per_s=payments)


@given(parsers.parse("synthetic traffic of {users:d} users ramping to {payments:g} payments per second "
                     "over {seconds:g} seconds is running"))
def _(drill, users: int, payments: float, seconds: float):
    """The same, the writers joining linearly over this many seconds (a Locust load shape), then holding.

    Example: ``Given synthetic traffic of 10 users ramping to 200 payments per second over 30 seconds is running``
    """
    drill.start_traffic(users, payments_per_s=payments, ramp_s=seconds)
