"""HAProxy's runtime API (the stats socket on TCP, published on 127.0.0.1 only).

Every HAProxy of the mirror (the regional ALBs and the global entry) listens for runtime commands on
port 9999 in its container, published on a random 127.0.0.1 port recorded in the state file. The
global entry's DNS failover is ``set weight regions/<region> <0..256>``.
"""

from __future__ import annotations

import csv
import io
import socket

from drdrill.errors import TargetError

__all__ = ["RuntimeAPI"]


class RuntimeAPI:
    """One HAProxy's runtime API at ``host:port``; each command on its own connection."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0) -> None:
        self.host, self.port, self.timeout_s = host, int(port), timeout_s

    def __repr__(self) -> str:
        return f"RuntimeAPI({self.host}:{self.port})"

    def command(self, line: str) -> str:
        """Send one command; its answer (text). OSError when HAProxy does not answer."""
        with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as sock:
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def show_stat(self) -> list[dict[str, str]]:
        """``show stat`` as rows keyed by column name (pxname, svname, status, weight, addr, ...)."""
        text = self.command("show stat")
        if not text.startswith("# "):
            raise TargetError(f"{self}: unexpected answer to 'show stat': {text[:200]!r}")
        reader = csv.DictReader(io.StringIO(text[2:]))
        return [row for row in reader if row.get("pxname")]

    def servers(self, backend: str) -> list[dict[str, str]]:
        """The server rows of ``backend`` (no FRONTEND/BACKEND summary rows)."""
        return [
            row
            for row in self.show_stat()
            if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")
        ]

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        answer = self.command(f"set weight {backend}/{server} {int(weight)}").strip()
        if answer:  # HAProxy answers nothing on success
            raise TargetError(f"{self}: set weight {backend}/{server} {weight}: {answer}")

    def get_weight(self, backend: str, server: str) -> int:
        answer = self.command(f"get weight {backend}/{server}").strip()
        try:
            return int(answer.split()[0])  # "100 (initial 100)"
        except (IndexError, ValueError) as exc:
            raise TargetError(f"{self}: get weight {backend}/{server}: {answer!r}") from exc
