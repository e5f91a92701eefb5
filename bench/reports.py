"""Benchmark: how long the reports take to build, and how big they get, as a drill grows.

One real ground-truth drill (``drdrill drill -m groundtruth``, ~30 s) gives a seed run directory
with its Allure result; it is copied K times as distinct scenarios (fresh Allure uuids, names and
history ids), and for each K the DR test report (``build_report``: re-judging, timeline plots,
Markdown + HTML) and the single-file Allure HTML (``build_allure_html``: Allure 3 via Node) are
built once and timed. Allure's one-off npm install is done before timing.

    .venv/bin/python bench/reports.py [--scenarios 1,10,30] [--run RUN_DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drdrill.report.allure_html import build_allure_html, ensure_allure  # noqa: E402
from drdrill.report.allure_results import collect_results  # noqa: E402
from drdrill.report.dr_report import build_report  # noqa: E402

OUT = ROOT / "bench" / "out" / "reports"


def seed_run() -> Path:
    runs = OUT / "seed" / "runs"
    if runs.is_dir():
        found = [p for p in runs.iterdir() if (p / "allure").is_dir()]
        if found:
            return found[0]
    print("bench: running one ground-truth drill for a seed run (~30 s)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "drdrill.cli", "drill", "-m", "groundtruth", "--runs-dir", str(runs),
                    "--alluredir", str(OUT / "seed" / "allure"), "--report-dir", str(OUT / "seed" / "report")],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
    return next(p for p in runs.iterdir() if (p / "allure").is_dir())


def copy_as(seed: Path, into: Path, index: int) -> Path:
    """``seed`` as scenario number ``index``: its own directory, Allure uuids, name and history id."""
    target = into / f"{seed.name}-{index:03d}"
    shutil.copytree(seed, target)
    allure = target / "allure"
    renamed = {}
    for path in allure.glob("*-attachment*"):
        fresh = f"{uuid.uuid4()}-attachment{path.name.split('-attachment', 1)[1]}"
        renamed[path.name] = fresh
        path.rename(allure / fresh)
    (result_path,) = allure.glob("*-result.json")
    text = result_path.read_text()
    for old, new in renamed.items():
        text = text.replace(old, new)
    result = json.loads(text)
    result["uuid"] = str(uuid.uuid4())
    for key in ("name", "fullName", "historyId", "testCaseId"):
        result[key] = f"{result[key]} #{index}"
    for param in result.get("parameters", []):
        if param["name"] == "run directory":
            param["value"] = repr(str(target))
    result_path.unlink()
    (allure / f"{result['uuid']}-result.json").write_text(json.dumps(result))
    meta = json.loads((target / "drill.json").read_text())
    meta["scenario"] = f"{meta['scenario']} #{index}"
    (target / "drill.json").write_text(json.dumps(meta))
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="1,10,30")
    parser.add_argument("--run", type=Path, help="a run directory with allure/ to use as the seed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seed = args.run or seed_run()
    ensure_allure(progress=lambda line: print(line, file=sys.stderr))
    rows = []
    for count in [int(n) for n in args.scenarios.split(",")]:
        work = OUT / f"k{count}"
        shutil.rmtree(work, ignore_errors=True)
        runs = [copy_as(seed, work / "runs", i) for i in range(1, count + 1)]
        t0 = time.perf_counter()
        paths = build_report(runs, work / "report")
        dr_s = time.perf_counter() - t0
        collect_results(runs, work / "results")
        t0 = time.perf_counter()
        html = build_allure_html([work / "results"], work / "report", history_path=work / "history.jsonl",
                                 append_history=False)  # fmt: skip
        allure_s = time.perf_counter() - t0
        rows.append({"scenarios": count, "dr_report_s": round(dr_s, 2),
                     "dr_report_html_mb": round(paths["html"].stat().st_size / 1e6, 2),
                     "allure_s": round(allure_s, 2), "allure_html_mb": round(html.stat().st_size / 1e6, 2)})
        print(f"bench: {count} scenario(s) done", file=sys.stderr)
    print(f"{'scenarios':>9}  {'DR report (s)':>13}  {'DR HTML (MB)':>12}  {'Allure HTML (s)':>15}  {'Allure HTML (MB)':>16}")
    for r in rows:
        print(f"{r['scenarios']:>9}  {r['dr_report_s']:>13.2f}  {r['dr_report_html_mb']:>12.2f}  "
              f"{r['allure_s']:>15.2f}  {r['allure_html_mb']:>16.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
