@mirror @region
Feature: Region failure — the primary region is lost and the DR runbook fails over
  The DR plan's primary disaster scenario: "The entire primary AWS region is down. We will execute a
  cross-region failover to our designated DR region." The runbook of its section 4 runs, timed step
  by step: detect, declare, scale up the pilot light, promote the cross-region replica, switch DNS,
  deploy, validate with critical-path synthetic checks, post a status update. Data written in the
  primary region but not yet replicated is lost; how much is the measured RPO.

  @nightly @annual
  Scenario: Cross-region failover to the DR region within the objectives
    Given the platform under test is healthy
    And synthetic traffic of 10 users at 4 requests per second each is running
    When the experiment "cross-region-failover" runs
    And the platform has recovered
    Then every runbook step succeeded
    And the runbook step "detect" was done within 30 seconds of the fault
    And the runbook step "validate" was done within 300 seconds of the fault
    And users were served by the "dr" region after the fault
    And the critical services recover within their RTO objective
    And the non-critical services recover within their RTO objective
    And the financial data loss is within its RPO objective
    And the other data loss is within its RPO objective
    And every payment left pending is reconciled within 60 seconds

  @annual
  Scenario Outline: Without the runbook, users are down until the region returns (<fault>)
    Given the platform under test is healthy
    And synthetic traffic of 10 users at 4 requests per second each is running
    And the outage lasts 30 seconds
    When the experiment "<experiment>" runs
    And the platform has recovered
    Then the critical services recover within their RTO objective
    And no acknowledged financial write is lost

    Examples:
      | fault             | experiment        |
      | network cut       | region-isolation  |
      | power loss        | region-power-loss |

  @annual
  Scenario: Cross-region failover over a degraded WAN
    Given the platform under test is healthy
    And the WAN between the regions is degraded to 150 ms
    And synthetic traffic of 10 users at 4 requests per second each is running
    When the experiment "cross-region-failover" runs
    And the platform has recovered
    Then every runbook step succeeded
    And users were served by the "dr" region after the fault
    And the critical services recover within their RTO objective
    And the financial data loss is within its RPO objective
    And the other data loss is within its RPO objective

  @annual
  Scenario: Cross-region failover at a production write rate
    Payments at the rate production sees, over the mirror's 70 ms WAN: the writes still in flight to
    the DR region when the primary region is cut off are lost. The RPO is measured from what users
    were told and from the DR database's own replay position, side by side in the report.
    Given the platform under test is healthy
    And synthetic traffic of 10 users ramping to 200 payments per second over 10 seconds is running
    When the experiment "cross-region-failover" runs
    And the platform has recovered
    Then every runbook step succeeded
    And users were served by the "dr" region after the fault
    And the critical services recover within their RTO objective
    And the financial data loss is within its RPO objective
    And the other data loss is within its RPO objective
