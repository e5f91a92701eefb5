"""The Docker containers and networks of a mirror: create, find published ports, read logs, remove.

Ports are published on 127.0.0.1 only. Removal tolerates what is gone already; a network Docker
still holds endpoints of is retried for a few seconds (moby#42119).
"""

from __future__ import annotations

import contextlib
import re

import docker
import docker.errors

from drdrill.errors import TargetError, WaitTimeout
from drdrill.mirror.plan import LABEL, ContainerSpec
from drdrill.mirror.state import LOCALHOST
from drdrill.waiting import wait_until

__all__ = ["create_container", "exited", "logs", "published_ports", "remove_container", "remove_network"]


def create_container(
    client: docker.DockerClient, image: str, spec: ContainerSpec, networks: dict[str, str]
) -> str:
    """Create (not start) one container of a plan; its id. Ports are published on 127.0.0.1 only."""
    api = client.api
    first, *more = spec.networks
    host_config = api.create_host_config(
        port_bindings={port: (LOCALHOST,) for port in spec.ports},
        network_mode=networks[first.network],
        restart_policy={"Name": spec.restart} if spec.restart else None,
    )
    networking = api.create_networking_config(
        {networks[first.network]: api.create_endpoint_config(
            ipv4_address=first.ip, aliases=list(first.aliases))}
    )  # fmt: skip
    created = api.create_container(
        image,
        command=spec.command,
        user=spec.user or "",
        environment=spec.env,
        labels=spec.labels,
        name=spec.name,
        hostname=spec.short,
        ports=list(spec.ports),
        host_config=host_config,
        networking_config=networking,
    )
    cid = created["Id"]
    for attachment in more:
        api.connect_container_to_network(
            cid, networks[attachment.network], ipv4_address=attachment.ip,
            aliases=list(attachment.aliases),
        )  # fmt: skip
    return cid


def published_ports(client: docker.DockerClient, cid: str) -> dict[int, int]:
    """Container port → host port, for the ports published on 127.0.0.1."""
    ports = client.api.inspect_container(cid)["NetworkSettings"]["Ports"] or {}
    out = {}
    for key, bindings in ports.items():
        for binding in bindings or []:
            if binding.get("HostIp") == LOCALHOST:
                out[int(key.split("/")[0])] = int(binding["HostPort"])
    return out


def remove_container(client: docker.DockerClient, cid: str) -> None:
    """Remove a container and its volumes, whatever its state (gone already: fine)."""
    with contextlib.suppress(docker.errors.NotFound):
        try:
            client.api.remove_container(cid, force=True, v=True)
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise


def remove_network(client: docker.DockerClient, nid: str) -> None:
    """Remove a mirror network; endpoints left over are disconnected and the removal retried for a few
    seconds (just-removed containers' endpoints can linger), then a clear error (moby#42119)."""
    with contextlib.suppress(docker.errors.NotFound):
        try:
            client.api.remove_network(nid)
            return
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
        attached = client.api.inspect_network(nid).get("Containers") or {}
        for endpoint in attached:
            with contextlib.suppress(docker.errors.APIError):
                client.api.disconnect_container_from_network(endpoint, nid, force=True)
        last: docker.errors.APIError | None = None

        def removed() -> bool:
            nonlocal last
            try:
                client.api.remove_network(nid)
                return True
            except docker.errors.APIError as again:
                if "active endpoints" not in str(again):
                    raise
                last = again
                return False

        try:
            wait_until(removed, timeout_s=5.0, interval_s=1.0, what=f"network {nid[:12]} removed")
        except WaitTimeout:
            raise TargetError(
                f"Docker refuses to remove network {nid[:12]}: {getattr(last, 'explanation', None) or last}; "
                "no container uses it (a known Docker bug, moby#42119). Restarting the Docker engine "
                "clears it; then run `drdrill mirror down --all`.") from last


def exited(client: docker.DockerClient, mirror_id: str) -> list[tuple[str, int]]:
    out = []
    for c in client.api.containers(
        all=True, filters={"label": f"{LABEL}={mirror_id}", "status": "exited"}
    ):
        if c["Labels"].get("drdrill.role") == "probe":
            continue
        code = c.get("Status", "")
        out.append((c["Names"][0].lstrip("/"), _exit_code(code)))
    return out


def _exit_code(status: str) -> int:
    match = re.search(r"Exited \((-?\d+)\)", status)
    return int(match.group(1)) if match else -1


def logs(client: docker.DockerClient, names: list[str], lines: int = 12) -> str:
    out = []
    for name in names[:6]:
        try:
            text = client.api.logs(name, tail=lines).decode(errors="replace")
        except docker.errors.APIError as exc:
            text = f"(no logs: {exc})"
        out.append(
            f"--- last lines of {name}:\n" + "\n".join("    " + ln for ln in text.splitlines())
        )
    return "\n".join(out)
