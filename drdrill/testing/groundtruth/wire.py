"""HTTP/1.1 for the ground-truth service: just enough of it, on asyncio streams.

:func:`read_request` reads one request (Content-Length and chunked bodies, ``Expect:
100-continue``, keep-alive, pipelining); :func:`response` builds the bytes of an answer; the
checks below raise :class:`HttpError` (status, message) for a bad request.

:class:`HttpError`, :func:`allow` and :func:`json_object` are :mod:`drdrill.httpbody`'s, shared
with the platform services.
"""

from __future__ import annotations

import asyncio
import math
import urllib.parse
from dataclasses import dataclass
from typing import Any

from drdrill.httpbody import HttpError, allow, json_object

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "HttpError",
    "Request",
    "allow",
    "json_object",
    "number",
    "read_request",
    "response",
    "segments",
    "string_field",
]

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024

REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}



@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool



async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """Read one request; None on a clean end of stream between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request head too large") from None
    text = head.decode("latin-1").lstrip("\r\n")
    if not text.strip():
        raise HttpError(400, "empty request")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"malformed header line {line[:100]!r}")
        headers[name.lower()] = value.strip()

    if target.startswith(("http://", "https://")):  # absolute-form
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    path, _, query = target.partition("?")

    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if length < 0:
            raise HttpError(400, "bad Content-Length")
        if length > MAX_BODY_BYTES:
            raise HttpError(413, "body too large")
        if length:
            body = await reader.readexactly(length)

    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        keep_alive = "keep-alive" in connection
    else:
        keep_alive = "close" not in connection
    return Request(method, path, query, headers, body, keep_alive)


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError(400, "bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise HttpError(413, "body too large")
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "bad chunk terminator")


def response(status: int, body: bytes, content_type: str, extra: bytes, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    )
    if not keep_alive:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + extra + b"\r\n" + body


def segments(path: str) -> list[str]:
    return [urllib.parse.unquote(s) for s in path.split("/") if s]


def number(payload: dict[str, Any], name: str, minimum: float, strict: bool) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HttpError(400, f"{name} must be a number of seconds")
    if value < minimum or (strict and value == minimum):
        raise HttpError(400, f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return float(value)


def string_field(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise HttpError(400, f"{name} must be a non-empty string")
    return value



