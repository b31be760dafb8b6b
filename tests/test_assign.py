"""Assignments out: one file per input partition, rows in order, nulls for dropped rows.

Real Parquet files in tmp_path; dask's default threaded scheduler (no cluster needed).
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from parquet_files import blob_partitions, read_parts, source, write

from pipeline import GaussianMixture
from pipeline.assign import write_assignments
from pipeline.mixture import _kernels
from pipeline.source import load


def fitted_model(X, n_components=2):
    estimator = GaussianMixture(n_components, random_state=0).fit(X)
    model = _kernels.prepare_model(estimator.weights_, estimator.means_,
                                   estimator.precisions_cholesky_, estimator.covariance_type,
                                   np.dtype("float64"))
    return estimator, model


def test_write_assignments_one_part_per_file(tmp_path):
    X = blob_partitions(tmp_path / "in", sizes=(40, 0, 60))
    dataset = load(source(tmp_path / "in", features=["x0", "x1"], passthrough=["id", "name"]))
    estimator, model = fitted_model(X)
    results = write_assignments(dataset, model, 2, ["probabilities", "log_density"],
                                str(tmp_path / "out"))
    assert [r["part"] for r in results] == ["part.0.parquet", "part.1.parquet", "part.2.parquet"]
    assert [(r["rows_in"], r["rows_out"], r["rows_dropped"]) for r in results] == [
        (40, 40, 0), (0, 0, 0), (60, 60, 0)]
    parts = read_parts(tmp_path / "out" / "assignments")
    assert len(parts) == 3
    inputs = [pq.read_table(f) for f in dataset.files]
    for part, table in zip(parts, inputs):
        assert part.column_names == ["id", "name", "cluster", "prob_0", "prob_1", "log_density"]
        assert part.schema.field("cluster").type == pa.int32()
        assert part.select(["id", "name"]).equals(table.select(["id", "name"]))
    out = pa.concat_tables(parts)
    proba = np.column_stack([out.column("prob_0").to_numpy(), out.column("prob_1").to_numpy()])
    cluster = out.column("cluster").to_numpy()
    np.testing.assert_array_equal(cluster, proba.argmax(axis=1))
    np.testing.assert_array_equal(cluster, estimator.predict(X))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(proba, estimator.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(out.column("log_density").to_numpy(),
                               estimator.score_samples(X), rtol=1e-12)
    assert sum(r["cluster_counts"][k] for r in results for k in range(2)) == 100
    assert np.bincount(cluster).tolist() == np.sum([r["cluster_counts"] for r in results],
                                                   axis=0).tolist()


def test_write_assignments_keeps_dropped_rows_with_nulls(tmp_path):
    folder = tmp_path / "in"
    X = blob_partitions(folder, sizes=(30, 30))
    raw = X.copy()
    raw[[3, 10]] = np.nan
    raw[40, 1] = np.inf
    write(folder / "part.0.parquet", id=np.arange(30), x0=raw[:30, 0], x1=raw[:30, 1])
    write(folder / "part.1.parquet", id=np.arange(30, 60), x0=raw[30:, 0], x1=raw[30:, 1])
    dataset = load(source(folder, features=["x0", "x1"], passthrough=["id"], nan_policy="drop"))
    assert dataset.rows_dropped == 3
    estimator, model = fitted_model(dataset.X.compute())
    results = write_assignments(dataset, model, 2, ["probabilities", "log_density"],
                                str(tmp_path / "out"))
    assert [(r["rows_in"], r["rows_out"], r["rows_dropped"]) for r in results] == [
        (30, 30, 2), (30, 30, 1)]
    out = pa.concat_tables(read_parts(tmp_path / "out" / "assignments"))
    assert out.num_rows == 60
    assert out.column("id").to_pylist() == list(range(60))
    dropped = ~np.isfinite(raw).all(axis=1)
    for name in ("cluster", "prob_0", "prob_1", "log_density"):
        assert out.column(name).is_null().to_numpy(zero_copy_only=False).tolist() == \
            dropped.tolist(), name
    kept = out.filter(pa.array(~dropped))
    np.testing.assert_array_equal(kept.column("cluster").to_numpy(),
                                  estimator.predict(raw[~dropped]))


@pytest.mark.parametrize("columns, expected", [
    (["probabilities", "log_density"], ["prob_0", "prob_1", "prob_2", "log_density"]),
    (["probabilities"], ["prob_0", "prob_1", "prob_2"]),
    (["log_density"], ["log_density"]),
    ([], []),
])
def test_write_assignments_columns_option(tmp_path, columns, expected):
    X = blob_partitions(tmp_path / "in", sizes=(30,))
    dataset = load(source(tmp_path / "in", features=["x0", "x1"], passthrough=["id"]))
    _, model = fitted_model(X, n_components=3)
    write_assignments(dataset, model, 3, columns, str(tmp_path / "out"))
    (part,) = read_parts(tmp_path / "out" / "assignments")
    assert part.column_names == ["id", "cluster", *expected]


def test_write_assignments_applies_the_standardization(tmp_path):
    X = blob_partitions(tmp_path / "in", sizes=(40, 60))
    dataset = load(source(tmp_path / "in", features=["x0", "x1"], standardize=True))
    Z = dataset.X.compute()
    estimator, model = fitted_model(Z)
    write_assignments(dataset, model, 2, ["probabilities"], str(tmp_path / "out"))
    out = pa.concat_tables(read_parts(tmp_path / "out" / "assignments"))
    np.testing.assert_array_equal(out.column("cluster").to_numpy(), estimator.predict(Z))
    np.testing.assert_allclose(Z, (X - X.mean(axis=0)) / X.std(axis=0), atol=1e-12)


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_blocks_kept_by_the_fit_write_what_reading_again_writes(client2, tmp_path,
                                                               standardize, dtype):
    # on a cluster the load keeps each file's block in the workers' memory and the writer
    # scores that block (reading only the passthrough columns): the same files, byte for
    # byte, as scoring the features read again
    from distributed import futures_of

    from pipeline import assign

    X = blob_partitions(tmp_path / "in", sizes=(40, 0, 60))
    dataset = load(source(tmp_path / "in", features=["x0", "x1"], passthrough=["id"],
                          standardize=standardize), dtype=dtype)
    assert futures_of(dataset.X)
    kept = assign._kept_blocks(dataset)
    assert all(block is not None for block in kept)
    estimator, _ = fitted_model(dataset.X.compute().astype(np.float64))
    model = estimator._model(np.dtype(dtype))
    columns = ["probabilities", "log_density"]
    write_assignments(dataset, model, 2, columns, str(tmp_path / "kept"))
    dataset.X = dataset.X.compute()  # not persisted on a cluster: the files are read again
    assert assign._kept_blocks(dataset) == [None] * 3
    write_assignments(dataset, model, 2, columns, str(tmp_path / "read"))
    for name in ("part.0.parquet", "part.1.parquet", "part.2.parquet"):
        kept_bytes = (tmp_path / "kept" / "assignments" / name).read_bytes()
        assert kept_bytes == (tmp_path / "read" / "assignments" / name).read_bytes(), name
    assert len(X) == 100


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scores_kept_by_the_final_pass_write_what_scoring_again_writes(client2, tmp_path,
                                                                       dtype):
    # one candidate on data persisted on a cluster: the fit's final pass keeps each
    # chunk's scores and the writer writes them instead of scoring the rows again: the
    # same files byte for byte, the same monitoring sums, the same baseline
    from pipeline import assign, monitor
    from pipeline.selection import select

    blob_partitions(tmp_path / "in", sizes=(40, 0, 60))
    dataset = load(source(tmp_path / "in", features=["x0", "x1"], passthrough=["id"]),
                   dtype=dtype)
    assert assign.can_use_scores(dataset)
    grid = dict(n_components=[2], covariance_types=["full"], random_state=0, dtype=dtype)
    kept = select(dataset.X, keep_scores=True, **grid)
    again = select(dataset.X, **grid)
    assert kept.scores is not None and len(kept.scores) == 3
    assert again.scores is None
    assert kept.baseline == again.baseline
    model = kept.estimator._model(np.dtype(dtype))
    watch = monitor.watch(kept.baseline, 0.05)
    columns = ["probabilities", "log_density", "outlier"]
    with_scores = write_assignments(dataset, model, 2, columns, str(tmp_path / "kept"),
                                    watch=watch, scores=kept.scores)
    scored = write_assignments(dataset, model, 2, columns, str(tmp_path / "scored"),
                               watch=watch)
    for name in ("part.0.parquet", "part.1.parquet", "part.2.parquet"):
        kept_bytes = (tmp_path / "kept" / "assignments" / name).read_bytes()
        assert kept_bytes == (tmp_path / "scored" / "assignments" / name).read_bytes(), name
    for a, b in zip(with_scores, scored):
        assert a["cluster_counts"] == b["cluster_counts"]
        assert a["monitor"].keys() == b["monitor"].keys()
        for key in a["monitor"]:
            np.testing.assert_array_equal(a["monitor"][key], b["monitor"][key], err_msg=key)


def test_no_scores_kept_for_a_grid_or_data_not_on_a_cluster(client2, tmp_path):
    from pipeline.selection import select

    blob_partitions(tmp_path / "in", sizes=(40, 60))
    dataset = load(source(tmp_path / "in", features=["x0", "x1"]))
    grid = select(dataset.X, n_components=[1, 2], covariance_types=["full"], random_state=0,
                  keep_scores=True)
    assert grid.scores is None
    local = select(dataset.X.compute(), n_components=[2], covariance_types=["full"],
                   random_state=0, keep_scores=True)
    assert local.scores is None
