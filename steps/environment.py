"""Steps about the platform under test: is it there and healthy."""

from __future__ import annotations

from pytest_bdd import given


@given("the platform under test is healthy")
def _(drill):
    """The target answers its health check (waits up to 60 s)."""
    drill.wait_healthy()
