"""Helpers of the source and assignment tests: small real Parquet partitions."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Source


def write(path, **columns):
    """A Parquet file at ``path`` with the given columns (lists or numpy arrays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def source(path, **options):
    return Source(path=str(path), **options)


def blob_partitions(folder, sizes=(40, 0, 60), seed=0):
    """Two well-separated blobs split into files ``part.<i>.parquet`` (one may be empty)."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    labels = rng.integers(2, size=n)
    X = rng.standard_normal((n, 2)) + np.array([[0.0, 0.0], [8.0, 8.0]])[labels]
    bounds = np.cumsum((0, *sizes))
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        write(Path(folder) / f"part.{i}.parquet", id=np.arange(start, stop, dtype=np.int64),
              name=pa.array([f"row{j}" for j in range(start, stop)], pa.string()),
              x0=X[start:stop, 0],
              x1=X[start:stop, 1])
    return X


def read_parts(folder):
    return [pq.read_table(p) for p in sorted(Path(folder).glob("part.*.parquet"),
                                             key=lambda p: int(p.name.split(".")[1]))]
