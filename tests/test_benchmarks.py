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


def test_whole_process_benchmark_runs_both_sides_and_renders(tmp_path, monkeypatch):
    """A tiny version of the whole-process section: the structure, never the times."""
    from benchmarks import data, endtoend, report

    monkeypatch.setenv("PYTHONPATH", ROOT)  # the command and the scripts use this checkout
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    spec = data.Spec(3_000, 16, with_id=True, n_files=2)
    plan = {"cases": [{"name": "tiny", "spec": spec, "repeats": 1},
                      {"name": "tiny grid", "spec": spec, "grid": 2, "repeats": 1}],
            "probe_repeats": 1}
    work = tmp_path / "work"
    work.mkdir()
    section = endtoend.run(plan, str(tmp_path / "data"), str(work),
                           command=[sys.executable, "-m", "flows.cli"], log=lambda _: None)
    assert [c["case"] for c in section["cases"]] == ["tiny", "tiny grid"]
    for case in section["cases"]:
        for side in ("mixlake", "sklearn"):
            assert case[side]["fastest"] > 0 and case[side]["peak_rss"] > 0
            assert [r["returncode"] for r in case[side]["runs"]] == [0]
        # the embedded cluster's workers are threads of the mixlake process: no Python
        # process under it (the sampler may catch a short-lived helper a library runs,
        # which once made the process count 2 in CI)
        for side in ("mixlake", "sklearn"):
            for run in case[side]["runs"]:
                assert not [name for name in run["descendants"] if "python" in name], run
        outputs = case["outputs"]
        assert outputs["same_files"] and outputs["same_schema"] and outputs["same_ids"]
        assert outputs["rows"] == 3_000 and outputs["columns"][:2] == ["id", "cluster"]
        piece = case["breakdown"]
        assert set(piece["phases"]) == {key for key, _ in endtoend.PHASES}
        assert None not in piece["phases"].values(), piece["phases"]
        assert abs(piece["unaccounted"]) < 1e-6 and piece["iterations"]
        assert piece["passes"] > 0
    startup = section["startup"]
    assert all(p["fastest"] > 0 for p in startup["probes"].values()), startup["probes"]
    assert startup["imports"]["total"] > 0 and startup["imports"]["slowest"]
    with open(os.path.join(ROOT, "benchmarks", "RESULTS.json")) as f:
        results = json.load(f)
    text = report.render({**results, "end_to_end_process": section})
    assert "## Whole process, timed from the shell" in text
    assert "whole `mixlake run` >= 4x faster than the scikit-learn script" in text


def test_breakdown_reads_the_phases_from_the_lines_of_a_run():
    from benchmarks import endtoend

    stderr = [(0.5, "some warning"),
              (4.0, "01:00:00 INFO    pipeline.cluster: started a LocalCluster: 2 workers"),
              (5.0, "01:00:01 INFO    pipeline.run: loaded 100 rows x 2 features from 1 "
                    "partition(s)"),
              (8.0, "01:00:04 INFO    pipeline.selection: 2 candidates initialised in 9 passes"),
              (9.0, "a-k1 iteration 1: log-likelihood -3.0, change inf, 0.900 s"),
              (9.0, "b-k1 iteration 1: log-likelihood -3.5, change inf, 0.900 s"),
              (10.0, "a-k1 iteration 2: log-likelihood -2.9, change 0.1, 1.000 s"),
              (10.5, "pipeline.selection: selected a-k1 by bic in 12 passes over the data"),
              (10.6, "pipeline.run: writing 1 partition(s) into /x")]
    stdout = [(14.0, "mixlake run 20260101T000000Z-abcdef  (config 0123)"),
              (14.0, "  candidates    2, 12 passes over the data"),
              (14.0, "  chosen        a-k1: 1 components, full covariance, BIC 1.0, "
                     "2 iterations, converged"),
              (14.0, "  time          start-up 1.0 s, load 1.0 s, select 5.5 s, write 1.4 s, "
                     "other 0.1 s; total 11.0 s")]
    piece = endtoend.breakdown({"stderr": stderr, "stdout": stdout, "seconds": 15.0})
    phases = piece["phases"]
    assert phases["start-up"] == 4.0 and phases["load"] == 1.0 and phases["init"] == 3.0
    assert phases["EM"] == 2.0 and phases["final pass"] == 0.5
    assert abs(phases["write"] - 1.5) < 1e-9 and abs(phases["close + report"] - 2.0) < 1e-9
    assert phases["exit"] == 1.0 and abs(piece["unaccounted"]) < 1e-9
    assert [i["iteration"] for i in piece["iterations"]] == [1, 2]
    assert piece["passes"] == 12 and piece["n_iter"] == 2
    assert piece["summary_time"] == {"start-up": 1.0, "load": 1.0, "select": 5.5, "write": 1.4,
                                     "other": 0.1, "total": 11.0}


def test_init_quality_runs_every_setting_and_renders(monkeypatch):
    """A tiny version of `python -m benchmarks.init_quality`: the structure, never the
    numbers; the module's k-means settings are put back afterwards."""
    import numpy as np

    from benchmarks import init_quality, report
    from pipeline.mixture import _init

    X, _ = init_quality.unequal_sizes(3_000, n_features=3)
    monkeypatch.setattr(init_quality, "cases", lambda quick, data_dir: [("tiny", X, 3)])
    monkeypatch.setattr(init_quality, "SAMPLE_ROWS", (500, 1_000))
    before = (_init.KMEANS_SAMPLE_ROWS, _init.KMEANS_N_INIT)
    kmeans_centers = _init.kmeans_centers
    result = init_quality.run(seeds=2, log=lambda _: None)
    assert (_init.KMEANS_SAMPLE_ROWS, _init.KMEANS_N_INIT) == before
    assert _init.kmeans_centers is kmeans_centers
    (case,) = result["cases"]
    assert [r["seed"] for r in case["runs"]["mixlake"]] == [0, 1]
    assert np.isfinite([r["score"] for r in case["runs"]["sklearn"]]).all()
    assert all(r["kmeans_seconds"] > 0 for r in case["runs"]["mixlake"])
    assert [(v["sample_rows"], v["n_init"]) for v in result["variants"]] == [
        (500, 1), (1_000, 1), (500, 3), (1_000, 3), before]
    summary = case["summary"]
    assert summary["seeds"] == 2 and 0 <= summary["seeds_not_worse"] <= 2
    text = report.init_quality_markdown(json.loads(json.dumps(result)))
    assert "## Initialisation quality" in text and "| tiny |" in text


def test_write_speed_measures_the_three_writers_and_renders(tmp_path):
    """A tiny version of `python -m benchmarks.write_speed`: the structure, never the
    speed (the numbers of a loaded test machine mean nothing)."""
    from benchmarks import report, write_speed

    result = write_speed.measure(4_000, 1, str(tmp_path / "data"), str(tmp_path / "work"))
    assert set(result["fastest"]) == {"mixlake", "mixlake, scoring again", "pyarrow"}
    assert result["columns"] == ["id", "cluster", *(f"prob_{k}" for k in range(8))]
    assert all(len(v) == 1 for v in result["seconds"].values())
    text = write_speed.markdown(json.loads(json.dumps(result)))
    assert "| pyarrow |" in text and "target >= 1" in text
    with open(os.path.join(ROOT, "benchmarks", "RESULTS.json")) as f:
        results = json.load(f)
    assert "Writing the assignments against pyarrow" in report.render(
        {**results, "write_speed": result})


def test_float32_measures_both_cluster_kinds_and_renders(tmp_path):
    """A tiny version of `python -m benchmarks.float32`: the structure, never the speed."""
    from benchmarks import float32, report

    result = float32.measure(4_000, 1, 2, str(tmp_path / "data"), types=("full",),
                             log=lambda _: None)
    for name in ("worker threads (embedded default)", "worker processes"):
        entry = result[name]["full"]
        assert set(entry) == {"float64", "float32", "ratio", "seconds"}
        assert entry["ratio"] == entry["float64"] / entry["float32"]
    with open(os.path.join(ROOT, "benchmarks", "RESULTS.json")) as f:
        results = json.load(f)
    text = report.render({**results, "float32": json.loads(json.dumps(result))})
    assert "float32 per iteration, embedded default" in text
    assert "(embedded default, worker threads: `benchmarks/float32.py`)" in text
    # worker processes: the float32 benchmark's own row replaces the per-iteration one
    assert "(worker processes: `benchmarks/float32.py`)" in text
    assert "(worker processes, the per-iteration section)" not in text
