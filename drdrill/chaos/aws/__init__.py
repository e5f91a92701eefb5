"""Chaos Toolkit providers for the AWS mirror: actions (faults, runbook steps), probes, pre-flight control."""
