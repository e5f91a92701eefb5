"""A Docker engine for the local mirror: use the one that answers, or bootstrap one.

:func:`ensure_docker` returns a client of an answering engine. Where none answers and we are root on
a Debian-like system (``apt-get`` present), it installs ``docker.io`` if ``dockerd`` is missing and
starts ``dockerd`` in the background, in its own session, logging to
``/var/log/drdrill-dockerd.log``; it stays running after this process exits (other drills reuse it).
Elsewhere it raises :class:`~drdrill.errors.TargetError` saying what to install.

Measured on the Debian 12 CI machines (kernel 6.x, cgroup v1, ext4 root): ``dockerd`` with its
defaults works — overlay2 storage, iptables (nf_tables) NAT, the userland proxy for ports published on
127.0.0.1 — so no flags are needed. Should it exit at start (an old kernel, a filesystem without
overlay, no netfilter), the bootstrap retries with ``--storage-driver=vfs`` and then also without
iptables, and says which flags it ended with.

The bootstrap is idempotent and safe to call from concurrent processes: it holds an exclusive lock
file while installing or starting, and re-checks the engine once it holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors

from drdrill.errors import TargetError

__all__ = ["DOCKERD_FLAG_SETS", "DOCKERD_LOG", "ensure_docker"]

Progress = Callable[[str], object]

DOCKERD_LOG = Path("/var/log/drdrill-dockerd.log")
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
LOCK_FILE = Path("/run/lock/drdrill-docker.lock")
DOCKERD_PIDFILE = Path("/var/run/docker.pid")
# Tried in order until one starts and answers; the first works on the CI machines.
DOCKERD_FLAG_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("--storage-driver=vfs",),
    ("--storage-driver=vfs", "--iptables=false", "--ip6tables=false"),
)
INSTALL_HINT = (
    "Install Docker Engine and start it (https://docs.docker.com/engine/install/), or run drdrill "
    "as root on Debian/Ubuntu so it can install docker.io and start dockerd itself."
)


def ensure_docker(progress: Progress = print, timeout_s: float = 60.0) -> docker.DockerClient:
    """A client of an answering Docker engine, bootstrapping ``dockerd`` where we may."""
    client, error = _answering_client()
    if client is not None:
        return client
    why_not = _cannot_bootstrap_reason()
    if why_not:
        raise TargetError(f"No Docker engine answers ({error}); {why_not}. {INSTALL_HINT}")
    with _exclusive_lock(progress):
        client, error = _answering_client()  # another process may have started it meanwhile
        if client is not None:
            return client
        t0 = time.monotonic()
        if shutil.which("dockerd") is None:
            _install_docker_io(progress)
            progress(f"docker: installed docker.io in {time.monotonic() - t0:.1f} s")
        pid = _running_dockerd_pid()
        if pid is not None:
            progress(f"docker: dockerd (pid {pid}) is running but not answering yet; waiting")
            client = _wait_for_engine(pid, timeout_s)
            if client is None:
                raise TargetError(
                    f"dockerd (pid {pid}) runs but its socket did not answer within "
                    f"{timeout_s:.0f} s; see {DOCKERD_LOG} or stop it and retry."
                )
            return client
        return _start_dockerd(progress, timeout_s)


def _answering_client() -> tuple[docker.DockerClient | None, str]:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        return None, _short(exc)
    return client, ""


def _cannot_bootstrap_reason() -> str:
    if not sys.platform.startswith("linux"):
        return f"drdrill bootstraps an engine only on Linux, this is {sys.platform}"
    host = os.environ.get("DOCKER_HOST")
    if host and host != DEFAULT_SOCKET:
        return f"DOCKER_HOST={host} points elsewhere, so drdrill will not start a local engine"
    if os.geteuid() != 0:
        return "drdrill bootstraps an engine only when run as root"
    if shutil.which("apt-get") is None:
        return "drdrill bootstraps an engine only where apt-get can install docker.io"
    return ""


def _exclusive_lock(progress: Progress) -> contextlib.AbstractContextManager[None]:
    return file_lock(LOCK_FILE, progress, "docker: another process is bootstrapping the engine; waiting for it")


@contextlib.contextmanager
def file_lock(path: Path, progress: Progress, waiting: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed); says ``waiting`` when another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(waiting)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _install_docker_io(progress: Progress) -> None:
    progress("docker: dockerd missing; installing docker.io with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [
        "apt-get", "install", "-y", "-q", "--no-install-recommends",
        "-o", "DPkg::Lock::Timeout=300", "docker.io",
    ]  # fmt: skip
    result = _run(install, env)
    if result.returncode != 0:  # stale or missing package lists: update once and retry
        progress("docker: apt-get install failed; running apt-get update and retrying")
        _run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"], env)
        result = _run(install, env)
    if result.returncode != 0 or shutil.which("dockerd") is None:
        raise TargetError(
            "Installing docker.io with apt-get failed:\n"
            + _tail(result.stdout, 15)
            + f"\n{INSTALL_HINT}"
        )


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, check=False,
    )  # fmt: skip


def _start_dockerd(progress: Progress, timeout_s: float) -> docker.DockerClient:
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for flags in DOCKERD_FLAG_SETS:
        shown = " ".join(("dockerd", *flags))
        progress(f"docker: starting `{shown}` in the background (log {DOCKERD_LOG})")
        t0 = time.monotonic()
        offset = DOCKERD_LOG.stat().st_size if DOCKERD_LOG.exists() else 0
        pid = _spawn_detached(["dockerd", *flags])
        client = _wait_for_engine(pid, timeout_s)
        if client is not None:
            progress(f"docker: engine answers after {time.monotonic() - t0:.1f} s (pid {pid})")
            return client
        log = _read_from(DOCKERD_LOG, offset)
        if _alive(pid):  # running yet silent: do not pile up daemons, give up
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
            raise TargetError(
                f"`{shown}` did not answer on {DEFAULT_SOCKET} within {timeout_s:.0f} s; "
                f"last lines of {DOCKERD_LOG}:\n{_tail(log, 15)}"
            )
        failures.append(f"`{shown}` exited:\n{_tail(log, 6)}")
        progress(f"docker: `{shown}` exited at start; trying other flags")
    raise TargetError(
        "dockerd would not start with any flags drdrill knows:\n"
        + "\n".join(failures)
        + f"\nSee {DOCKERD_LOG}. {INSTALL_HINT}"
    )


def _spawn_detached(cmd: list[str]) -> int:
    """Start ``cmd`` as an orphan in its own session (it outlives us); its pid."""
    with open(DOCKERD_LOG, "a") as log:
        log.write(f"\n=== drdrill: {' '.join(cmd)} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
    script = 'exec_log="$1"; shift; "$@" >>"$exec_log" 2>&1 </dev/null & echo $!'
    out = subprocess.run(
        ["sh", "-c", script, "sh", str(DOCKERD_LOG), *cmd],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True,
        start_new_session=True,
    )  # fmt: skip
    return int(out.stdout.strip())


def _wait_for_engine(pid: int, timeout_s: float) -> docker.DockerClient | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client = docker.DockerClient(base_url=DEFAULT_SOCKET, timeout=10)
            client.ping()
            client.close()
            return docker.from_env(timeout=60)
        except (docker.errors.DockerException, OSError):
            pass
        if not _alive(pid):
            return None
        time.sleep(0.25)
    return None


def _running_dockerd_pid() -> int | None:
    try:
        pid = int(DOCKERD_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm == "dockerd" and _alive(pid) else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: its parent may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, errors="replace") as fh:
            fh.seek(offset)
            return fh.read()
    except OSError:
        return ""


def _tail(text: str, lines: int) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
