@mirror @service
Feature: Single service failure — a microservice crashes
  The DR plan: "Handled by Kubernetes self-healing (pod restarts) and our standard Incident Response
  Plan. Not a DR event." On the local mirror the payments process crashes in every replica at once;
  the orchestrator's restart policy brings it back. Measured anyway: how long could users not pay?

  @nightly @annual
  Scenario: The orchestrator restarts a crashed payments service before users notice much
    Given the platform under test is healthy
    And synthetic traffic of 10 users at 4 requests per second each is running
    When the experiment "service-failure" runs
    And the platform has recovered
    Then payments recovers within 60 seconds
    And the critical services recover within their RTO objective
    And no acknowledged financial write is lost
