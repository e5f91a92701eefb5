@mirror
Feature: Database failure — the primary database crashes
  The DR plan: "Failover to the multi-AZ standby replica. This is an automated process with minimal
  downtime." On the local mirror the Patroni leader is killed; its synchronous standby in another AZ
  must take over with no acknowledged payment lost.

  Scenario: The synchronous standby takes over with no acknowledged payment lost
    Given the platform under test is healthy
    And synthetic traffic of 10 users is running
    When the experiment "database-leader-crash" runs
    And the platform has recovered
    Then the critical services recover within their RTO objective
    And every service recovers within 60 seconds
    And no acknowledged financial write is lost
    And the financial data loss is within its RPO objective
