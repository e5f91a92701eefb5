"""Root conftest: the drdrill pytest plugin and the Gherkin step library."""

pytest_plugins = [
    "drdrill.pytest_plugin",
    "steps.environment",
    "steps.traffic",
    "steps.faults",
    "steps.objectives",
    "steps.runbook",
]
