"""The lake: Hive-partitioned input and output, partition filters, incremental scoring.

Real partitioned Parquet folders (written by pyarrow.dataset.write_dataset), real runs
through pipeline.run.execute on a 2-worker LocalCluster of processes.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline import run
from pipeline.config import parse_config
from pipeline.storage import DataError

DAYS = ["2026-11-28", "2026-11-29", "2026-11-30"]


def _day_table(day, n=600, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(3, size=n)
    X = rng.standard_normal((n, 2)) + np.array([[0, 0], [6, 0], [0, 6]])[labels] + shift
    start = DAYS.index(day) * 10_000 if day in DAYS else 90_000
    return pa.table({"id": np.arange(start, start + n), "x0": X[:, 0], "x1": X[:, 1],
                     "region": ["eu", "us"] * (n // 2), "day": [day] * n})


def _write_days(root, days, seed=0):
    for i, day in enumerate(days):
        ds.write_dataset(_day_table(day, seed=seed + i), root, format="parquet",
                         partitioning=["day", "region"], partitioning_flavor="hive",
                         existing_data_behavior="overwrite_or_ignore",
                         basename_template=f"part-{i}-{{i}}.parquet")


@pytest.fixture
def lake(tmp_path):
    root = tmp_path / "lake" / "events"
    _write_days(root, DAYS)
    return root


def _config(tmp_path, data, out, address, **sections):
    raw = {"source": {"path": str(data), "passthrough": ["id", "day", "region"]},
           "model": {"n_components": 3, "covariance_type": "full", "random_state": 0},
           "cluster": {"address": address},
           "output": {"path": str(out)}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def _mtimes(folder):
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
            for p in Path(folder).rglob("*") if p.is_file()}


def test_hive_partitions_in_and_out(tmp_path, lake, cluster2):
    config = _config(tmp_path, lake, tmp_path / "out", cluster2.scheduler_address)
    summary = run.execute(config, run.FIT)
    out = tmp_path / "out" / "assignments"
    inputs = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet"))
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert outputs == inputs and len(inputs) == 6  # one file per input file, same folders
    assert summary["files"] == {"selected": 6, "listed": 6}
    # partition keys are folder names, not columns inside the files, and not features
    assert pq.read_schema(out / outputs[0]).names == ["id", "cluster", "prob_0", "prob_1",
                                                      "prob_2", "log_density", "outlier"]
    assert summary["features"] == ["x0", "x1"]
    # read back as one table with the keys restored, joinable on the passthrough keys
    got = ds.dataset(out, format="parquet", partitioning="hive").to_table().to_pandas()
    want = ds.dataset(lake, format="parquet", partitioning="hive").to_table().to_pandas()
    assert len(got) == len(want) == 1800
    merged = want.merge(got, on="id", suffixes=("_in", "_out"))
    assert len(merged) == 1800
    assert (merged["day_in"].astype(str) == merged["day_out"].astype(str)).all()
    assert (merged["region_in"].astype(str) == merged["region_out"].astype(str)).all()
    import dask.dataframe as dd

    assert len(dd.read_parquet(str(out)).compute()) == 1800
    import duckdb

    joined = duckdb.sql(
        f"SELECT count(*), count(DISTINCT a.day) FROM read_parquet('{out}/**/*.parquet', "
        f"hive_partitioning = true) a JOIN read_parquet('{lake}/**/*.parquet', "
        "hive_partitioning = true) i ON a.id = i.id AND a.day = i.day AND a.region = i.region"
    ).fetchall()
    assert joined == [(1800, 3)]
    manifest = json.loads((tmp_path / "out" / "_SUCCESS.json").read_text())
    assert len(manifest["inputs"]) == 6 and all(i["rows"] == 300 for i in manifest["inputs"])
    assert manifest["outputs"] == sorted(f"assignments/{o}" for o in inputs)


def test_a_filter_prunes_partitions_before_any_file_is_opened(tmp_path, lake, cluster2):
    # a broken file in a pruned partition: opening it would fail the run
    (lake / "day=2026-11-28" / "region=eu" / "part-9-0.parquet").write_bytes(b"broken")
    config = _config(tmp_path, lake, tmp_path / "out", cluster2.scheduler_address,
                     source={"filter": [["day", ">=", "2026-11-29"], ["region", "in", ["eu"]]]})
    summary = run.execute(config, run.FIT)
    assert summary["files"] == {"selected": 2, "listed": 7}
    assert summary["n_rows"] == 600
    folders = sorted(p.parent.relative_to(tmp_path / "out" / "assignments").as_posix()
                     for p in (tmp_path / "out" / "assignments").rglob("*.parquet"))
    assert folders == ["day=2026-11-29/region=eu", "day=2026-11-30/region=eu"]
    other = _config(tmp_path, lake, tmp_path / "out", cluster2.scheduler_address)
    assert other.config_hash() != config.config_hash()  # the window is part of the hash


@pytest.mark.parametrize("flt, needle", [
    ([["hour", "=", 3]], "'hour' is not a partition key"),
    ([["day", ">=", 5]], "cannot compare the partition keys"),
    ([["day", ">=", "2027-01-01"]], "selects none of the 6 file(s)"),
])
def test_bad_filters_name_the_key(tmp_path, lake, flt, needle):
    config = _config(tmp_path, lake, tmp_path / "out", None, source={"filter": flt})
    with pytest.raises(DataError, match="source.filter") as error:
        run.inspect_input(config)
    assert needle in str(error.value)


def test_partition_folders_that_disagree_are_refused(tmp_path, lake):
    odd = tmp_path / "lake" / "events" / "date=2026-12-01" / "region=eu"
    odd.mkdir(parents=True)
    pq.write_table(_day_table("2026-12-01").drop(["day", "region"]), odd / "part-0.parquet")
    config = _config(tmp_path, lake, tmp_path / "out", None)
    with pytest.raises(DataError, match="partition folders disagree"):
        run.inspect_input(config)


def test_plain_value_folders_with_named_keys(tmp_path, cluster2):
    data = tmp_path / "plain"
    for i, day in enumerate(DAYS[:2]):
        (data / day).mkdir(parents=True)
        pq.write_table(_day_table(day, seed=i).drop(["day", "region"]), data / day / "p.parquet")
    config = _config(tmp_path, data, tmp_path / "out", cluster2.scheduler_address,
                     source={"partitioning": ["day"], "passthrough": ["id", "day"]})
    run.execute(config, run.FIT)
    got = ds.dataset(tmp_path / "out" / "assignments", partitioning="hive").to_table()
    assert sorted(set(got.column("day").to_pylist())) == DAYS[:2]


# ------------------------------------------------------------------ incremental scoring


def test_score_scores_only_what_is_new(tmp_path, lake, cluster2):
    address = cluster2.scheduler_address
    fit = _config(tmp_path, lake, tmp_path / "fit", address)
    run.execute(fit, run.FIT)
    score = _config(tmp_path, lake, tmp_path / "scores", address,
                    score={"model_path": str(tmp_path / "fit")})
    first = run.execute(score, run.SCORE)
    assert first["files"] == {"scored": 6, "unchanged": 0, "removed": 0}
    out = tmp_path / "scores"
    before = _mtimes(out)

    again = run.execute(score, run.SCORE)  # nothing new: nothing written at all
    assert again["manifest"] is None and again["files"]["unchanged"] == 6
    assert _mtimes(out) == before

    _write_days(lake, ["2026-12-01"], seed=7)  # a new day arrives
    third = run.execute(score, run.SCORE)
    assert third["files"] == {"scored": 2, "unchanged": 6, "removed": 0}
    after = _mtimes(out)
    for name, mtime in before.items():  # the old days' files were carried, not rewritten
        if name.startswith("assignments/"):
            assert after[name] == mtime, name
    new = [n for n in after if "day=2026-12-01" in n]
    assert len(new) == 2
    table = ds.dataset(out / "assignments", partitioning="hive").to_table()
    assert table.num_rows == 2400 and len(set(table.column("id").to_pylist())) == 2400
    manifest = json.loads((out / "_SUCCESS.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [
        str(p) for p in sorted((lake / "day=2026-12-01").rglob("*.parquet"))]

    shutil.rmtree(lake / "day=2026-11-28")  # a day disappears: its output goes too
    fourth = run.execute(score, run.SCORE)
    assert fourth["files"] == {"scored": 0, "unchanged": 6, "removed": 2}
    assert not (out / "assignments" / "day=2026-11-28").exists()

    full = run.execute(score.model_copy(update={"output": score.output.model_copy(
        update={"mode": "overwrite"})}), run.SCORE)
    assert full["files"] == {"scored": 6, "unchanged": 0, "removed": 0}


def test_a_new_model_rescores_everything(tmp_path, lake, cluster2):
    address = cluster2.scheduler_address
    run.execute(_config(tmp_path, lake, tmp_path / "fit", address), run.FIT)
    score = _config(tmp_path, lake, tmp_path / "scores", address,
                    score={"model_path": str(tmp_path / "fit")})
    run.execute(score, run.SCORE)
    refit = _config(tmp_path, lake, tmp_path / "fit", address,
                    model={"covariance_type": "diag"}, output={"mode": "overwrite"})
    run.execute(refit, run.FIT)
    assert run.execute(score, run.SCORE)["files"]["scored"] == 6


@pytest.mark.parametrize("damage", ["not json", "edited"])
def test_a_damaged_ledger_is_named(tmp_path, lake, cluster2, damage):
    address = cluster2.scheduler_address
    run.execute(_config(tmp_path, lake, tmp_path / "fit", address), run.FIT)
    score = _config(tmp_path, lake, tmp_path / "scores", address,
                    score={"model_path": str(tmp_path / "fit")})
    run.execute(score, run.SCORE)
    path = tmp_path / "scores" / "_ledger.json"
    if damage == "not json":
        path.write_text("{oops")
    else:
        payload = json.loads(path.read_text())
        payload["entries"][0]["rows"] += 1
        path.write_text(json.dumps(payload))
    before = _mtimes(tmp_path / "scores")
    with pytest.raises(DataError, match="_ledger.json") as error:
        run.execute(score, run.SCORE)
    assert "--full" in str(error.value)
    assert _mtimes(tmp_path / "scores") == before
    assert sorted(os.listdir(tmp_path)) == ["fit", "lake", "scores"]


def test_scoring_checks_each_file_as_it_reads_it(tmp_path, lake, cluster2):
    """Scoring makes no scan pass: a NaN in a new file fails as it is read, naming the
    file and the column, and the published output stays as it was."""
    address = cluster2.scheduler_address
    run.execute(_config(tmp_path, lake, tmp_path / "fit", address), run.FIT)
    score = _config(tmp_path, lake, tmp_path / "scores", address,
                    score={"model_path": str(tmp_path / "fit")})
    run.execute(score, run.SCORE)
    before = _mtimes(tmp_path / "scores")
    table = _day_table("2026-12-01").drop(["day", "region"])
    x1 = table.column("x1").to_numpy().copy()
    x1[7] = np.nan
    bad = lake / "day=2026-12-01" / "region=eu"
    bad.mkdir(parents=True)
    pq.write_table(table.set_column(2, "x1", pa.array(x1)), bad / "part-0.parquet")
    with pytest.raises(DataError, match=r"part-0.parquet: column 'x1' has 1 NaN"):
        run.execute(score, run.SCORE)
    assert _mtimes(tmp_path / "scores") == before
    dropped = score.model_copy(update={"source": score.source.model_copy(
        update={"nan_policy": "drop"})})
    assert run.execute(dropped, run.SCORE)["files"]["scored"] == 1
    out = pq.read_table(tmp_path / "scores" / "assignments" / "day=2026-12-01" / "region=eu"
                        / "part-0.parquet")
    assert out.column("cluster").null_count == 1
    assert out.column("outlier").null_count == 1


# ------------------------------------------------------------------ source.weight


def test_source_weight_fits_by_weight_and_scoring_needs_no_weights(tmp_path, cluster2):
    address = cluster2.scheduler_address
    data, unweighted = tmp_path / "data", tmp_path / "new"
    for i in range(2):
        table = _day_table(DAYS[i], seed=i)
        # a far blob of weight 0: the fit must not see it, not even to start a component
        far = np.arange(table.num_rows) % 6 == 0
        x0 = np.where(far, table["x0"].to_numpy() + 80.0, table["x0"].to_numpy())
        table = table.set_column(1, "x0", pa.array(x0)).append_column(
            "w", pa.array(np.where(far, 0, 1 + i), pa.int64()))
        data.mkdir(exist_ok=True)
        pq.write_table(table.drop_columns(["day", "region"]), data / f"part-{i}.parquet")
        unweighted.mkdir(exist_ok=True)
        pq.write_table(table.drop_columns(["day", "region", "w"]),
                       unweighted / f"part-{i}.parquet")
    fit = _config(tmp_path, data, tmp_path / "fit", address,
                  source={"passthrough": ["id"], "weight": "w"},
                  model={"n_components": [2, 3, 4]})
    summary = run.execute(fit, run.FIT)
    assert summary["features"] == ["x0", "x1"]  # the weight column is no feature
    assert summary["chosen"].startswith("full-k3")
    model = json.loads((tmp_path / "fit" / "model" / "model.json").read_text())
    assert model["features"] == ["x0", "x1"]
    means = np.load(tmp_path / "fit" / "model" / "params.npz")["means"]
    assert np.all(means[:, 0] < 20), means
    assert "w" not in pq.read_schema(next((tmp_path / "fit" / "assignments").rglob(
        "*.parquet"))).names
    score = _config(tmp_path, unweighted, tmp_path / "scores", address,
                    source={"passthrough": ["id"], "weight": "w"},
                    score={"model_path": str(tmp_path / "fit")})
    assert run.execute(score, run.SCORE)["files"]["scored"] == 2
