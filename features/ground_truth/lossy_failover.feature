@groundtruth
Feature: Measured recovery against a service whose outage and data loss are known exactly
  The ground-truth service fails over: it drops every write of the last 2 seconds and refuses
  connections for exactly 5 seconds. The drill must measure that, from what users saw.

  Scenario: A lossy failover is measured to the tenth of a second
    Given the platform under test is healthy
    And synthetic traffic of 10 users is running
    When the experiment "ground-truth-lossy-failover" runs
    And the platform has recovered
    Then every service recovers within 30 seconds
    And the critical services recover within their RTO objective
    And the financial data loss is within its RPO objective
    And the financial data loss is at most 3 seconds
