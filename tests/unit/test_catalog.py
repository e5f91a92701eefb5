"""The service catalogue is the one description of the platform: every other view agrees with it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from drdrill import catalog
from drdrill.config import default_config
from drdrill.mirror.images import _platform_files
from drdrill.mirror.topology import load_topology


def test_the_dr_plans_five_services():
    assert catalog.SERVICES == ("payments", "auth", "users", "storefront", "analytics")
    assert catalog.CRITICAL_SERVICES == ("payments", "auth", "users")
    assert catalog.WRITE_SERVICES == ("payments", "users", "analytics")
    assert [s.name for s in catalog.CATALOG if s.data_class == "financial"] == ["payments"]
    with pytest.raises(ValueError, match="unknown service 'billing'; known: payments, auth"):
        catalog.platform_service("billing")


def test_the_config_defaults_and_the_default_topology_follow_the_catalogue():
    config = default_config()
    assert [(s.name, s.tier, s.data_class) for s in config.services] == [
        (s.name, s.tier, s.data_class) for s in catalog.CATALOG]
    topology = load_topology()  # topology.yaml writes its catalog out as an example of the shape
    assert [(s.name, s.tier, s.paths) for s in topology.services] == [
        (s.name, s.tier, s.paths) for s in catalog.CATALOG]


def test_the_node_image_gets_the_catalogue_beside_the_platform_package():
    source = Path(catalog.__file__).read_bytes()
    assert _platform_files()["drdrill/catalog.py"] == source
    assert "drdrill/httpbody.py" in _platform_files()  # the request checks the platform imports
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import) for a in node.names}
    assert imported <= {"__future__", "dataclasses"}  # stdlib only: it runs under the image's own Python
