"""The mirror's shaped links: the WAN between regions and the links between a region's AZs.

A topology's ``network.links`` (:class:`~drdrill.mirror.topology.LinkSpec`: one-way delay, jitter,
loss, bandwidth) are applied inside the containers' network namespaces at *both* ends (each end
delays what it receives from the other, and limits what it sends to it), so a round trip costs
``2 x delay_ms``:

* a container on the wan (a regional ALB, a DR Patroni member) shapes its traffic with the wan
  addresses of *other regions* (never with the global entry: it stands for DNS, not a hop);
* a container of AZ X shapes its traffic with the containers of the region's other AZs (regional
  parts, the ALB and a regional Redis, have no AZ: their traffic is not shaped).

How, and why not ``tc netem``: the kernels drdrill runs on here (Firecracker guests, 6.x) are built
without ``sch_netem`` and ``sch_prio`` (CONFIG_NET_SCH_NETEM is not set; ``tc`` answers "Specified
qdisc kind is unknown"), and ``docker exec --privileged`` is refused ("unable to apply caps").
So, from the host with ``nsenter`` (root) in each container's namespaces:

* delay, jitter and loss: an ``iptables`` mangle/PREROUTING rule per shaped peer sends the packets
  *received* from it to an NFQUEUE (on ingress: a packet held on egress still counts against its
  sending socket's TCP small-queue budget, which cut a 70 ms transfer to 160 KB/s; netem orphans
  its packets for that reason, an NFQUEUE cannot) (``--queue-bypass``: unshaped, never blocked, when nothing listens); a small
  stdlib-only Python delayer (:data:`DELAYER`) run with the container's own ``python3`` in its pid
  namespace (so it dies with the container) gives each packet its verdict after the delay (FIFO per
  queue: jitter never reorders), or drops it (loss);
* bandwidth: an ``htb`` root qdisc with one class per rate and u32 filters on the destination
  (unclassified traffic goes straight through, unshaped).

Everything is computed from the *live* containers (``docker inspect``: service replicas have
dynamic addresses) by the pure :func:`plan_rules` and :func:`commands`, and :func:`shape` is
idempotent, so the mirror calls it after anything that (re)creates a network namespace: ``up``
(before the mirror is declared healthy), the undo of a fault, scaling, a redeploy, a rebuild. A
container Docker restarts (restart policy, after ``kill``) gets a *new* namespace, unshaped until the
next :func:`shape` (measured: the qdisc and the rules are gone after ``docker restart``).

The current degradation (:func:`degrade`, undone by :func:`restore`) lives in the state file's
``links`` section, so another process can restore it and a reshape keeps it::

    "links": {"configured": {"wan": {"delay_ms": 35.0, ...}, "az": {...}},
              "degraded": {"wan": {"spec": {"delay_ms": 150.0, ...}, "region": null}}}

:func:`measure_rtt_ms` measures (not configures) each link's round trip: the median TCP connect
time, inside a container, from the DR Patroni member to the primary ALB's wan address (the
replication path) and, per region, between containers of two AZs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import docker
import docker.errors

from drdrill.errors import TargetError
from drdrill.mirror.faults import parallel
from drdrill.mirror.plan import ETCD_PORT, LABEL, SQL_PORT, WAN
from drdrill.mirror.state import MirrorState, load_state
from drdrill.mirror.topology import LINKS, LinkSpec, bandwidth_bits

__all__ = [
    "DELAYER",
    "Commands",
    "Node",
    "Rule",
    "check_degradation",
    "clear",
    "commands",
    "configured",
    "degrade",
    "degraded",
    "measure_rtt_ms",
    "heal",
    "partition",
    "partition_script",
    "plan_rules",
    "record_configured",
    "restore",
    "shape",
]

UNSHAPED_AZS = ("regional", "global", "")
CHAIN = "DRDRILL-LINKS"
PIDFILE = "/tmp/.drdrill-links.pid"

# The delayer: bound to NFQUEUE queues, it gives each queued packet its verdict after the queue's
# delay (+- jitter, FIFO per queue) or drops it (loss). argv[1]: {"queue": [delay_s, jitter_s, loss_pct]}.
# Netlink (nfnetlink_queue.h): config cmd BIND, copy mode META, maxlen, flags FAIL_OPEN|GSO.
DELAYER = r"""
import heapq, json, os, random, select, signal, socket, struct, sys, time
PIDFILE = "/tmp/.drdrill-links.pid"
queues = {int(q): v for q, v in json.loads(sys.argv[1]).items()}
try:
    old = int(open(PIDFILE).read())
    # the file outlives a container restart; its pid may now be anyone's (etcd's, once): only a delayer
    with open(f"/proc/{old}/cmdline", "rb") as fh:
        delayer = old != os.getpid() and PIDFILE.encode() in fh.read()
    if delayer:
        os.kill(old, signal.SIGTERM)
        for _ in range(100):
            if not os.path.exists(f"/proc/{old}"):
                break
            time.sleep(0.02)
except (OSError, ValueError):
    pass
with open(PIDFILE, "w") as fh:
    fh.write(str(os.getpid()))
NFQ = 3 << 8
def attr(kind, data):
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)
def message(kind, queue, *attrs, flags=1):
    body = struct.pack("=BBH", 0, 0, socket.htons(queue)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), NFQ | kind, flags, 0, 0) + body
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
sock.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)
sock.bind((0, 0))
def config(queue, *attrs):
    sock.send(message(2, queue, *attrs, flags=5))
    reply = sock.recv(65536)
    return struct.unpack_from("=i", reply, 16)[0] if len(reply) >= 20 else 0
for queue in queues:
    for _ in range(150):
        if config(queue, attr(1, struct.pack("!BxH", 1, 2))) == 0:
            break
        time.sleep(0.02)
    else:
        sys.exit(f"cannot bind NFQUEUE {queue}")
    config(queue, attr(2, struct.pack("!IB", 0, 1)))
    config(queue, attr(3, struct.pack("!I", 65536)))
    config(queue, attr(4, struct.pack("!I", 5)), attr(5, struct.pack("!I", 5)))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
heap, last, seq = [], {}, 0
while True:
    timeout = max(0.0, heap[0][0] - time.monotonic()) if heap else None
    if select.select([sock], [], [], timeout)[0]:
        try:
            data = sock.recv(1 << 20)
        except OSError:
            data = b""
        now, off = time.monotonic(), 0
        while off + 20 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            if kind == NFQ:
                queue = socket.ntohs(struct.unpack_from("=H", data, off + 18)[0])
                pos = off + 20
                while pos + 8 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, pos)
                    if alen < 4:
                        break
                    if atype & 0x3FFF == 1:
                        pid = struct.unpack_from("!I", data, pos + 4)[0]
                        delay, jitter, loss = queues.get(queue, (0.0, 0.0, 0.0))
                        if random.random() * 100 < loss:
                            when, verdict = now, 0
                        else:
                            when = max(now + delay + random.uniform(-jitter, jitter), last.get(queue, 0.0))
                            last[queue], verdict = when, 1
                        seq += 1
                        heapq.heappush(heap, (when, seq, queue, pid, verdict))
                        break
                    pos += (alen + 3) & ~3
            off += (length + 3) & ~3
    now, out = time.monotonic(), []
    while heap and heap[0][0] <= now:
        _, _, queue, pid, verdict = heapq.heappop(heap)
        out.append(message(1, queue, attr(2, struct.pack("!II", verdict, pid))))
    if out:
        try:
            sock.send(b"".join(out))
        except OSError:
            pass
"""

_RTT_PROBE = r"""
import socket, statistics, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(n):
    s = socket.socket()
    s.settimeout(5)
    t = time.perf_counter()
    try:
        s.connect((ip, port))
        out.append((time.perf_counter() - t) * 1000)
    except OSError:
        pass
    finally:
        s.close()
print(statistics.median(out) if out else -1)
"""


# --------------------------------------------------------------------------------- the pure plan


@dataclass(frozen=True)
class Node:
    """A running mirror container as the shaping sees it: where it is and its address per network."""

    name: str
    region: str  # a region, or "global"
    az: str  # an AZ, "regional" or "global"
    role: str
    ips: Mapping[str, str]  # network key ("wan" or a region) -> IPv4 address
    pid: int = 0  # its init's pid on the host (for nsenter)
    id: str = ""


@dataclass(frozen=True)
class Rule:
    """A container's traffic with ``peer`` (an address) crosses ``link``, shaped as ``spec``."""

    peer: str
    link: str
    spec: LinkSpec


def effective(link: str, links: Mapping[str, LinkSpec], degradation: Mapping[str, Any],
              regions: Iterable[str]) -> LinkSpec:  # fmt: skip
    """``link``'s spec between ``regions``: degraded if a degradation of it covers one of them."""
    spec = links.get(link, LinkSpec())
    entry = degradation.get(link)
    if entry and (entry.get("region") is None or entry["region"] in set(regions)):
        return LinkSpec(**entry["spec"])
    return spec


def plan_rules(nodes: Iterable[Node], links: Mapping[str, LinkSpec],
               degradation: Mapping[str, Any] | None = None) -> dict[str, list[Rule]]:  # fmt: skip
    """Container name -> its shaped peers (pure; containers without any are left out)."""
    nodes = list(nodes)
    degradation = degradation or {}
    plan: dict[str, list[Rule]] = {}
    for node in nodes:
        rules: list[Rule] = []
        if WAN in node.ips and node.region != "global":
            for other in nodes:
                if WAN in other.ips and other.region not in (node.region, "global"):
                    spec = effective(WAN, links, degradation, (node.region, other.region))
                    rules.append(Rule(other.ips[WAN], WAN, spec))
        if node.az not in UNSHAPED_AZS and node.region in node.ips:
            for other in nodes:
                if (other.region == node.region and other.az not in (*UNSHAPED_AZS, node.az)
                        and node.region in other.ips):  # fmt: skip
                    spec = effective("az", links, degradation, (node.region,))
                    rules.append(Rule(other.ips[node.region], "az", spec))
        rules = [r for r in rules if r.spec.delays or r.spec.bandwidth]
        if rules:
            plan[node.name] = sorted(rules, key=lambda r: (r.link, r.peer))
    return plan


@dataclass(frozen=True)
class Commands:
    """What shapes one container: a shell script of ``tc`` (bandwidth), an ``iptables-restore``
    input (packets to the delayer's queues) and the delayer's queues (number -> delay_s, jitter_s,
    loss_pct)."""

    tc: str
    iptables: str
    queues: Mapping[int, tuple[float, float, float]]


_DEVICES = "$(ip -o link show | sed -n 's/^[0-9]*: \\([^:@]*\\).*/\\1/p' | grep -v '^lo$')"


def commands(rules: list[Rule]) -> Commands:
    """The commands that shape a container with ``rules`` (pure); ``[]`` clears it."""
    delayed = sorted({r.spec for r in rules if r.spec.delays}, key=repr)
    rated = sorted({r.spec.bandwidth for r in rules if r.spec.bandwidth}, key=lambda b: bandwidth_bits(b))
    queue_of = {spec: n for n, spec in enumerate(delayed)}
    class_of = {rate: 10 + n for n, rate in enumerate(rated)}
    tc = [f"for dev in {_DEVICES}; do", '  tc qdisc del dev "$dev" root 2>/dev/null || true']
    if rated:
        tc.append('  tc qdisc add dev "$dev" root handle 1: htb')
        tc += [f'  tc class add dev "$dev" parent 1: classid 1:{cls} htb rate {rate}'
               for rate, cls in class_of.items()]  # fmt: skip
        tc += [f'  tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip dst '
               f"{r.peer}/32 flowid 1:{class_of[r.spec.bandwidth]}"
               for r in rules if r.spec.bandwidth]  # fmt: skip
    tc.append("done")
    ipt = ["*mangle", *(f":{c} ACCEPT [0:0]" for c in
                        ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"))]  # fmt: skip
    if delayed:
        ipt += [f":{CHAIN} - [0:0]", f"-A PREROUTING -j {CHAIN}"]
        ipt += [f"-A {CHAIN} -s {r.peer}/32 -j NFQUEUE --queue-num {queue_of[r.spec]} --queue-bypass"
                for r in rules if r.spec.delays]  # fmt: skip
    ipt.append("COMMIT")
    queues = {n: (s.delay_ms / 1000, s.jitter_ms / 1000, s.loss_pct) for s, n in queue_of.items()}
    return Commands("set -e\n" + "\n".join(tc) + "\n", "\n".join(ipt) + "\n", queues)


def check_degradation(link: str, delay_ms: Any = None, loss_pct: Any = None, bandwidth: Any = None,
                      jitter_ms: Any = None, regions: Iterable[str] | None = None,
                      region: str | None = None) -> list[str]:  # fmt: skip
    """What is wrong with a degradation's arguments (empty: nothing), each naming the valid choices."""
    problems = []
    if link not in LINKS:
        problems.append(f"unknown link {link!r}; links are {', '.join(LINKS)}")
    for name, value, high in (("delay_ms", delay_ms, None), ("jitter_ms", jitter_ms, None),
                              ("loss_pct", loss_pct, 100)):  # fmt: skip
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                high is not None and value > high):  # fmt: skip
            bound = f"0..{high}" if high else ">= 0"
            problems.append(f"{name} must be a number {bound}, got {value!r}")
    if bandwidth is not None:
        try:
            bandwidth_bits(bandwidth)
        except ValueError as exc:
            problems.append(f"bandwidth: {exc}")
    if region is not None and regions is not None and region not in set(regions):
        problems.append(f"no region {region!r}; regions are {', '.join(regions)}")
    return problems


# ------------------------------------------------------------------------------- the state's links


def record_configured(state: MirrorState, links: Mapping[str, LinkSpec]) -> None:
    """Write the topology's links into ``state`` (``up`` does, before the first shaping)."""
    state.data["links"] = {"configured": {k: asdict(v) for k, v in links.items()}, "degraded": {}}


def _section(state: MirrorState) -> dict[str, Any]:
    """The state's links section, re-read from its file when it has one (another process may have
    degraded or restored a link since ``state`` was loaded)."""
    if state.path is not None and state.path.exists():
        try:
            fresh = load_state(state.path).data
        except TargetError:
            fresh = {}
        if fresh.get("mirror_id") == state.mirror_id and "links" in fresh:
            state.data["links"] = fresh["links"]
    return state.data.setdefault("links", {"configured": {}, "degraded": {}})


def _write_section(state: MirrorState, section: dict[str, Any]) -> None:
    state.data["links"] = section
    if state.path is not None and state.path.exists():
        fresh = load_state(state.path)
        if fresh.mirror_id == state.mirror_id:
            fresh.data["links"] = section
            fresh.save()


def configured(state: MirrorState) -> dict[str, LinkSpec]:
    """The links as the mirror's topology configured them."""
    return {k: LinkSpec(**v) for k, v in _section(state).get("configured", {}).items()}


def degraded(state: MirrorState) -> dict[str, Any]:
    """The degradation in force: link -> {"spec": {...}, "region": None | region}."""
    return dict(_section(state).get("degraded", {}))


# ---------------------------------------------------------------------------------- on the mirror


def _client(client: docker.DockerClient | None) -> docker.DockerClient:
    return client or docker.from_env(timeout=60)


def nodes(state: MirrorState, client: docker.DockerClient | None = None) -> list[Node]:
    """The mirror's running containers with their addresses now (paused and stopped ones left out)."""
    client = _client(client)
    key_of = {n["name"]: n["key"] for n in state.data["networks"]}
    listed = client.api.containers(filters={"label": f"{LABEL}={state.mirror_id}", "status": "running"})

    def node(c: dict[str, Any]) -> Node | None:
        labels = c.get("Labels") or {}
        if labels.get("drdrill.role") == "probe":
            return None
        try:
            info = client.api.inspect_container(c["Id"])
        except docker.errors.NotFound:
            return None
        if not info["State"].get("Running") or info["State"].get("Paused"):
            return None
        nets = info["NetworkSettings"]["Networks"] or {}
        ips = {key_of[n]: ep["IPAddress"] for n, ep in nets.items() if n in key_of and ep.get("IPAddress")}
        return Node(info["Name"].lstrip("/"), labels.get("drdrill.region", ""),
                    labels.get("drdrill.az", ""), labels.get("drdrill.role", ""), ips,
                    int(info["State"].get("Pid") or 0), c["Id"])  # fmt: skip

    return sorted((n for n in parallel(node, listed) if n is not None), key=lambda n: n.name)


def _nsenter(node: Node, namespaces: list[str], argv: list[str], stdin: str | None = None) -> None:
    if os.geteuid() != 0:
        raise TargetError("shaping the mirror's links needs root on the Docker host (nsenter into the "
                          "containers' network namespaces); run as root or set every link to 0 ms")
    done = subprocess.run(["nsenter", "-t", str(node.pid), *namespaces, "--", *argv], input=stdin,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0 and "No such process" not in done.stderr:
        raise TargetError(f"shaping {node.name} failed ({' '.join(argv[:2])}): {done.stderr.strip()[-300:]}")


def _apply(node: Node, rules: list[Rule]) -> None:
    if not rules and os.geteuid() != 0:
        return  # nothing to shape, and as no-one but root can have shaped it, nothing to clear
    plan = commands(rules)
    _nsenter(node, ["-n"], ["sh", "-c", plan.tc])
    _nsenter(node, ["-n"], ["iptables-restore", "-w"], stdin=plan.iptables)
    if plan.queues:  # detached: it lives in the container's pid namespace and dies with it
        subprocess.Popen(
            ["nsenter", "-t", str(node.pid), "-n", "-m", "-p", "--", "python3", "-c", DELAYER,
             json.dumps({str(q): v for q, v in plan.queues.items()})],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    else:
        # only a delayer: the file outlives a container restart, and its pid may now be another's
        _nsenter(node, ["-m", "-p"], ["sh", "-c", f"test -f {PIDFILE} && grep -qF {PIDFILE} "
                                                  f"/proc/$(cat {PIDFILE})/cmdline && kill $(cat {PIDFILE}); "
                                                  f"rm -f {PIDFILE}; true"])  # fmt: skip


def shape(state: MirrorState, client: docker.DockerClient | None = None) -> dict[str, Any]:
    """(Re)apply the links (configured, or degraded) to every running container; idempotent."""
    t0 = time.monotonic()
    client = _client(client)
    links = configured(state)
    degradation = degraded(state)
    live = nodes(state, client)
    plan = plan_rules(live, links, degradation)
    parallel(lambda n: _apply(n, plan.get(n.name, [])), [n for n in live if n.pid])
    return {
        "containers": len(plan),
        "rules": sum(len(r) for r in plan.values()),
        "links": {k: _describe(k, links, degradation) for k in links},
        "seconds": round(time.monotonic() - t0, 2),
    }


PARTITION_CHAIN = "DRDRILL-PARTITION"


def partition_script(peers: Iterable[str]) -> str:
    """The shell script that makes a container drop every packet from ``peers`` (pure): a ``filter``
    INPUT chain, which also drops what the delayer still holds from them when it lets it go."""
    lines = [f"iptables -w -N {PARTITION_CHAIN} 2>/dev/null || true",
             f"iptables -w -C INPUT -j {PARTITION_CHAIN} 2>/dev/null || iptables -w -I INPUT -j {PARTITION_CHAIN}"]
    lines += [f"iptables -w -A {PARTITION_CHAIN} -s {ip}/32 -j DROP" for ip in sorted(set(peers))]
    return "set -e\n" + "\n".join(lines) + "\n"


def partition(state: MirrorState, isolated_ids: Iterable[str],
              client: docker.DockerClient | None = None) -> dict[str, Any]:  # fmt: skip
    """Cut the containers ``isolated_ids`` off at once, as a network partition does, before Docker
    disconnects them one by one: every other running container drops their packets from now on,
    including those still "on the wire" — held by its delayer (a shaped link delays what a container
    *receives*), which a real partition loses. So a region isolated while it replicates across the
    WAN loses the WAL in flight, and users stop getting answers from it at the same instant.
    Undone by :func:`heal`."""
    t0 = time.monotonic()
    client = _client(client)
    isolated_ids = set(isolated_ids)
    live = nodes(state, client)
    cut = sorted({ip for n in live if n.id in isolated_ids for ip in n.ips.values()})
    others = [n for n in live if n.id not in isolated_ids and n.pid]
    if cut:
        script = partition_script(cut)
        # the containers whose links with the isolated ones are shaped (the DR replica receiving the
        # WAL) first, then the rest (the global entry: users' answers): parallel nsenters land tens of
        # ms apart on a busy machine, and cutting users first would hide the WAL in flight
        plan = plan_rules(live, configured(state), degraded(state))
        shaped = {n.name for n in others if any(r.peer in cut for r in plan.get(n.name, []))}
        for phase in ([n for n in others if n.name in shaped], [n for n in others if n.name not in shaped]):
            parallel(lambda n: _nsenter(n, ["-n"], ["sh", "-c", script]), phase)
    return {"addresses": cut, "containers": len(others) if cut else 0,
            "seconds": round(time.monotonic() - t0, 3)}


def heal(state: MirrorState, client: docker.DockerClient | None = None) -> None:
    """Undo every :func:`partition` (the undo of an isolation calls it once the containers are back)."""
    script = f"iptables -w -F {PARTITION_CHAIN} 2>/dev/null || true"
    parallel(lambda n: _nsenter(n, ["-n"], ["sh", "-c", script]), [n for n in nodes(state, client) if n.pid])


def clear(state: MirrorState, client: docker.DockerClient | None = None) -> dict[str, Any]:
    """Remove every link's shaping from every running container (the degradation stays recorded)."""
    t0 = time.monotonic()
    live = [n for n in nodes(state, client) if n.pid]
    parallel(lambda n: _apply(n, []), live)
    return {"containers": len(live), "seconds": round(time.monotonic() - t0, 2)}


def degrade(state: MirrorState, link: str, delay_ms: float | None = None,
            loss_pct: float | None = None, bandwidth: str | None = None,
            jitter_ms: float | None = None, region: str | None = None, source: str = "fault",
            client: docker.DockerClient | None = None) -> dict[str, Any]:  # fmt: skip
    """Degrade ``link`` (fields not given keep the configured value; ``region``: only the link's part
    touching that region), record it in the state file, reshape. TargetError before any change when
    an argument is bad. ``source``: ``fault`` (a chaos action: undone with the faults) or ``drill``
    (a scenario's condition: undone when the drill closes)."""
    problems = check_degradation(link, delay_ms, loss_pct, bandwidth, jitter_ms, state.regions, region)
    if problems:
        raise TargetError(f"cannot degrade link {link!r}: " + "; ".join(problems))
    section = _section(state)
    base = configured(state).get(link, LinkSpec())
    spec = replace(base, **{k: v for k, v in (("delay_ms", delay_ms), ("loss_pct", loss_pct),
                                              ("jitter_ms", jitter_ms)) if v is not None})  # fmt: skip
    if bandwidth is not None:
        spec = replace(spec, bandwidth=str(bandwidth).strip().lower().replace(" ", ""))
    spec = replace(spec, delay_ms=float(spec.delay_ms), jitter_ms=float(spec.jitter_ms),
                   loss_pct=float(spec.loss_pct))  # fmt: skip
    section.setdefault("degraded", {})[link] = {"spec": asdict(spec), "region": region, "source": source}
    _write_section(state, section)
    result = shape(state, client)
    return {**result, "link": link, "spec": asdict(spec), "region": region}


def restore(state: MirrorState, client: docker.DockerClient | None = None,
            source: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Back to the topology's links: forget the degradations (only those of ``source`` if given) and
    reshape; nothing degraded: nothing done."""
    section = _section(state)
    degradation = section.get("degraded", {})
    was = sorted(k for k, v in degradation.items() if source is None or v.get("source") == source)
    if not was:
        return {"restored": []}
    section["degraded"] = {k: v for k, v in degradation.items() if k not in was}
    _write_section(state, section)
    return {**shape(state, client), "restored": was}


def _describe(link: str, links: Mapping[str, LinkSpec], degradation: Mapping[str, Any]) -> str:
    text = links[link].describe()
    entry = degradation.get(link)
    if entry:
        where = f" ({entry['region']})" if entry.get("region") else ""
        text += f"; degraded{where} to {LinkSpec(**entry['spec']).describe()}"
    return text


def _connect_ms(client: docker.DockerClient, src: Node, dst_ip: str, port: int, count: int) -> float:
    run = client.api.exec_create(src.id, ["python3", "-c", _RTT_PROBE, dst_ip, str(port), str(count)])
    out = client.api.exec_start(run["Id"]).decode(errors="replace").strip().splitlines()
    try:
        value = float(out[-1])
    except (IndexError, ValueError):
        return float("nan")
    return value if value >= 0 else float("nan")


def measure_rtt_ms(state: MirrorState, client: docker.DockerClient | None = None,
                   count: int = 5) -> dict[str, float]:  # fmt: skip
    """MEASURED round trip per link (median TCP connect time of ``count``, inside a container):
    ``wan`` from the DR Patroni member to the primary ALB's wan address (the replication path),
    ``az:<region>`` between containers of two AZs of the region. A link with no such pair is absent."""
    client = _client(client)
    live = nodes(state, client)
    pairs: dict[str, tuple[Node, str, int]] = {}
    primary, dr = state.primary_region, state.dr_region
    alb = next((n for n in live if n.role == "alb" and n.region == primary and WAN in n.ips), None)
    replica = next((n for n in live if n.role == "postgres" and n.region == dr and WAN in n.ips), None)
    if alb and replica:
        pairs["wan"] = (replica, alb.ips[WAN], SQL_PORT)
    ports = {"etcd": ETCD_PORT, "postgres": SQL_PORT}
    for region in state.regions:
        inside = [n for n in live if n.region == region and n.az not in UNSHAPED_AZS and region in n.ips]
        targets = [n for n in inside if n.role in ports]
        pair = next(((src, dst) for dst in targets for src in inside if src.az != dst.az), None)
        if pair:
            pairs[f"az:{region}"] = (pair[0], pair[1].ips[region], ports[pair[1].role])
    keys = list(pairs)
    values = parallel(lambda k: _connect_ms(client, pairs[k][0], pairs[k][1], pairs[k][2], count), keys)
    return {k: round(v, 3) for k, v in zip(keys, values, strict=True)}
