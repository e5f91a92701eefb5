"""The Gherkin step library for drills: thin calls into drdrill, one module per concern.

Ships with the package, so any pytest session drills with ``pytest_plugins = ["drdrill.pytest_plugin",
*STEP_MODULES]`` (what ``drdrill drill`` gives its session, and the checkout's root ``conftest.py``).
``drdrill steps`` prints the reference of every step (``docs/steps.md``).
"""

__all__ = ["PLUGINS", "STEP_MODULES"]

STEP_MODULES = ("drdrill.steps.environment", "drdrill.steps.traffic", "drdrill.steps.faults",
                "drdrill.steps.runbook", "drdrill.steps.objectives")
PLUGINS = ("drdrill.pytest_plugin", *STEP_MODULES)  # what a drill session loads
