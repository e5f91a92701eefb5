"""Chaos Toolkit provider functions for the local mirror: ``actions`` (verbs) and ``probes`` (nouns)."""
