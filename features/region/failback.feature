@mirror @region @annual
Feature: The annual DR test — failover to the DR region and failback to the primary region
  The DR plan, section 6: "The team will simulate a regional outage and execute the full failover
  and failback procedure. The test is successful if the system is fully operational in the DR region
  within the defined RTO and data loss is within the RPO." Section 7: "a planned failback will be
  executed during a maintenance window ... replicating data back to the primary region and then
  reversing the DNS failover." The failback's planned outage is judged against the same objectives.

  Scenario: Failover within the objectives, then failback in a maintenance window
    Given the platform under test is healthy
    And synthetic traffic of 10 users at 4 requests per second each is running
    When the experiment "failback" runs
    And the platform has recovered
    Then every runbook step succeeded
    And users were served by the "dr" region after the fault
    And users are served by the "primary" region at the end
    And the critical services recover within their RTO objective
    And the failback's critical services recover within their RTO objective
    And the failback's critical services recover within 120 seconds
    And the financial data loss is within its RPO objective
    And the other data loss is within its RPO objective
    And every payment left pending is reconciled within 60 seconds
