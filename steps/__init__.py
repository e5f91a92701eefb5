"""Gherkin step definitions for drills: thin calls into drdrill, one module per concern."""
