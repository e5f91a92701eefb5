"""Root conftest: the drdrill pytest plugin and the Gherkin step library (``drdrill.steps``)."""

from drdrill.steps import PLUGINS

pytest_plugins = list(PLUGINS)
