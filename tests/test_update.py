"""Monitored runs and `mixlake update`: real runs through pipeline.run.execute (and the
command) on a 2-worker LocalCluster of processes, on a Hive-partitioned lake that grows
by a day at a time, one of them drifted."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml
from test_lake import DAYS, _day_table, _mtimes, _write_days

from pipeline import monitor, run, source, store
from pipeline.config import load_config, parse_config


@pytest.fixture
def lake(tmp_path):
    root = tmp_path / "lake" / "events"
    _write_days(root, DAYS[:2])
    return root


def _drifted_day(lake, day, seed=11):
    """A day whose component at (6, 0) moved 3 standard deviations away from the others."""
    table = _day_table(day, seed=seed)
    x0 = table.column("x0").to_numpy().copy()
    x0[x0 > 3] += 3.0
    ds.write_dataset(table.set_column(1, "x0", pa.array(x0)), lake, format="parquet",
                     partitioning=["day", "region"], partitioning_flavor="hive",
                     existing_data_behavior="overwrite_or_ignore",
                     basename_template=f"part-{day}-{{i}}.parquet")


def _config_file(tmp_path, lake, address, **sections):
    raw = {"source": {"path": str(lake), "passthrough": ["id", "day", "region"]},
           "model": {"n_components": [2, 3], "covariance_type": "full", "random_state": 0},
           "cluster": {"address": address},
           "output": {"path": str(tmp_path / "out")}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    path = tmp_path / "update.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _assignments(folder):
    return ds.dataset(Path(folder) / "assignments", format="parquet",
                      partitioning="hive").to_table()


def _history(out):
    return pq.read_table(Path(out) / "monitor" / "history.parquet").to_pylist()


def test_a_fit_writes_the_outlier_column_and_its_baseline(tmp_path, lake, cluster2):
    config = load_config(_config_file(tmp_path, lake, cluster2.scheduler_address))
    summary = run.execute(config, run.FIT)
    estimator, meta = store.load_model(str(tmp_path / "out" / "model"))
    base = meta["baseline"]
    assert base["rows"] == summary["n_rows"] == 1200
    schema = source.inspect(config.source)
    assert base["window"]["inputs"] == 4
    assert base["window"]["fingerprint"] == source.fingerprint(schema.inputs)
    table = _assignments(tmp_path / "out")
    outlier = table.column("outlier").to_numpy()
    density = table.column("log_density").to_numpy()
    np.testing.assert_array_equal(outlier, density < monitor.threshold(base, 0.01))
    assert outlier.mean() == pytest.approx(0.01, abs=0.003)
    assert summary["monitor"]["figures"]["outliers"] == outlier.sum()
    assert not (tmp_path / "out" / "monitor").exists()  # a plain fit monitors nothing


def test_score_monitors_the_rows_it_scores(tmp_path, lake, cluster2):
    address = cluster2.scheduler_address
    fit = load_config(_config_file(tmp_path, lake, address))
    run.execute(fit, run.FIT)
    score = parse_config({"source": {"path": str(lake), "passthrough": ["id"]},
                          "score": {"model_path": str(tmp_path / "out")},
                          "cluster": {"address": address},
                          "output": {"path": str(tmp_path / "scores")}})
    first = run.execute(score, run.SCORE)
    assert not first["monitor"]["verdict"]["refit_recommended"]
    folder = tmp_path / "scores" / "monitor"
    record = json.loads((folder / f"{first['run_id']}.json").read_text())
    assert record["action"] == "scored" and record["figures"]["rows"] == 1200
    inode = (folder / f"{first['run_id']}.json").stat().st_ino
    _drifted_day(lake, "2026-12-01")
    second = run.execute(score, run.SCORE)
    assert second["files"]["scored"] == 2
    figures, verdict = second["monitor"]["figures"], second["monitor"]["verdict"]
    assert figures["rows"] == 600 and verdict["refit_recommended"]
    assert figures["outlier_rate"] > 0.15  # a third of the rows moved 3 SDs
    rows = _history(tmp_path / "scores")
    assert [r["run_id"] for r in rows] == [first["run_id"], second["run_id"]]
    assert [r["refit_recommended"] for r in rows] == [False, True]
    assert (folder / "history.png").stat().st_size > 10_000
    assert (folder / f"{first['run_id']}.json").stat().st_ino == inode  # carried, not rewritten
    new = pq.read_table(next((tmp_path / "scores" / "assignments" / "day=2026-12-01").rglob(
        "*.parquet")))
    assert new.column("outlier").to_numpy().mean() > 0.15


def test_update_fits_keeps_and_refits_in_one_commit_each(tmp_path, lake, cluster2, capsys):
    from flows.cli import main

    path = _config_file(tmp_path, lake, cluster2.scheduler_address)
    config = load_config(path)
    out = tmp_path / "out"

    first = run.execute(config, run.UPDATE)  # no model yet: a fit
    assert first["action"] == "fit"
    model_id = first["model_id"]
    assert [r["action"] for r in _history(out)] == ["fit"]
    before = _mtimes(out)

    nothing = run.execute(config, run.UPDATE)
    assert (nothing["action"], nothing["manifest"]) == ("none", None)
    assert _mtimes(out) == before  # nothing written at all

    _write_days(lake, [DAYS[2]], seed=5)  # an ordinary day: the model stays
    params = (out / "model" / "params.npz").stat().st_ino
    kept = run.execute(config, run.UPDATE)
    assert kept["action"] == "kept" and kept["files"]["scored"] == 2
    assert not kept["monitor"]["verdict"]["refit_recommended"]
    assert (out / "model" / "params.npz").stat().st_ino == params  # carried
    assert (out / "report" / "report.md").is_file()
    manifest = json.loads((out / "_SUCCESS.json").read_text())
    assert manifest["model_id"] == model_id and manifest["update"]["action"] == "kept"

    _drifted_day(lake, "2026-12-01")  # a component moved: refit, rescore everything
    estimator, _ = store.load_model(str(out / "model"))
    moved = int(np.argmin(np.linalg.norm(estimator.means_ - [6, 0], axis=1)))
    refit = run.execute(config, run.UPDATE)
    assert refit["action"] == "refit" and refit["why"] == "the verdict recommends it"
    assert refit["refit"]["warm_start"] == model_id
    assert any(r.startswith(f"component {moved} moved most")
               for r in refit["monitor"]["verdict"]["reasons"])
    new_model = refit["new_model_id"]
    assert new_model != model_id
    manifest = json.loads((out / "_SUCCESS.json").read_text())
    assert manifest["model_id"] == new_model and manifest["config_hash"] == config.config_hash()
    ledger = json.loads((out / "_ledger.json").read_text())["entries"]
    assert len(ledger) == 8 and {e["model_id"] for e in ledger} == {new_model}
    assert len(manifest["outputs"]) == 8  # every file rescored by the new model
    _, meta = store.load_model(str(out / "model"))
    assert meta["model_id"] == new_model and meta["baseline"]["window"]["inputs"] == 8
    assert [r["action"] for r in _history(out)] == ["fit", "kept", "refit"]
    assert len(list((out / "monitor").glob("*.json"))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "out", "update.yaml"]

    capsys.readouterr()
    assert main(["monitor", str(path)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("REFIT") == 2 and " kept " in printed  # the table and the verdict
    assert f"latest: run {refit['run_id']}" in printed and "moved most" in printed


def test_refit_settings_decide(tmp_path, lake, cluster2):
    path = _config_file(tmp_path, lake, cluster2.scheduler_address,
                        refit={"mode": "always", "grid": True})
    config = load_config(path)
    run.execute(config, run.UPDATE)
    _write_days(lake, [DAYS[2]], seed=5)
    summary = run.execute(config, run.UPDATE)
    assert summary["action"] == "refit" and summary["why"] == "refit.mode is always"
    assert summary["refit"]["warm_start"] is None and len(summary["refit"]["candidates"]) == 2


def _plain_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, **extra}


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_killed_refit_leaves_the_previous_model_and_a_rerun_finishes(tmp_path, lake,
                                                                        cluster2):
    path = _config_file(tmp_path, lake, cluster2.scheduler_address, model={"tol": 1e-8})
    config = load_config(path)
    first = run.execute(config, run.UPDATE)
    _drifted_day(lake, "2026-12-01")
    out = tmp_path / "out"
    before = _tree(out)
    command = [sys.executable, "-m", "flows.cli", "update", str(path)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True, env=_plain_env(), start_new_session=True)
    seen, refitting = [], False
    try:
        for line in process.stderr:
            seen.append(line)
            refitting = refitting or "refit: the verdict recommends it" in line
            if refitting and "iteration 3:" in line:
                os.killpg(process.pid, signal.SIGKILL)
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert refitting and "iteration 3:" in seen[-1], "".join(seen)
    assert _tree(out) == before  # byte for byte: the previous model and assignments
    work = [p for p in tmp_path.iterdir() if p.name.startswith(".out.work-")]
    assert len(work) == 1  # the refit's checkpoint

    rerun = subprocess.run(command, capture_output=True, text=True, env=_plain_env(),
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "took over the lock of run" in rerun.stderr  # the killed one's
    assert "resumed from iteration" in rerun.stderr
    assert "REFIT (the verdict recommends it): warm start from " + first["model_id"] \
        in rerun.stdout
    manifest = json.loads((out / "_SUCCESS.json").read_text())
    assert manifest["model_id"] != first["model_id"]
    assert [r["action"] for r in _history(out)] == ["fit", "refit"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "out", "update.yaml"]


def test_the_update_flow_publishes_figures_and_verdict(prefect_harness, tmp_path, lake,
                                                       cluster2):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.update import update_flow

    path = _config_file(tmp_path, lake, cluster2.scheduler_address)
    update_flow(str(path))
    _drifted_day(lake, "2026-12-01")
    summary = update_flow(str(path))
    assert summary["action"] == "refit"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["monitor-figures", "monitor-verdict"])))
    kinds = {a.key: a.type for a in artifacts}
    assert kinds == {"monitor-figures": "table", "monitor-verdict": "markdown"}
    verdict = [a for a in artifacts if a.key == "monitor-verdict"]
    assert any("refit recommended: yes" in a.data and "moved most" in a.data for a in verdict)


@pytest.fixture
def s3_output(monkeypatch):
    """moto's S3 server on loopback, its credentials in the environment (set before the
    run's own LocalCluster starts, so its workers inherit them)."""
    from s3server import moto_s3_server

    with moto_s3_server() as endpoint:
        for key, value in dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                               AWS_DEFAULT_REGION="us-east-1",
                               AWS_ENDPOINT_URL=endpoint).items():
            monkeypatch.setenv(key, value)
        import boto3
        import s3fs

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lake")
        s3fs.S3FileSystem.clear_instance_cache()
        yield "s3://lake/nightly"


@pytest.mark.slow
def test_update_on_an_object_store(tmp_path, lake, s3_output):
    """The model, report and monitor records carried by server-side copies; the run's
    files under runs/<run id>/, the manifest last."""
    import s3fs

    config = load_config(_config_file(tmp_path, lake, None, output={"path": s3_output},
                                      cluster={"address": None, "n_workers": 1}))
    assert run.execute(config, run.UPDATE)["action"] == "fit"
    _write_days(lake, [DAYS[2]], seed=5)
    assert run.execute(config, run.UPDATE)["action"] == "kept"
    _drifted_day(lake, "2026-12-01")
    refit = run.execute(config, run.UPDATE)
    assert refit["action"] == "refit"
    fs = s3fs.S3FileSystem()
    manifest = json.loads(fs.cat(f"{s3_output}/_SUCCESS.json"))
    prefix = f"{s3_output}/{manifest['prefix']}"
    history = pq.read_table(fs.open(f"{prefix}/monitor/history.parquet")).to_pylist()
    assert [r["action"] for r in history] == ["fit", "kept", "refit"]
    assert len(fs.glob(f"{prefix}/monitor/*.json")) == 3
    assert fs.exists(f"{prefix}/model/model.json") and fs.exists(f"{prefix}/report/report.md")
    assert manifest["model_id"] == refit["new_model_id"]
