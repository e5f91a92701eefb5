"""Fixtures for testing drdrill itself: services whose behaviour is known exactly."""
