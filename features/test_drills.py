"""Binds every feature file under features/ to pytest (run by `drdrill drill`)."""

from pytest_bdd import scenarios

scenarios(".")
