"""Benchmark data sets: a Gaussian mixture written once as Parquet partitions.

Every contestant reads the same files. A data set is regenerated only when its folder
lacks the ``meta.json`` of the same spec, so repeated runs reuse it. The whole-process
benchmark's data sets also carry an ``id`` column (the row number, int64) and may be
split into a given number of files.
"""

import json
import os
from dataclasses import asdict, dataclass

import numpy as np

ROWS_PER_PARTITION = 125_000


@dataclass(frozen=True)
class Spec:
    """One data set: n_samples rows of n_features from a mixture of n_true components."""

    n_samples: int
    n_features: int
    n_true: int = 8
    seed: int = 0
    with_id: bool = False
    n_files: int = 0  # 0: one file per ROWS_PER_PARTITION rows

    @property
    def name(self):
        name = f"n{self.n_samples}-d{self.n_features}-k{self.n_true}-s{self.seed}"
        return name + ("-id" if self.with_id else "") + (f"-f{self.n_files}" if self.n_files
                                                          else "")

    @property
    def rows_per_file(self):
        return -(-self.n_samples // self.n_files) if self.n_files else ROWS_PER_PARTITION

    @property
    def nbytes(self):
        return self.n_samples * self.n_features * 8


_DEFAULTS = {"with_id": False, "n_files": 0}


def _mixture(spec):
    rng = np.random.default_rng(spec.seed)
    D, K = spec.n_features, spec.n_true
    means = rng.normal(scale=4.0, size=(K, D))
    factors = rng.normal(scale=1.0 / np.sqrt(D), size=(K, D, D)) + np.eye(D)
    weights = rng.dirichlet(np.full(K, 5.0))
    return rng, weights, means, factors


def features(spec):
    return [f"x{j}" for j in range(spec.n_features)]


def generate(spec, folder):
    """Write the partitions (``part.<i>.parquet``) and ``meta.json``; return the folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = os.path.join(folder, spec.name)
    meta_path = os.path.join(folder, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            # data sets written before a field existed have its default
            if {**_DEFAULTS, **json.load(f).get("spec", {})} == asdict(spec):
                return folder
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        os.remove(os.path.join(folder, old))
    rng, weights, means, factors = _mixture(spec)
    names = features(spec)
    n_parts = -(-spec.n_samples // spec.rows_per_file)
    for part in range(n_parts):
        first = part * spec.rows_per_file
        n = min(spec.rows_per_file, spec.n_samples - first)
        labels = rng.choice(spec.n_true, size=n, p=weights)
        X = np.einsum("nd,nde->ne", rng.standard_normal((n, spec.n_features)),
                      factors[labels]) + means[labels]
        columns = {"id": np.arange(first, first + n, dtype=np.int64)} if spec.with_id else {}
        columns.update({name: X[:, j] for j, name in enumerate(names)})
        table = pa.table(columns)
        pq.write_table(table, os.path.join(folder, f"part.{part:04d}.parquet"))
    with open(meta_path, "w") as f:
        json.dump({"spec": asdict(spec), "partitions": n_parts}, f)
    return folder


def files(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".parquet"))


def read_numpy(folder, spec):
    """All partitions as one C-contiguous float64 array (what scikit-learn is given)."""
    import pyarrow.parquet as pq

    parts = []
    for path in files(folder):
        table = pq.read_table(path)
        parts.append(np.column_stack([table.column(c).to_numpy() for c in features(spec)]))
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float64)


def initial_parameters(spec, n_components, covariance_type, seed=1):
    """The same start for every contestant whose API takes one: equal weights, means
    drawn around the mixture's own means, and the mixture's overall variance (~17 per
    feature) as every component's covariance, in scikit-learn's ``precisions_init`` form."""
    rng = np.random.default_rng(seed)
    _, _, means, _ = _mixture(spec)
    picked = means[rng.integers(0, spec.n_true, n_components)]
    means_init = picked + rng.normal(scale=2.0, size=picked.shape)
    precision = 1.0 / 17.0
    D = spec.n_features
    precisions = {
        "full": np.stack([np.eye(D) * precision] * n_components),
        "tied": np.eye(D) * precision,
        "diag": np.full((n_components, D), precision),
        "spherical": np.full(n_components, precision),
    }[covariance_type]
    return {"weights_init": np.full(n_components, 1.0 / n_components),
            "means_init": means_init, "precisions_init": precisions}
