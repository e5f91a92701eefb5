"""Chaos: running Chaos Toolkit experiments against a target and recording their activities as nemesis ops."""
