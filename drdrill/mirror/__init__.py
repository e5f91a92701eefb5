"""The local mirror: a two-region copy of the platform in Docker."""
