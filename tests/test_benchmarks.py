"""The benchmark suite's machinery (not its numbers: those live in benchmarks/RESULTS.md)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("## Machine", "## Targets", "## Time per EM iteration", "## float32",
            "## Achieved GFLOP/s", "## Peak memory", "## Dask's per-iteration overhead",
            "## Grid of component counts", "## End to end", "## Matmul ceiling",
            "## Profile", "## What limits each number")


def test_the_committed_results_render_every_section_the_issue_asks_for():
    from benchmarks import report

    with open(os.path.join(ROOT, "benchmarks", "RESULTS.json")) as f:
        results = json.load(f)
    text = report.render(results)
    for section in SECTIONS:
        assert section in text, section
    shapes = {"1M x 16, K=8", "5M x 16, K=8", "1M x 64, K=16"}
    assert shapes <= set(results["per_iteration"])
    assert {"full", "tied", "diag", "spherical"} <= set(results["per_iteration"]["1M x 16, K=8"])
    # the committed Markdown is what the command writes from the committed numbers
    with open(os.path.join(ROOT, "benchmarks", "RESULTS.md")) as f:
        assert f.read() == text


def test_one_section_reruns_into_saved_results(tmp_path):
    out = tmp_path / "RESULTS.md"
    env = {**os.environ, "PYTHONPATH": ROOT}
    command = [sys.executable, "-m", "benchmarks", "--quick", "--no-spark", "--output", str(out),
               "--data-dir", str(tmp_path / "data"), "--only", "tiny"]
    subprocess.run(command, check=True, cwd=ROOT, env=env, capture_output=True, timeout=600)
    first = json.loads((tmp_path / "RESULTS.json").read_text())
    assert first["tiny"]["seconds"] > 0 and "## Dask's per-iteration overhead" in out.read_text()
    subprocess.run(command, check=True, cwd=ROOT, env=env, capture_output=True, timeout=600)
    second = json.loads((tmp_path / "RESULTS.json").read_text())
    assert [r["sections"] for r in second["rerun"]] == [["tiny"]]
    assert second["started"] == first["started"]
