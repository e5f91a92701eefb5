"""HTTP/1.1 for the platform service: the request-body checks, the request handler and the server.

:class:`Handler` reads a request (Content-Length or chunked body, at most ``MAX_BODY_BYTES``),
hands it to the app (:meth:`drdrill.mirror.platform.server.App.handle`: method, target, body ->
status, JSON body) and writes the answer in one write, with the app's ``extra_headers``
(``X-Served-By``, ``X-Region``, ``X-Replica``). :class:`HttpError` (with ``allow`` and
``json_object``, from :mod:`drdrill.httpbody`, which the node image holds beside the platform) and
the checks below are what a route raises for a bad request. Stdlib only.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from drdrill.httpbody import HttpError, allow, json_object

if TYPE_CHECKING:
    from .server import App

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_KEY_CHARS",
    "Handler",
    "HttpError",
    "Server",
    "allow",
    "json_object",
    "key_field",
    "make_server",
    "string_field",
]

MAX_BODY_BYTES = 1024 * 1024
MAX_KEY_CHARS = 256
IDLE_CONNECTION_S = 300.0

REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}  # fmt: skip






def string_field(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise HttpError(400, f"{name} must be a non-empty string")
    return value


def key_field(payload: dict[str, Any]) -> str:
    key = string_field(payload, "key")
    if len(key) > MAX_KEY_CHARS:
        raise HttpError(400, f"key longer than {MAX_KEY_CHARS} characters")
    return key


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "drdrill-platform"
    sys_version = ""
    timeout = IDLE_CONNECTION_S  # an idle keep-alive connection is closed after this
    disable_nagle_algorithm = True
    app: App  # set on the subclass made by make_server

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked()
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self._reply(400, {"error": "bad Content-Length"}, close=True)
                return
            if length > MAX_BODY_BYTES:
                self._reply(413, {"error": "body too large"}, close=True)
                return
            body = self.rfile.read(length) if length else b""
            if len(body) != length:
                self.close_connection = True
                return
        if body is None:
            return
        status, obj = self.app.handle(self.command, self.path, body)
        self._reply(status, obj)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._reply(400, {"error": "bad chunk size"}, close=True)
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self._reply(413, {"error": "body too large"}, close=True)
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _reply(self, status: int, obj: Any, close: bool = False) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        if close:
            self.close_connection = True
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
        if self.close_connection:
            head += "Connection: close\r\n"
        out = head.encode("latin-1") + self.app.extra_headers + b"\r\n"
        if self.command != "HEAD":
            out += body
        self.wfile.write(out)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed requests and unknown methods: the same JSON + X-Served-By as every answer.
        self.close_connection = True
        try:
            self._reply(code, {"error": message or REASONS.get(code, "error")}, close=True)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one line per request would cost more than the request


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away: not news
            return
        super().handle_error(request, client_address)


def make_server(app: App, host: str, port: int) -> Server:
    handler = type("BoundHandler", (Handler,), {"app": app})
    return Server((host, port), handler)
