"""Delta Lake tables: the assignments as a Delta table (one commit per run, time travel),
a Delta table as the input (at a version, incrementally), bad Delta input, and both on
the S3 server on 127.0.0.1.

Real tables written by deltalake (delta-rs), real runs through pipeline.run.execute on a
2-worker LocalCluster of processes.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake
from test_s3 import BUCKET, s3_server  # noqa: F401  (the moto S3 server fixture)

from pipeline import run
from pipeline.config import load_config, parse_config
from pipeline.storage import DataError

DAYS = ["2026-11-28", "2026-11-29", "2026-11-30"]


def _day_table(day, n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(3, size=n)
    X = rng.standard_normal((n, 2)) + np.array([[0, 0], [6, 0], [0, 6]])[labels]
    start = (DAYS.index(day) if day in DAYS else 9) * 10_000 + seed * 1_000
    return pa.table({"id": np.arange(start, start + n), "x0": X[:, 0], "x1": X[:, 1],
                     "region": ["eu", "us"] * (n // 2), "day": [day] * n})


def _write_days(root, days, seed=0):
    """Hive folders day=/region=, one file per (day, region)."""
    for i, day in enumerate(days):
        ds.write_dataset(_day_table(day, seed=seed + i), root, format="parquet",
                         partitioning=["day", "region"], partitioning_flavor="hive",
                         existing_data_behavior="overwrite_or_ignore",
                         basename_template=f"part-{i}-{{i}}.parquet")


def _config(data, out, address, **sections):
    raw = {"source": {"path": str(data), "passthrough": ["id", "day", "region"]},
           "model": {"n_components": 3, "covariance_type": "full", "random_state": 0},
           "cluster": {"address": address},
           "output": {"path": str(out), "format": "delta"}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def _labels(path, version=None, storage_options=None):
    """The table (at a version) sorted by id, as a dict of columns."""
    table = DeltaTable(str(path), version=version, storage_options=storage_options)
    return table.to_pyarrow_table().sort_by("id").to_pydict()


def _mtimes(folder):
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
            for p in Path(folder).rglob("*") if p.is_file()}


@pytest.fixture
def lake(tmp_path):
    root = tmp_path / "lake" / "events"
    _write_days(root, DAYS)
    return root


# ------------------------------------------------------------------ Delta output


def test_fit_writes_a_delta_table_partitioned_like_the_input(tmp_path, lake, cluster2):
    config = _config(lake, tmp_path / "out", cluster2.scheduler_address)
    summary = run.execute(config, run.FIT)
    path = tmp_path / "out" / "assignments"
    table = DeltaTable(str(path))
    assert table.version() == 0
    assert table.metadata().partition_columns == ["day", "region"]
    schema = pa.schema(table.schema().to_arrow())
    assert schema.names == ["id", "cluster", "prob_0", "prob_1", "prob_2", "log_density",
                            "outlier", "day", "region"]
    assert schema.field("cluster").type == pa.int32()
    commit = table.history()[0]
    assert commit["mixlake.run_id"] == summary["run_id"]
    assert commit["mixlake.model_id"] == summary["model_id"]
    # rows in = rows out, joinable to the input on id with the partition keys restored
    got = table.to_pyarrow_table().to_pandas()
    want = ds.dataset(lake, partitioning="hive").to_table().to_pandas()
    assert len(got) == len(want) == 1200
    merged = want.merge(got, on="id", suffixes=("_in", "_out"))
    assert len(merged) == 1200
    assert (merged["day_in"].astype(str) == merged["day_out"]).all()
    assert (merged["region_in"].astype(str) == merged["region_out"]).all()
    assert np.allclose(got[["prob_0", "prob_1", "prob_2"]].sum(axis=1), 1.0)
    # per data file: one per input file, in the input's folders, named with the run id
    files = sorted(table.file_uris())
    assert len(files) == 6 and all(summary["run_id"] in f for f in files)
    assert all("/day=2026-11-2" in f or "/day=2026-11-30" in f for f in files)
    manifest = json.loads((tmp_path / "out" / "_SUCCESS.json").read_text())
    assert manifest["delta"]["version"] == 0 and manifest["delta"]["mode"] == "overwrite"
    assert manifest["outputs"] == manifest["delta"]["added"]
    assert manifest["rows_in"] == manifest["rows_out"] == 1200
    # DuckDB queries it through deltalake's Arrow dataset
    import duckdb

    dataset = table.to_pyarrow_dataset()  # noqa: F841  (read by name in the query)
    counts = duckdb.sql("select day, count(*) from dataset group by day order by day").fetchall()
    assert counts == [(day, 400) for day in DAYS]

    # a refit over it is one more commit: an overwrite, the first run still readable
    first = _labels(path)
    refit = config.model_copy(update={
        "model": config.model.model_copy(update={"n_components": 2}),
        "output": config.output.model_copy(update={"mode": "overwrite"})})
    run.execute(refit, run.FIT)
    table = DeltaTable(str(path))
    assert table.version() == 1
    assert "prob_2" not in pa.schema(table.schema().to_arrow()).names
    assert _labels(path, version=0) == first


def test_incremental_scoring_is_one_delta_commit_per_run(tmp_path, lake, cluster2):
    address = cluster2.scheduler_address
    fit = _config(lake, tmp_path / "fit", address, output={"format": "parquet"})
    run.execute(fit, run.FIT)
    score = _config(lake, tmp_path / "scores", address,
                    score={"model_path": str(tmp_path / "fit")})
    path = tmp_path / "scores" / "assignments"
    first = run.execute(score, run.SCORE)
    assert first["files"] == {"scored": 6, "unchanged": 0, "removed": 0}
    v0 = _labels(path)
    assert len(v0["id"]) == 1200

    before = _mtimes(tmp_path / "scores")
    again = run.execute(score, run.SCORE)  # nothing new: no commit, nothing written
    assert again["manifest"] is None and DeltaTable(str(path)).version() == 0
    assert _mtimes(tmp_path / "scores") == before

    _write_days(lake, ["2026-12-01"], seed=7)  # a new day: appended
    second = run.execute(score, run.SCORE)
    assert second["files"] == {"scored": 2, "unchanged": 6, "removed": 0}
    table = DeltaTable(str(path))
    assert table.version() == 1
    commit = table.history()[0]
    assert commit["mixlake.run_id"] == second["run_id"]
    assert commit["operationParameters"]["mode"] == "Append"
    delta = second["manifest"]["delta"]
    assert delta["version"] == 1 and len(delta["added"]) == 2 and delta["removed"] == []
    after = _mtimes(tmp_path / "scores")
    for name, mtime in before.items():  # the earlier data files were not rewritten
        if name.startswith("assignments/day="):
            assert after[name] == mtime, name
    v1 = _labels(path)
    assert len(v1["id"]) == 1600 and sorted(set(v1["day"])) == [*DAYS, "2026-12-01"]

    # a changed file is replaced and a vanished day removed, in one commit
    changed = next((lake / "day=2026-11-29" / "region=eu").glob("*.parquet"))
    pq.write_table(pq.read_table(changed).slice(0, 100), changed)
    shutil.rmtree(lake / "day=2026-11-28")
    third = run.execute(score, run.SCORE)
    assert third["files"] == {"scored": 1, "unchanged": 5, "removed": 2}
    delta = third["manifest"]["delta"]
    assert (delta["version"], len(delta["added"]), len(delta["removed"])) == (2, 1, 3)
    v2 = _labels(path)
    assert len(v2["id"]) == 1600 - 400 - 100
    assert "2026-11-28" not in set(v2["day"])
    input_ids = set(ds.dataset(lake, partitioning="hive").to_table().column("id").to_pylist())
    assert set(v2["id"]) == input_ids

    # time travel: every earlier run's labels, at the version its manifest names
    assert _labels(path, version=0) == v0
    assert _labels(path, version=1) == v1

    full = run.execute(score.model_copy(update={"output": score.output.model_copy(
        update={"mode": "overwrite"})}), run.SCORE)
    assert full["files"]["scored"] == 6
    assert full["manifest"]["delta"]["mode"] == "overwrite"
    assert _labels(path) == v2  # the same model gives the same labels


def test_a_failed_run_leaves_the_delta_table_at_its_version(tmp_path, lake, cluster2,
                                                            monkeypatch):
    address = cluster2.scheduler_address
    run.execute(_config(lake, tmp_path / "fit", address), run.FIT)
    score = _config(lake, tmp_path / "scores", address,
                    score={"model_path": str(tmp_path / "fit")})
    run.execute(score, run.SCORE)
    path = tmp_path / "scores" / "assignments"
    before, files = _mtimes(tmp_path / "scores"), _labels(path)
    _write_days(lake, ["2026-12-01"], seed=7)

    from pipeline import output

    def broken(self, manifest):
        raise OSError("injected failure while publishing")

    monkeypatch.setattr(output.Target, "publish", broken)
    with pytest.raises(OSError, match="injected"):
        run.execute(score, run.SCORE)
    monkeypatch.undo()
    assert DeltaTable(str(path)).version() == 0 and _labels(path) == files
    assert _mtimes(tmp_path / "scores") == before
    assert sorted(os.listdir(tmp_path)) == ["fit", "lake", "scores"]
    assert run.execute(score, run.SCORE)["files"]["scored"] == 2  # a rerun finishes the job
    assert DeltaTable(str(path)).version() == 1


def test_a_table_partitioned_otherwise_is_refused(tmp_path, lake, cluster2):
    address = cluster2.scheduler_address
    run.execute(_config(lake, tmp_path / "out", address), run.FIT)
    flat = {"source": {"partitioning": "none", "passthrough": ["id"]},
            "output": {"mode": "overwrite"}}
    # refused before the fit: no cluster is reached (there is none at that address)
    with pytest.raises(DataError, match=r"partitioned by \['day', 'region'\]"):
        run.execute(_config(lake, tmp_path / "out", "tcp://127.0.0.1:9", **flat), run.FIT)
    assert DeltaTable(str(tmp_path / "out" / "assignments")).version() == 0
    # unpartitioned input, unpartitioned table
    run.execute(_config(lake, tmp_path / "flat", address, **flat), run.FIT)
    table = DeltaTable(str(tmp_path / "flat" / "assignments"))
    assert table.metadata().partition_columns == []
    assert table.to_pyarrow_table().num_rows == 1200


# ------------------------------------------------------------------ Delta source


def _delta_source(path, days=DAYS, mode="append", **kwargs):
    for i, day in enumerate(days):
        write_deltalake(str(path), _day_table(day, seed=i).drop(["region"]),
                        partition_by=["day"], mode=mode, **kwargs)


def test_a_delta_source_at_a_version_and_incrementally(tmp_path, cluster2):
    address = cluster2.scheduler_address
    table = tmp_path / "lake" / "events"
    _delta_source(table)  # versions 0, 1, 2: one day each
    base = {"source": {"format": "delta", "passthrough": ["id", "day"]}}
    fit = _config(table, tmp_path / "fit", address, **base,
                  output={"format": "parquet"})
    summary = run.execute(fit, run.FIT)
    assert summary["n_rows"] == 1200
    manifest = json.loads((tmp_path / "fit" / "_SUCCESS.json").read_text())
    assert manifest["source"] == {"format": "delta", "path": str(table), "version": 2}
    assert [i["rows"] for i in manifest["inputs"]] == [400, 400, 400]
    # the run's config.yaml pins the version read: running it again reads the same files
    pinned = yaml.safe_load((tmp_path / "fit" / "config.yaml").read_text())
    assert pinned["source"]["version"] == 2
    _delta_source(table, ["2026-12-01"])  # version 3
    again = load_config(tmp_path / "fit" / "config.yaml",
                        [f"output.path={tmp_path / 'again'}"])
    run.execute(again, run.FIT)
    rerun = json.loads((tmp_path / "again" / "_SUCCESS.json").read_text())
    assert rerun["inputs"] == manifest["inputs"] and rerun["model_id"] == manifest["model_id"]

    # an explicit version reads that version
    old = _config(table, tmp_path / "old", address, output={"format": "parquet"},
                  source={**base["source"], "version": 0})
    assert run.inspect_input(old).n_rows == 400

    # incremental scoring from the log: appended files scored, removed ones dropped
    score = _config(table, tmp_path / "scores", address, **base,
                    score={"model_path": str(tmp_path / "fit")})
    first = run.execute(score, run.SCORE)
    assert first["files"] == {"scored": 4, "unchanged": 0, "removed": 0}
    assert first["manifest"]["source"]["version"] == 3
    assert run.execute(score, run.SCORE)["manifest"] is None
    # an overwrite of one day (version 4): its old file is removed, the new one added
    write_deltalake(str(table), _day_table("2026-11-29", n=100, seed=5).drop(["region"]),
                    partition_by=["day"], mode="overwrite", predicate="day = '2026-11-29'")
    second = run.execute(score, run.SCORE)
    assert second["files"] == {"scored": 1, "unchanged": 3, "removed": 1}
    assert second["manifest"]["source"]["version"] == 4
    scores = _labels(tmp_path / "scores" / "assignments")
    source_ids = DeltaTable(str(table)).to_pyarrow_table().column("id").to_pylist()
    assert sorted(scores["id"]) == sorted(source_ids) and len(source_ids) == 1300
    # Delta in, Delta out: the partition column keeps the source's type
    out = DeltaTable(str(tmp_path / "scores" / "assignments"))
    assert out.metadata().partition_columns == ["day"]


def test_delta_partition_types_and_text_survive(tmp_path, cluster2):
    """Typed partitions (date, int) and values that need escaping in a path."""
    import datetime

    table = tmp_path / "typed"
    n = 200
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 2)) + np.repeat([[0, 0], [8, 8]], n // 2, axis=0)
    write_deltalake(str(table), pa.table({
        "id": np.arange(n), "x0": X[:, 0], "x1": X[:, 1],
        "day": pa.array([datetime.date(2026, 11, 28 + i % 2) for i in range(n)]),
        "hour": pa.array([i % 2 for i in range(n)], pa.int32()),
        "site": ["a b:c/d" if i % 2 else "e%f" for i in range(n)]}),
        partition_by=["day", "hour", "site"])
    config = _config(table, tmp_path / "out", cluster2.scheduler_address,
                     source={"format": "delta", "passthrough": ["id", "day", "hour", "site"],
                             "filter": [["hour", "=", 1]]},
                     model={"n_components": 2})
    run.execute(config, run.FIT)
    out = DeltaTable(str(tmp_path / "out" / "assignments"))
    schema = pa.schema(out.schema().to_arrow())
    assert schema.field("day").type == pa.date32() and schema.field("hour").type == pa.int32()
    got = out.to_pyarrow_table().sort_by("id").to_pydict()
    assert got["id"] == list(range(1, n, 2))
    assert set(got["site"]) == {"a b:c/d"} and set(got["hour"]) == {1}
    assert set(got["day"]) == {datetime.date(2026, 11, 29)}


# ------------------------------------------------------------------ bad Delta input


def test_bad_delta_input_is_named(tmp_path, lake):
    not_delta = _config(lake, tmp_path / "out", None, source={"format": "delta"})
    with pytest.raises(DataError, match="source.path: .* is not a Delta table"):
        run.inspect_input(not_delta)
    table = tmp_path / "table"
    _delta_source(table, DAYS[:2])
    missing = _config(table, tmp_path / "out", None,
                      source={"format": "delta", "version": 7, "passthrough": ["id"]})
    with pytest.raises(DataError, match=r"source.version: version 7 .*\(the latest is 1\)"):
        run.inspect_input(missing)
    as_parquet = _config(table, tmp_path / "out", None, source={"passthrough": ["id"]})
    with pytest.raises(DataError, match="is a Delta table; set source.format: delta"):
        run.inspect_input(as_parquet)


def test_the_command_says_what_is_wrong_and_leaves_the_output(tmp_path, lake):
    table = tmp_path / "table"
    _delta_source(table, DAYS[:1])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous output")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    for source, needle in [({"path": str(lake), "format": "delta"}, "source.path:"),
                           ({"path": str(table), "format": "delta", "version": 3},
                            "source.version:")]:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"source": {**source, "passthrough": ["id"]},
                                          "output": {"path": str(out), "mode": "overwrite"}}))
        result = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines()
                  if line.startswith("mixlake: error:")]
        assert len(errors) == 1 and needle in errors[0], result.stderr
        assert os.listdir(out) == ["keep.txt"]


# ------------------------------------------------------------------ S3


def _s3fs():
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem()


@pytest.mark.slow
def test_delta_in_and_out_on_s3(s3_server, tmp_path):  # noqa: F811
    options = {"AWS_ENDPOINT_URL": s3_server, "AWS_ALLOW_HTTP": "true",
               "AWS_REGION": "us-east-1"}
    source = f"s3://{BUCKET}/delta/events"
    for i, day in enumerate(DAYS[:2]):
        write_deltalake(source, _day_table(day, seed=i).drop(["region"]), partition_by=["day"],
                        mode="append", storage_options=options)
    # an embedded cluster, started after the server's credentials are in the environment
    address = None
    base = {"source": {"format": "delta", "passthrough": ["id", "day"]},
            "cluster": {"n_workers": 1, "memory_limit": "1GiB"}}
    fit = _config(source, f"s3://{BUCKET}/delta/fit", address, **base)
    fitted = run.execute(fit, run.FIT)
    out = f"s3://{BUCKET}/delta/fit/assignments"
    assert DeltaTable(out, storage_options=options).version() == 0
    assert len(_labels(out, storage_options=options)["id"]) == 800
    fs = _s3fs()
    manifest = json.loads(fs.cat_file(f"{BUCKET}/delta/fit/_SUCCESS.json"))
    assert manifest["source"]["version"] == 1 and manifest["delta"]["version"] == 0
    assert manifest["prefix"] == f"runs/{fitted['run_id']}"
    assert fs.exists(f"{BUCKET}/delta/fit/{manifest['prefix']}/model/model.json")

    score = _config(source, f"s3://{BUCKET}/delta/scores", address, **base,
                    score={"model_path": f"s3://{BUCKET}/delta/fit"})
    assert run.execute(score, run.SCORE)["files"]["scored"] == 2
    write_deltalake(source, _day_table(DAYS[2], seed=2).drop(["region"]), partition_by=["day"],
                    mode="append", storage_options=options)
    second = run.execute(score, run.SCORE)
    assert second["files"] == {"scored": 1, "unchanged": 2, "removed": 0}
    scores = f"s3://{BUCKET}/delta/scores/assignments"
    assert DeltaTable(scores, storage_options=options).version() == 1
    assert len(_labels(scores, storage_options=options)["id"]) == 1200
    assert len(_labels(scores, version=0, storage_options=options)["id"]) == 800


@pytest.mark.slow
def test_a_run_killed_between_its_delta_commit_and_its_manifest_is_rolled_back(
        s3_server, tmp_path):  # noqa: F811
    """SIGKILL after the Delta commit, before _SUCCESS.json: the next run restores the
    table to the published version, says so, and publishes its own commit."""
    import signal

    options = {"AWS_ENDPOINT_URL": s3_server, "AWS_ALLOW_HTTP": "true",
               "AWS_REGION": "us-east-1"}
    local = tmp_path / "lake"
    _write_days(local, DAYS[:2])
    fs = _s3fs()
    fs.put(str(local), f"{BUCKET}/killed/lake", recursive=True)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"path": f"s3://{BUCKET}/killed/lake", "passthrough": ["id", "day"]},
        "model": {"n_components": 3, "random_state": 0},
        "cluster": {"n_workers": 1, "memory_limit": "1GiB"},
        "output": {"path": f"s3://{BUCKET}/killed/out", "format": "delta",
                   "mode": "overwrite"}}))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}

    def mixlake(*args, **extra_env):
        return subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config), *args],
                              capture_output=True, text=True, env={**env, **extra_env},
                              timeout=600)

    first = mixlake()
    assert first.returncode == 0, first.stderr
    table = f"s3://{BUCKET}/killed/out/assignments"
    published = _labels(table, storage_options=options)
    killed = mixlake("--set", "model.covariance_type=diag",
                     MIXLAKE_TEST_KILL_AT="publish:staged")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert DeltaTable(table, storage_options=options).version() == 1  # committed, unpublished
    rerun = mixlake("--set", "model.covariance_type=spherical")
    assert rerun.returncode == 0, rerun.stderr
    assert "restored the Delta table" in rerun.stderr
    # (the log read directly: DeltaTable.history holds the GIL, and this process serves S3)
    fs = _s3fs()
    operations = [json.loads(fs.cat_file(
        f"{BUCKET}/killed/out/assignments/_delta_log/{v:020d}.json").splitlines()[0])
        ["commitInfo"]["operation"] for v in range(4)]
    assert operations == ["CREATE TABLE", "WRITE", "RESTORE", "WRITE"]
    manifest = json.loads(fs.cat_file(f"{BUCKET}/killed/out/_SUCCESS.json"))
    assert manifest["delta"]["version"] == 3
    assert _labels(table, version=0, storage_options=options) == published
    assert _labels(table, version=2, storage_options=options) == published
