"""The demo data set: make_blobs-style clusters written as several Parquet partitions."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEMO_CONFIG = """\
# The demo run: written by `mixlake demo` next to its data. Paths are relative to this file.
name: demo
source:
  path: data
  features: [x0, x1, x2, x3]
  passthrough: [id]
model:
  n_components: {{min: 1, max: 6}}
  covariance_type: [full, tied, diag, spherical]
  random_state: 0
  criterion: bic
cluster:
  n_workers: 2
  threads_per_worker: 1
  memory_limit: 2GiB
output:
  path: output
  mode: overwrite
schedule:
  cron: "0 2 * * *"
  timezone: UTC
"""


def _blobs(rng, n_rows, n_features, n_clusters):
    """Rows from round clusters with centers in [-10, 10]; the true cluster of each."""
    centers = rng.uniform(-10, 10, size=(n_clusters, n_features))
    scales = rng.uniform(0.5, 1.5, size=n_clusters)
    truth = rng.integers(n_clusters, size=n_rows)
    return centers[truth] + rng.standard_normal((n_rows, n_features)) * scales[truth, None], truth


def make_demo_data(folder, *, n_rows=60_000, n_partitions=6, n_features=4, n_clusters=4,
                   seed=0):
    """Write ``part.<i>.parquet`` files with an ``id`` column and ``x0..x{D-1}`` features.

    Returns the true cluster of each row (in id order), for checking the result.
    """
    X, truth = _blobs(np.random.default_rng(seed), n_rows, n_features, n_clusters)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n_rows, n_partitions + 1).astype(int)
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        columns = {"id": pa.array(np.arange(start, stop, dtype=np.int64))}
        for j in range(n_features):
            columns[f"x{j}"] = pa.array(X[start:stop, j])
        pq.write_table(pa.table(columns), folder / f"part.{i}.parquet")
    return truth


def make_lake_data(folder, days, *, rows_per_day=10_000, n_features=4, n_clusters=4, seed=0,
                   first_day="2026-11-01"):
    """A Hive-partitioned table: ``day=YYYY-MM-DD/part-0.parquet`` for ``days`` days from
    ``first_day``, each day drawn from the same clusters, ids unique across days. Days
    already there are left as they are, so a call with more days adds the new ones, as a
    lake grows.

    Returns the days written (as text).
    """
    import datetime as dt

    # the clusters come from the seed; each day's rows from the seed and the day
    clusters = np.random.default_rng([seed, 0])
    centers = clusters.uniform(-10, 10, size=(n_clusters, n_features))
    scales = clusters.uniform(0.5, 1.5, size=n_clusters)
    start = dt.date.fromisoformat(first_day)
    written = []
    for offset in range(days):
        day = (start + dt.timedelta(days=offset)).isoformat()
        rows = np.random.default_rng([seed, offset + 1])
        truth = rows.integers(n_clusters, size=rows_per_day)
        X = centers[truth] + rows.standard_normal((rows_per_day, n_features)) * scales[truth, None]
        ids = np.arange(offset * rows_per_day, (offset + 1) * rows_per_day, dtype=np.int64)
        columns = {"id": pa.array(ids), **{f"x{j}": pa.array(X[:, j]) for j in range(n_features)}}
        partition = Path(folder) / f"day={day}"
        if (partition / "part-0.parquet").exists():
            continue
        partition.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), partition / "part-0.parquet")
        written.append(day)
    return written


def write_demo(directory):
    """Data under ``directory/data`` and the config ``directory/demo.yaml``."""
    directory = Path(directory)
    make_demo_data(directory / "data")
    config_path = directory / "demo.yaml"
    config_path.write_text(DEMO_CONFIG.format())
    return config_path
