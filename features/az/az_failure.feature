@mirror @az
Feature: Availability zone failure — AZ a of the primary region is lost
  The DR plan: "Our EKS cluster, RDS instances, and ElastiCache are already deployed across multiple
  AZs. Kubernetes and AWS will automatically shift traffic to healthy AZs." On the local mirror every
  container of AZ a (an etcd member, the database leader, service replicas) loses power, or its
  network. The critical services must shift to AZs b and c by themselves. (In the shipped topology
  storefront and analytics run one replica, in AZ a: they stay down until the AZ returns, which the
  non-critical RTO shows.)

  Scenario Outline: The critical services shift to the healthy AZs when AZ a <fault>
    Given the platform under test is healthy
    And synthetic traffic of 10 users at 4 requests per second each is running
    When the experiment "<experiment>" runs
    And the platform has recovered
    Then the critical services recover within their RTO objective
    And the critical services recover within 90 seconds
    And the non-critical services recover within their RTO objective
    And no acknowledged financial write is lost

    @nightly @annual
    Examples: power loss
      | fault           | experiment    |
      | loses power     | az-power-loss |

    @annual
    Examples: network isolation
      | fault                 | experiment   |
      | is cut off the network | az-isolation |
