"""The drill config: the DR plan's defaults and clear errors for malformed files."""

from __future__ import annotations

import pytest

from drdrill.config import default_config, load_config
from drdrill.errors import ConfigError


def test_defaults_are_the_dr_plans_objectives():
    config = default_config()
    assert config.rto_objective_s == {"critical": 3600.0, "non-critical": 14400.0}
    assert config.rpo_objective_s == {"financial": 300.0, "other": 3600.0}
    assert config.services_in_tier("critical") == ["payments", "auth", "users"]
    assert config.services_in_data_class("financial") == ["payments"]


def test_yaml_overrides_and_round_trip(tmp_path):
    path = tmp_path / "drdrill.yaml"
    path.write_text("objectives:\n  rto_s: {critical: 60, non-critical: 600}\nrecovery: {window_s: 5}\n")
    config = load_config(path)
    assert config.rto_objective_s["critical"] == 60.0
    assert config.rpo_objective_s["financial"] == 300.0
    assert config.recovery.window_s == 5.0
    from drdrill.config import config_from_dict
    assert config_from_dict(config.to_dict(), "x").to_dict() == config.to_dict()


@pytest.mark.parametrize("text, message", [
    ("objectives: [1, 2", "not valid YAML"),
    ("services: {payments: {tier: gold, data_class: financial}}", "services.payments.tier: 'gold' is not one of"),
    ("objectives: {rpo_s: {financial: -1, other: 5}}", "objectives.rpo_s.financial: expected a positive number"),
    ("recovery: {threshold: 2}", "recovery.threshold: must be in"),
    ("surprise: 1", "surprise: unknown field; expected one of services, objectives, recovery"),
    ("services: {payments: {tier: critical, data_class: financial, teir: x}}",
     "services.payments.teir: unknown field; expected one of tier, data_class"),
    ("objectives: {rto_s: {critical: .nan, non-critical: 600}}", "objectives.rto_s.critical: expected a positive number"),
    ("recovery: {window_s: .inf}", "recovery.window_s: must be a positive number of seconds"),
])
def test_malformed_config_names_file_and_field(tmp_path, text, message):
    path = tmp_path / "drdrill.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_unknown_service_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown service 'billing'.*known: payments, auth, users"):
        default_config().service("billing")
