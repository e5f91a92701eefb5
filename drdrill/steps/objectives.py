"""Steps that judge the drill: measured RTO per service or tier, data loss per data class, sagas.

Each records its objective in the run directory (so ``drdrill check`` judges it again) and fails the
scenario on INVALID (AssertionError) or marks it broken on UNKNOWN (Indeterminate).
"""

from __future__ import annotations

from pytest_bdd import parsers, then

from drdrill.catalog import DATA_CLASSES, TIERS
from drdrill.pytest_plugin import require

TIER = f"(?P<tier>{'|'.join(TIERS)})"
DATA_CLASS = f"(?P<data_class>{'|'.join(DATA_CLASSES)})"


@then(parsers.parse("every service recovers within {seconds:g} seconds"))
def _(drill, seconds: float):
    """Every tier's measured RTO is below this many seconds.

    Example: ``Then every service recovers within 60 seconds``
    """
    for tier in drill.config.rto_objective_s:
        if drill.config.services_in_tier(tier):
            require(drill.judge("rto", tier, seconds, f"every service recovers within {seconds:g} seconds"))


@then(parsers.re(f"the {TIER} services recover within their RTO objective"))
def _(drill, tier: str):
    """The tier's measured RTO is below its objective from the config (critical < 1 h, non-critical < 4 h).

    Example: ``Then the critical services recover within their RTO objective``
    """
    require(drill.judge("rto", tier, drill.config.rto_objective_s[tier],
                        f"the {tier} services recover within their RTO objective"))


@then(parsers.re(f"the {TIER} services recover within " + r"(?P<seconds>\d+(?:\.\d+)?) seconds"))
def _(drill, tier: str, seconds: str):
    """The tier's measured RTO is below this many seconds.

    Example: ``Then the critical services recover within 90 seconds``
    """
    require(drill.judge("rto", tier, float(seconds), f"the {tier} services recover within {seconds} seconds"))


@then(parsers.re(f"the failback's {TIER} services recover within their RTO objective"))
def _(drill, tier: str):
    """The failback's own outage (from its maintenance window) for the tier is below its RTO objective.

    Example: ``Then the failback's critical services recover within their RTO objective``
    """
    require(drill.judge("rto-failback", tier, drill.config.rto_objective_s[tier],
                        f"the failback's {tier} services recover within their RTO objective"))


@then(parsers.re(f"the failback's {TIER} services recover within " + r"(?P<seconds>\d+(?:\.\d+)?) seconds"))
def _(drill, tier: str, seconds: str):
    """The failback's own outage for the tier is below this many seconds.

    Example: ``Then the failback's critical services recover within 120 seconds``
    """
    require(drill.judge("rto-failback", tier, float(seconds),
                        f"the failback's {tier} services recover within {seconds} seconds"))


@then(parsers.re(r"(?P<service>[a-z][a-z0-9_-]*) recovers within (?P<seconds>\d+(?:\.\d+)?) seconds"))
def _(drill, service: str, seconds: str):
    """One service's measured RTO is below this many seconds.

    Example: ``Then payments recovers within 60 seconds``
    """
    require(drill.judge("rto", service, float(seconds), f"{service} recovers within {seconds} seconds"))


@then(parsers.re(f"the {DATA_CLASS} data loss is within its RPO objective"))
def _(drill, data_class: str):
    """The data class's data loss window is below its RPO objective (financial < 5 min, other < 1 h).

    Example: ``Then the financial data loss is within its RPO objective``
    """
    require(drill.judge("rpo", data_class, drill.config.rpo_objective_s[data_class],
                        f"the {data_class} data loss is within its RPO objective"))


@then(parsers.re(f"the {DATA_CLASS} data loss is at most " + r"(?P<seconds>\d+(?:\.\d+)?) seconds"))
def _(drill, data_class: str, seconds: str):
    """The data class's data loss window is below this many seconds.

    Example: ``Then the financial data loss is at most 3 seconds``
    """
    require(drill.judge("rpo", data_class, float(seconds),
                        f"the {data_class} data loss is at most {seconds} seconds"))


@then(parsers.re(f"no acknowledged {DATA_CLASS} write is lost"))
def _(drill, data_class: str):
    """Every acknowledged write of the data class is found by the final read.

    Example: ``Then no acknowledged financial write is lost``
    """
    require(drill.judge("lost", data_class, 0, f"no acknowledged {data_class} write is lost"))


@then(parsers.re(r"at most (?P<count>\d+) acknowledged " + DATA_CLASS + " writes are lost"))
def _(drill, count: str, data_class: str):
    """At most this many acknowledged writes of the data class are missing from the final read.

    Example: ``Then at most 5 acknowledged other writes are lost``
    """
    require(drill.judge("lost", data_class, int(count),
                        f"at most {count} acknowledged {data_class} writes are lost"))


@then(parsers.re(r"every payment left pending is reconciled within (?P<seconds>\d+(?:\.\d+)?) seconds"))
def _(drill, seconds: str):
    """The payments saga settles (captures or compensates) every pending payment within this many
    seconds of the final read: in-flight transactions are reconciled once the platform is stable.

    Example: ``Then every payment left pending is reconciled within 60 seconds``
    """
    require(drill.reconcile_sagas(float(seconds),
                                  f"every payment left pending is reconciled within {seconds} seconds"))
