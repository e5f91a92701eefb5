"""The local mirror's images, built offline: nothing is pulled from a registry.

``base``   ``debian:bookworm-slim`` when the engine already has it; otherwise ``drdrill/base:<hash>``,
           a ``debootstrap --variant=minbase bookworm`` tree from the machine's configured Debian
           mirror, imported with ``docker import``.
``node``   ``drdrill/node:<hash>`` FROM the base: PostgreSQL 15, HAProxy, Redis, etcd 3.4 (Debian's
           ``etcd-server``; Patroni talks to it through the v3 API, its v2 API is off by default),
           Python 3, tini, curl, iproute2, and Patroni 4.x in ``/opt/patroni`` (``patroni`` and
           ``patronictl`` on the PATH, as is ``/usr/lib/postgresql/15/bin``). Entry point
           ``tini --``; no main cluster is created (Patroni bootstraps its own). The reference
           platform services (:mod:`drdrill.mirror.platform`) in ``/opt/drdrill-platform``, run by
           ``drdrill-platform --service S --region R --port P`` (on the PATH; Patroni's Python, which
           has psycopg2 and, for them, redis-py). Their code is the image's last layer and part of
           its input hash: changing it rebuilds only that layer.

``apt-get`` inside the build uses the host's Debian mirror configuration (plain HTTP). Containers
cannot verify TLS to PyPI on the CI machines, so the wheels (Patroni's, and the platform services'
redis-py) are fetched on the host with ``pip download`` for the image's Python and platform (packages
PyPI ships only as source, all pure Python, are built into wheels on the host first), cached, copied
into the build context and installed with ``pip install --no-index``.

Every tag is a hash of its build's inputs (Dockerfile text, apt configuration, wheel list, base image
id), so a build whose tag exists is skipped: a second :func:`build_images` takes well under a second.
``python -m drdrill.mirror.images`` builds them and prints tags, timings and sizes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors

from drdrill.errors import TargetError
from drdrill.mirror.engine import ensure_docker, file_lock

__all__ = [
    "NODE_PACKAGES",
    "PATRONI_REQUIREMENTS",
    "PLATFORM_REQUIREMENTS",
    "PLATFORM_ROOT",
    "build_images",
    "cache_dir",
    "debian_mirrors",
    "main",
]

Progress = Callable[[str], object]

SUITE = "bookworm"
LOCAL_BASES = ("debian:bookworm-slim", "debian:12-slim")
BASE_REPO = "drdrill/base"
NODE_REPO = "drdrill/node"
IMAGE_PYTHON = "3.11"  # bookworm's python3
BASE_RECIPE = "debootstrap-minbase-v1"  # bump when the base recipe below changes
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

PATRONI_REQUIREMENTS = ("patroni[etcd3]==4.1.5", "psycopg2-binary==2.9.11")
# The platform services' Redis client, into the same /opt/patroni venv. redis-py needs async-timeout
# on Python < 3.11.3 (bookworm has 3.11.2), but `pip download` evaluates that marker against the
# host's Python, so it is named here.
PLATFORM_REQUIREMENTS = ("redis==8.1.0", "async-timeout==5.0.1")
NODE_REQUIREMENTS = PATRONI_REQUIREMENTS + PLATFORM_REQUIREMENTS
# Patroni's dependencies that PyPI ships only as source (pure Python): built into wheels on the host.
PURE_SOURCE_ONLY = ("python-etcd==0.4.5", "ydiff==1.4.2")
NODE_PACKAGES = (
    "postgresql-15", "haproxy", "redis-server", "etcd-server", "etcd-client", "python3",
    "python3-venv", "tini", "curl", "ca-certificates", "iproute2", "procps",
)  # fmt: skip

# The platform services: their package is copied under PLATFORM_ROOT with the same import path,
# with the drdrill modules it imports beside it (stdlib only): the service catalogue and the request checks.
PLATFORM_PACKAGE = Path(__file__).resolve().parent / "platform"
SHARED_MODULES = tuple(Path(__file__).resolve().parents[1] / name for name in ("catalog.py", "httpbody.py"))
PLATFORM_ROOT = "/opt/drdrill-platform"
PLATFORM_ENTRY = f"""\
#!/opt/patroni/bin/python
# drdrill-platform --service <payments|auth|users|storefront|analytics> --region R --port P
import sys

sys.path.insert(0, "{PLATFORM_ROOT}")
sys.dont_write_bytecode = True
from drdrill.mirror.platform.server import main  # noqa: E402

sys.exit(main())
"""

# As on the host: a snapshot mirror's Release files would otherwise look expired to apt.
APT_CONF = """\
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
Acquire::Retries "3";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
"""
# What the official -slim images leave out; nothing in the mirror reads it.
DPKG_NODOC = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""

NODE_DOCKERFILE = """\
FROM {base}
COPY apt/ /tmp/drdrill-apt/
RUN set -eux; \\
    rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*; \\
    cp /tmp/drdrill-apt/sources.list /etc/apt/sources.list.d/drdrill.list; \\
    cp /tmp/drdrill-apt/apt.conf /etc/apt/apt.conf.d/90drdrill; \\
    mkdir -p /etc/dpkg/dpkg.cfg.d /etc/postgresql-common; \\
    cp /tmp/drdrill-apt/dpkg-nodoc /etc/dpkg/dpkg.cfg.d/90drdrill-nodoc; \\
    printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; \\
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \\
    apt-get update -q; \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q {packages}; \\
    apt-get clean; rm -rf /var/lib/apt/lists/* /tmp/drdrill-apt
COPY wheels/ /tmp/wheels/
RUN set -eux; \\
    python3 -m venv /opt/patroni; \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/patroni/bin/pip install -q --no-cache-dir --no-index \\
        --find-links /tmp/wheels {requirements}; \\
    ln -s /opt/patroni/bin/patroni /opt/patroni/bin/patronictl /usr/local/bin/; \\
    rm -rf /tmp/wheels
ENV LANG=C.UTF-8 \\
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL drdrill.image.role=node
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["bash"]
COPY drdrill-platform /usr/local/bin/drdrill-platform
# Last, so a change of the platform code rebuilds this layer only.
COPY platform/ {platform_root}/
"""


def build_images(progress: Progress = print) -> dict[str, str]:
    """Build (or find) the mirror's images; role → image tag (``base``, ``node``)."""
    ensure_docker(progress)
    client = docker.from_env(timeout=900)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / "build.lock", progress, "[images] another process is building the images; waiting for it"):
        t0 = time.monotonic()
        base = _stage(progress, "base", lambda say: _base_image(client, say))
        wheels = _stage(progress, "wheels", lambda say: _wheels(cache, say))
        node = _stage(progress, "node", lambda say: _node_image(client, base, wheels, say))
        progress(f"[images] ready in {time.monotonic() - t0:.1f} s: base {base}, node {node}")
        return {"base": base, "node": node}


def cache_dir() -> Path:
    """Where downloaded wheels and build logs are kept between builds."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "drdrill" / "mirror"


def _stage(progress: Progress, name: str, work: Callable[[Progress], str | Path]):
    t0 = time.monotonic()

    def say(message: str) -> None:
        progress(f"[images] {name}: {message} ({time.monotonic() - t0:.1f} s)")

    result = work(say)
    say("done")
    return result


# ---------------------------------------------------------------------------------------- base


def _base_image(client: docker.DockerClient, say: Progress) -> str:
    for ref in LOCAL_BASES:
        if _image_id(client, ref):
            say(f"using local {ref}")
            return ref
    mirrors = debian_mirrors()
    arch = _debian_arch()
    inputs = {"recipe": BASE_RECIPE, "suite": SUITE, "mirror": mirrors["debian"], "arch": arch}
    tag = f"{BASE_REPO}:{_digest(inputs)}"
    if _image_id(client, tag):
        say(f"{tag} exists")
        return tag
    if os.geteuid() != 0:
        raise TargetError(
            f"No {LOCAL_BASES[0]} image and building {tag} needs root (debootstrap); run as root or "
            f"load a Debian 12 image with `docker load`."
        )
    if shutil.which("debootstrap") is None:
        say("installing debootstrap with apt-get")
        _apt_install("debootstrap")
    rootfs = Path(tempfile.mkdtemp(prefix="drdrill-rootfs-", dir="/var/tmp"))
    try:
        say(f"debootstrap --variant=minbase {SUITE} from {mirrors['debian']}")
        cmd = ["debootstrap", "--variant=minbase", f"--arch={arch}", SUITE, str(rootfs)]
        _check(subprocess.run([*cmd, mirrors["debian"]], **_captured()), "debootstrap")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for child in (rootfs / junk).glob("*"):
                if child.is_file():
                    child.unlink()
        say(f"docker import as {tag}")
        _import_rootfs(client, rootfs, tag)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tag


def _import_rootfs(client: docker.DockerClient, rootfs: Path, tag: str) -> None:
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip

    def chunks() -> Iterator[bytes]:
        assert tar.stdout is not None
        while block := tar.stdout.read(1 << 20):
            yield block

    repo, _, version = tag.partition(":")
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["bash"]',
        f"LABEL drdrill.image.role=base drdrill.image.recipe={BASE_RECIPE}",
    ]
    try:
        client.api.import_image_from_stream(chunks(), repository=repo, tag=version, changes=changes)
    finally:
        _, err = tar.communicate()
    if tar.returncode != 0:
        raise TargetError(f"tar of the debootstrap tree failed: {err.decode(errors='replace')}")
    if not _image_id(client, tag):
        raise TargetError(f"docker import did not produce {tag}")


def debian_mirrors() -> dict[str, str]:
    """The machine's configured Debian mirrors: ``{"debian": url, "security": url}``.

    Read from /etc/apt/sources.list and /etc/apt/sources.list.d/*.list|*.sources (deb822); the
    public deb.debian.org where none is configured.
    """
    found: dict[str, str] = {}
    for uri in _apt_uris():
        uri = uri.rstrip("/")
        kind = (
            "security" if uri.endswith("-security") else "debian" if uri.endswith("/debian") else ""
        )
        if kind and uri.startswith(("http://", "https://")) and kind not in found:
            found[kind] = uri
    debian = found.get("debian", DEFAULT_MIRROR)
    return {"debian": debian, "security": found.get("security", DEFAULT_SECURITY_MIRROR)}


def _apt_uris() -> Iterator[str]:
    etc = Path("/etc/apt")
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in files:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    yield words[1]
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields = dict(
                    (key.strip().lower(), value.strip())
                    for key, _, value in (
                        line.partition(":")
                        for line in stanza.splitlines()
                        if ":" in line and not line.lstrip().startswith("#")
                    )
                )
                if "deb" in fields.get("types", "").split() and fields.get(
                    "enabled", "yes"
                ).lower() not in ("no", "false"):
                    yield from fields.get("uris", "").split()


def _sources_list(mirrors: dict[str, str]) -> str:
    debian, security = mirrors["debian"], mirrors["security"]
    return (
        f"deb {debian} {SUITE} main\n"
        f"deb {debian} {SUITE}-updates main\n"
        f"deb {security} {SUITE}-security main\n"
    )


def _debian_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


# -------------------------------------------------------------------------------------- wheels


def _wheels(cache: Path, say: Progress) -> Path:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(_debian_arch(), platform.machine())
    platforms = (f"manylinux2014_{machine}", f"manylinux_2_28_{machine}")
    inputs = {
        "requirements": NODE_REQUIREMENTS,
        "source_only": PURE_SOURCE_ONLY,
        "python": IMAGE_PYTHON,
        "platforms": platforms,
    }
    final = cache / f"wheels-{_digest(inputs)}"
    if (final / ".complete").exists():
        say(f"cached in {final}")
        return final
    work = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache))
    try:
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        say(f"building pure-Python wheels for {', '.join(PURE_SOURCE_ONLY)}")
        _check(
            subprocess.run(
                [*pip, "wheel", "-q", "--no-deps", "--no-binary=:all:", "-w", str(work),
                 *PURE_SOURCE_ONLY],
                **_captured(),
            ),
            "pip wheel",
        )  # fmt: skip
        say(f"pip download {' '.join(NODE_REQUIREMENTS)} for Python {IMAGE_PYTHON}")
        platform_args = [arg for p in platforms for arg in ("--platform", p)]
        _check(
            subprocess.run(
                [*pip, "download", "-q", "-d", str(work), "--find-links", str(work),
                 "--only-binary=:all:", "--python-version", IMAGE_PYTHON,
                 "--implementation", "cp", "--abi", "cp" + IMAGE_PYTHON.replace(".", ""),
                 *platform_args, *NODE_REQUIREMENTS],
                **_captured(),
            ),
            "pip download",
        )  # fmt: skip
        (work / ".complete").write_text("\n".join(_wheel_names(work)) + "\n")
        try:
            work.rename(final)
        except OSError:  # another builder finished first: theirs is as good
            if not (final / ".complete").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"{len(_wheel_names(final))} wheels in {final}")
    return final


def _wheel_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.whl"))


# ---------------------------------------------------------------------------------------- node


def _node_image(client: docker.DockerClient, base: str, wheels: Path, say: Progress) -> str:
    dockerfile = NODE_DOCKERFILE.format(
        base=base,
        packages=" ".join(NODE_PACKAGES),
        requirements=" ".join(f"'{r}'" for r in NODE_REQUIREMENTS),
        platform_root=PLATFORM_ROOT,
    )
    sources = _sources_list(debian_mirrors())
    platform_files = _platform_files()
    wheel_names = _wheel_names(wheels)
    inputs = {
        "dockerfile": dockerfile,
        "base_id": _image_id(client, base),
        "sources": sources,
        "apt_conf": APT_CONF,
        "dpkg": DPKG_NODOC,
        "wheels": wheel_names,
        "platform_entry": PLATFORM_ENTRY,
        "platform": {name: hashlib.sha256(data).hexdigest() for name, data in platform_files.items()},
    }
    tag = f"{NODE_REPO}:{_digest(inputs)}"
    if _image_id(client, tag):
        say(f"{tag} exists")
        return tag
    with tempfile.TemporaryDirectory(prefix="drdrill-node-") as ctx_name:
        ctx = Path(ctx_name)
        (ctx / "Dockerfile").write_text(dockerfile)
        (ctx / "apt").mkdir()
        (ctx / "apt" / "sources.list").write_text(sources)
        (ctx / "apt" / "apt.conf").write_text(APT_CONF)
        (ctx / "apt" / "dpkg-nodoc").write_text(DPKG_NODOC)
        (ctx / "wheels").mkdir()
        for name in wheel_names:
            shutil.copy2(wheels / name, ctx / "wheels" / name)
        (ctx / "drdrill-platform").write_text(PLATFORM_ENTRY)
        (ctx / "drdrill-platform").chmod(0o755)
        for name, data in platform_files.items():  # modes set explicitly: COPY keeps them
            target = ctx / "platform" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o644)
        for folder in [ctx / "platform", *(ctx / "platform").rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)
        say(f"docker build {tag} (apt from {debian_mirrors()['debian']})")
        _docker_build(client, ctx, tag, say)
    return tag


def _platform_files() -> dict[str, bytes]:
    """The files under PLATFORM_ROOT: the platform package and the modules it shares, at their import paths."""
    files: dict[str, bytes] = {
        "drdrill/__init__.py": b"",
        **{f"drdrill/{path.name}": path.read_bytes() for path in SHARED_MODULES},
        "drdrill/mirror/__init__.py": b"",
    }
    sources = sorted(PLATFORM_PACKAGE.glob("*.py"))
    if not any(p.name == "server.py" for p in sources):
        raise TargetError(f"the platform package is missing from {PLATFORM_PACKAGE}")
    for path in sources:
        files[f"drdrill/mirror/platform/{path.name}"] = path.read_bytes()
    return files


def _docker_build(client: docker.DockerClient, ctx: Path, tag: str, say: Progress) -> None:
    log_path = cache_dir() / f"build-{tag.replace('/', '_').replace(':', '-')}.log"
    tail: list[str] = []
    error = ""
    with open(log_path, "w") as log:
        stream = client.api.build(
            path=str(ctx), tag=tag, rm=True, forcerm=True, pull=False, decode=True,
            labels={"drdrill.image.inputs": tag.partition(":")[2]},
        )  # fmt: skip
        for chunk in stream:
            text = chunk.get("stream") or chunk.get("status") or ""
            if chunk.get("error"):
                error = str(chunk["error"])
                text = error + "\n"
            log.write(text)
            for line in text.splitlines():
                tail = [*tail[-39:], line]
                if line.startswith("Step "):
                    say(line[:110])
    if error or not _image_id(client, tag):
        raise TargetError(
            f"docker build of {tag} failed: {error or 'no image produced'}\n"
            + "\n".join("    " + line for line in tail[-25:])
            + f"\nFull log: {log_path}"
        )


# ------------------------------------------------------------------------------------- helpers


def _image_id(client: docker.DockerClient, ref: str) -> str:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return ""


def _digest(inputs: object) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def _captured() -> dict:
    return {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "text": True,
        "check": False,
    }


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        lines = "\n".join("    " + line for line in result.stdout.strip().splitlines()[-20:])
        raise TargetError(f"{what} failed (exit {result.returncode}):\n{lines}")


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
           "-o", "DPkg::Lock::Timeout=300", package]  # fmt: skip
    result = subprocess.run(cmd, env=env, **_captured())
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, **_captured())
        result = subprocess.run(cmd, env=env, **_captured())
    _check(result, f"apt-get install {package}")


def main(argv: list[str] | None = None) -> int:
    """Build the images; print tags, timings and sizes."""
    t0 = time.monotonic()
    try:
        tags = build_images(progress=lambda m: print(m, flush=True))
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    client = docker.from_env()
    print(f"built or found in {time.monotonic() - t0:.1f} s")
    for role, tag in tags.items():
        size = client.images.get(tag).attrs.get("Size", 0)
        print(f"{role:5} {tag:32} {size / 1e6:7.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
