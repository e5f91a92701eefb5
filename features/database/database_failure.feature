@mirror @database
Feature: Database failure — the primary database fails
  The DR plan: "Failover to the multi-AZ standby replica in RDS. This is an automated process with
  minimal downtime." On the local mirror the Patroni leader (the RDS primary analog) crashes, or
  hangs — the nastier variant: a frozen host still believes it leads when it wakes up. Its
  synchronous standby in another AZ must take over with no acknowledged payment lost.

  Scenario Outline: The synchronous standby takes over when the primary database <fault>
    Given the platform under test is healthy
    And synthetic traffic of 10 users at 4 requests per second each is running
    When the experiment "<experiment>" runs
    And the platform has recovered
    Then the critical services recover within their RTO objective
    And every service recovers within 90 seconds
    And no acknowledged financial write is lost
    And the financial data loss is within its RPO objective
    And every payment left pending is reconciled within 60 seconds

    @nightly @annual
    Examples: crash
      | fault   | experiment            |
      | crashes | database-leader-crash |

    @annual
    Examples: hang
      | fault | experiment           |
      | hangs | database-leader-hang |
