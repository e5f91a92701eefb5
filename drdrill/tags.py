"""The Gherkin tags drdrill gives a meaning to, registered as pytest markers by its plugin.

``@nightly`` / ``@annual`` select a suite (``drdrill drill --suite``); ``@service``, ``@database``,
``@az``, ``@region`` name a scenario's fault class (its Allure epic); a target's tags (``@mirror``,
``@groundtruth``: :mod:`drdrill.targets`) keep a scenario to the targets it is meant for. Any other
tag a feature uses must be registered as a marker in the project's pytest configuration.
"""

from __future__ import annotations

__all__ = ["FAULT_CLASSES", "SUITES", "markers"]

SUITES = {  # suite (--suite) -> the tag that selects it, described
    "nightly": "a drill of the nightly reduced chaos run (drdrill drill --suite nightly)",
    "annual": "a drill of the annual full DR test (drdrill drill --suite annual)",
}
FAULT_CLASSES = {
    "service": "a single service failure drill",
    "database": "a database failure drill",
    "az": "an availability zone failure drill",
    "region": "a region failure drill (failover, failback)",
}


def markers() -> dict[str, str]:
    """Every tag drdrill gives a meaning to -> its description (the pytest marker line)."""
    from drdrill.targets import targets_by_tag

    found = {**SUITES, **FAULT_CLASSES}
    for tag, names in targets_by_tag().items():
        found[tag] = f"a drill for the {' or '.join(sorted(names))} target only (--target)"
    return found
