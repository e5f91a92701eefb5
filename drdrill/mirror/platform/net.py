"""Name resolution with a deadline: libpq and ``socket.create_connection`` resolve synchronously, and
DNS lookups stall for ~10 s in a container whose network was disconnected."""

from __future__ import annotations

import ipaddress
import socket
import threading

__all__ = ["resolve"]


def resolve(host: str, port: int, timeout_s: float) -> str:
    """The first IPv4 address of ``host`` (returned as is when it is an address); OSError on failure,
    TimeoutError when the lookup takes longer than ``timeout_s``."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    box: dict[str, object] = {}

    def work() -> None:
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
            box["addr"] = infos[0][4][0]
        except OSError as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name=f"resolve-{host}", daemon=True)
    thread.start()
    thread.join(max(timeout_s, 0.05))
    if "addr" in box:
        return str(box["addr"])
    if "error" in box:
        raise OSError(f"cannot resolve {host!r}: {box['error']}")
    raise TimeoutError(f"resolving {host!r} took over {timeout_s:.1f} s")
