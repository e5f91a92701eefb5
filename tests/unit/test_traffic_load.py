"""The payment-rate load: writers per rate, the ramp schedule of the load shape, input checks, the steps."""

from __future__ import annotations

import math
import random

import pytest

from drdrill.errors import TrafficError
from drdrill.traffic.load import MAX_PAYMENTS_PER_WRITER_S, PaymentLoad, next_task_s, spread
from drdrill.traffic.runner import TrafficRun


@pytest.mark.parametrize("rate, writers, each", [
    (200, 40, 5.0), (7, 2, 3.5), (0.5, 1, 0.5), (5, 1, 5.0), (5.01, 2, 2.505), (1000, 200, 5.0),
])
def test_writers_share_the_rate_at_most_five_a_second_each(rate, writers, each):
    load = PaymentLoad(rate)
    assert (load.writers, load.per_writer_s) == (writers, pytest.approx(each))
    assert load.writers * load.per_writer_s == pytest.approx(rate)
    assert load.per_writer_s <= MAX_PAYMENTS_PER_WRITER_S


@pytest.mark.parametrize("rate, ramp", [
    (0, 0), (-1, 0), (math.nan, 0), (math.inf, 0), (True, 0), ("200", 0), (5001, 0), (100, -1), (100, math.nan),
])
def test_bad_rates_and_ramps_are_one_line_errors(rate, ramp):
    with pytest.raises(TrafficError) as caught:
        PaymentLoad(rate, ramp)
    assert "\n" not in str(caught.value)
    assert "payments per second" in str(caught.value) or "ramp" in str(caught.value)


def test_the_ramp_adds_writers_linearly_then_holds():
    load = PaymentLoad(200, ramp_s=10)  # 40 writers
    assert [load.writers_at(t) for t in (-1, 0, 1, 2.5, 5, 9.99, 10, 11, 1000)] == [
        0, 0, 4, 10, 20, 39, 40, 40, 40]
    assert load.rate_at(5) == pytest.approx(100.0)
    assert load.rate_at(60) == pytest.approx(200.0)
    rates = [load.rate_at(t / 4) for t in range(0, 60)]
    assert rates == sorted(rates)  # never down during a ramp


def test_without_a_ramp_every_writer_starts_at_once():
    load = PaymentLoad(42)
    assert load.writers_at(0) == load.writers == 9
    assert load.tick(0, browsing=10)[0] == 19


def test_the_shape_ticks_browsing_users_plus_writers_and_spawns_each_step_within_its_second():
    load = PaymentLoad(300, ramp_s=6)  # 60 writers, 10 more a second
    schedule = [load.tick(t, browsing=10) for t in range(0, 9)]
    assert [users for users, _ in schedule] == [10, 20, 30, 40, 50, 60, 70, 70, 70]
    for (before, _), (after, spawn_rate) in zip(schedule, schedule[1:], strict=False):
        assert (after - before) / spawn_rate < 1.0  # Locust ticks once a second and blocks while spawning
    assert load.tick(0, browsing=0)[1] >= 1


def test_browsing_users_are_spread_over_the_services():
    services = ["payments", "auth", "users", "storefront", "analytics"]
    assert spread(7, services) == {"payments": 2, "auth": 2, "users": 1, "storefront": 1, "analytics": 1}
    assert spread(3, services)["analytics"] == 0
    assert sum(spread(10, services).values()) == 10


def test_traffic_run_passes_the_rate_to_locust_and_refuses_bad_ones_before_starting(tmp_path):
    run = TrafficRun("http://127.0.0.1:9", tmp_path / "h.jsonl", "r1", users=5,
                     payments_per_s=200, ramp_s=30)
    command = run.command()
    assert command[command.index("--drdrill-payments-per-s") + 1] == "200"
    assert command[command.index("--drdrill-ramp-s") + 1] == "30"
    assert run.total_users == 45
    assert "--drdrill-payments-per-s" not in TrafficRun("http://127.0.0.1:9", tmp_path / "h.jsonl", "r2").command()
    with pytest.raises(TrafficError, match=r"payments per second must be a number in \(0, 5000\], got 0"):
        TrafficRun("http://127.0.0.1:9", tmp_path / "h.jsonl", "r3", payments_per_s=0)
    with pytest.raises(TrafficError, match="a ramp needs a payment rate"):
        TrafficRun("http://127.0.0.1:9", tmp_path / "h.jsonl", "r4", ramp_s=10)
    assert not (tmp_path / "h.jsonl").exists()  # nothing started


class _Drill:
    def __init__(self):
        self.calls = []

    def start_traffic(self, users, **kwargs):
        self.calls.append((users, kwargs))


@pytest.mark.parametrize("text, call", [
    ("synthetic traffic of 10 users is running", (10, {})),
    ("synthetic traffic of 10 users at 4 requests per second each is running", (10, {"rate_per_user": 4.0})),
    ("synthetic traffic of 10 users and 200 payments per second is running", (10, {"payments_per_s": 200.0})),
    ("synthetic traffic of 5 users and 12.5 payments per second is running", (5, {"payments_per_s": 12.5})),
    ("synthetic traffic of 10 users ramping to 300 payments per second over 30 seconds is running",
     (10, {"payments_per_s": 300.0, "ramp_s": 30.0})),
])
def test_traffic_steps_parse_to_one_typed_call(text, call):
    from pytest_bdd.steps import step_function_context_registry

    import drdrill.steps.traffic  # noqa: F401 - registers the steps

    matching = [c for c in step_function_context_registry.values()
                if c.step_func.__module__ == "drdrill.steps.traffic" and c.parser.is_matching(text)]
    assert len(matching) == 1, [c.parser.name for c in matching]
    drill = _Drill()
    matching[0].step_func(drill, **matching[0].parser.parse_arguments(text))
    assert drill.calls == [call]
    users, kwargs = drill.calls[0]
    assert type(users) is int and all(type(v) is float for v in kwargs.values())


def test_the_config_can_ask_for_a_payment_rate_and_names_the_valid_keys(tmp_path):
    from drdrill.config import config_from_dict, load_config
    from drdrill.errors import ConfigError

    path = tmp_path / "drdrill.yaml"
    path.write_text("traffic: {payments_per_s: 200, ramp_s: 30}\n")
    config = load_config(path)
    assert (config.traffic.payments_per_s, config.traffic.ramp_s) == (200.0, 30.0)
    assert config_from_dict(config.to_dict(), "x").traffic == config.traffic
    assert config_from_dict({}, "x").traffic.payments_per_s is None
    assert config_from_dict({"traffic": {"payments_per_s": None}}, "x").traffic.payments_per_s is None
    assert config_from_dict(config_from_dict({}, "x").to_dict(), "x").traffic.payments_per_s is None
    for text, message in [
        ("traffic: {payment_per_s: 200}", "traffic.payment_per_s: unknown field; expected one of payments_per_s, ramp_s"),
        ("traffic: {payments_per_s: 0}", "traffic.payments_per_s: must be a number of payments per second in (0, 5000]"),
        ("traffic: {payments_per_s: fast}", "traffic.payments_per_s: must be a number of payments per second"),
        ("traffic: {payments_per_s: 9000}", "got 9000"),
        ("traffic: {ramp_s: -5}", "traffic.ramp_s: must be a number of seconds in [0, 86400], got -5"),
    ]:
        path.write_text(text + "\n")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert str(caught.value) == f"{path}: " + str(caught.value).split(": ", 1)[1]
        assert message in str(caught.value) and "\n" not in str(caught.value)


class _Target:
    name = "fake"
    base_url = "http://127.0.0.1:9"


@pytest.mark.parametrize("asked, config_traffic, expected", [
    ({"payments_per_s": 200.0}, {}, {"payments_per_s": 200.0, "ramp_s": 0.0, "payment_writers": 40}),
    ({}, {"payments_per_s": 120, "ramp_s": 30}, {"payments_per_s": 120.0, "ramp_s": 30.0, "payment_writers": 24}),
    ({"payments_per_s": 50.0, "ramp_s": 5.0}, {"payments_per_s": 120}, {"payments_per_s": 50.0, "ramp_s": 5.0}),
    ({}, {}, {}),
])
def test_the_drill_records_the_asked_rate_its_step_or_else_the_configs(tmp_path, monkeypatch, asked,
                                                                      config_traffic, expected):
    from drdrill.config import config_from_dict
    from drdrill.drill import Drill
    from drdrill.run import RunDir

    monkeypatch.setattr(TrafficRun, "start", lambda self: self)
    monkeypatch.setattr(TrafficRun, "wait_until_flowing", lambda self, **kw: None)
    config = config_from_dict({"traffic": config_traffic} if config_traffic else {}, "drdrill.yaml")
    drill = Drill(_Target(), config, RunDir.create(tmp_path / "runs", "rate", config), experiment_dirs=[])
    drill.start_traffic(10, rate_per_user=2.0, baseline_s=0, **asked)
    traffic = drill.run.meta()["traffic"]
    assert traffic["users"] == 10 and traffic["rate_per_user"] == 2.0
    assert {k: traffic[k] for k in expected} == expected
    assert ("payments_per_s" in traffic) == bool(expected)
    assert ("--drdrill-payments-per-s" in drill.traffic.command()) == bool(expected)


def test_a_bad_rate_fails_the_drill_before_traffic_starts(tmp_path, monkeypatch):
    from drdrill.config import default_config
    from drdrill.drill import Drill
    from drdrill.run import RunDir

    started = []
    monkeypatch.setattr(TrafficRun, "start", lambda self: started.append(self))
    drill = Drill(_Target(), default_config(), RunDir.create(tmp_path / "runs", "bad", default_config()),
                  experiment_dirs=[])
    with pytest.raises(TrafficError, match="got -3"):
        drill.start_traffic(10, payments_per_s=-3, baseline_s=0)
    assert not started


def test_users_a_stall_held_back_together_do_not_go_on_in_lockstep():
    rng = random.Random(7)
    interval_s = 0.2
    # ten users at random phases; then one stall holds every one of them back until t = 10 s
    nexts = [next_task_s(None, 0.0, interval_s, rng) for _ in range(10)]
    assert len({round(t, 4) for t in nexts}) == 10
    resumed = [next_task_s(t, 10.0, interval_s, rng) for t in nexts]
    assert all(10.0 <= t <= 10.0 + interval_s for t in resumed)
    assert len({round(t, 4) for t in resumed}) == 10  # fresh phases, not all at 10.0
    # behind by less than an interval: the phase is kept, no burst to catch up
    assert next_task_s(5.0, 5.1, interval_s, rng) == pytest.approx(5.2)
    assert next_task_s(5.0, 4.9, interval_s, rng) == pytest.approx(5.2)
