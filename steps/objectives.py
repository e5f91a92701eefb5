"""Steps that judge the drill: measured RTO per service or tier, measured data loss per data class.

Each records its objective in the run directory (so ``drdrill check`` judges it again) and fails the
scenario on INVALID (AssertionError) or marks it broken on UNKNOWN (Indeterminate).
"""

from __future__ import annotations

from pytest_bdd import parsers, then

from drdrill.pytest_plugin import require

TIER = "(?P<tier>critical|non-critical)"
DATA_CLASS = "(?P<data_class>financial|other)"


@then(parsers.parse("every service recovers within {seconds:g} seconds"))
def _(drill, seconds: float):
    for tier in drill.config.rto_objective_s:
        if drill.config.services_in_tier(tier):
            require(drill.judge("rto", tier, seconds, f"every service recovers within {seconds:g} seconds"))


@then(parsers.re(f"the {TIER} services recover within their RTO objective"))
def _(drill, tier: str):
    require(drill.judge("rto", tier, drill.config.rto_objective_s[tier],
                        f"the {tier} services recover within their RTO objective"))


@then(parsers.re(r"(?P<service>[a-z][a-z0-9_-]*) recovers within (?P<seconds>\d+(?:\.\d+)?) seconds"))
def _(drill, service: str, seconds: str):
    require(drill.judge("rto", service, float(seconds), f"{service} recovers within {seconds} seconds"))


@then(parsers.re(f"the {DATA_CLASS} data loss is within its RPO objective"))
def _(drill, data_class: str):
    require(drill.judge("rpo", data_class, drill.config.rpo_objective_s[data_class],
                        f"the {data_class} data loss is within its RPO objective"))


@then(parsers.re(f"the {DATA_CLASS} data loss is at most " + r"(?P<seconds>\d+(?:\.\d+)?) seconds"))
def _(drill, data_class: str, seconds: str):
    require(drill.judge("rpo", data_class, float(seconds),
                        f"the {data_class} data loss is at most {seconds} seconds"))


@then(parsers.re(f"no acknowledged {DATA_CLASS} write is lost"))
def _(drill, data_class: str):
    require(drill.judge("lost", data_class, 0, f"no acknowledged {data_class} write is lost"))


@then(parsers.re(r"at most (?P<count>\d+) acknowledged " + DATA_CLASS + " writes are lost"))
def _(drill, count: str, data_class: str):
    require(drill.judge("lost", data_class, int(count),
                        f"at most {count} acknowledged {data_class} writes are lost"))
