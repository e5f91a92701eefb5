"""An HTTP request's method and JSON body checked, for drdrill's two stand-in platforms: stdlib only.

The reference platform services (:mod:`drdrill.mirror.platform`, copied into the mirror's node image
beside this module) and the ground-truth service (:mod:`drdrill.testing.groundtruth`) answer a bad
request the same way: :class:`HttpError` (status, message), which each server turns into its
``{"error": message}`` response.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["HttpError", "allow", "json_object"]


class HttpError(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def allow(method: str, *allowed: str) -> None:
    """405 unless ``method`` is one of ``allowed``."""
    if method not in allowed:
        raise HttpError(405, f"method {method} not allowed here (allowed: {', '.join(allowed)})")


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); 400 otherwise."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        raise HttpError(400, "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise HttpError(400, "body must be a JSON object")
    return payload
