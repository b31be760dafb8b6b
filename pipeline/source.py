"""The input table: Parquet partitions in, as a dask array with one chunk per file.

The only module that opens input Parquet files. A run inspects the input once
(:func:`inspect`: file list, feature columns, row counts from the footers) and hands the
resulting :class:`Schema` on to :func:`load` and to the assignment writer.

Reading never goes through a dask DataFrame: each file becomes exactly one chunk of the
feature array, whose row count comes from the Parquet footer (or from the scan pass
when rows are dropped). So chunks stay aligned with partitions, and with the
passthrough columns that the writer reads back from the same file (dask/dask#12411:
column selection on a DataFrame may merge partitions and misalign them).
"""

import hashlib
import logging
import posixpath
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage import DataError, filesystem, reading, release_arrow_memory

logger = logging.getLogger("pipeline.source")

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


# ------------------------------------------------------------------ files


def _is_data_file(name, base):
    """A Parquet file, and neither it nor a folder between ``base`` and it is hidden or
    metadata (``_SUCCESS``, ``_metadata``, Spark's ``_temporary/``, ``.staging/``)."""
    relative = name[len(base):] if name.startswith(base) else posixpath.basename(name)
    parts = [part for part in relative.split("/") if part]
    return bool(parts) and parts[-1].endswith(PARQUET_SUFFIXES) and not any(
        part.startswith(("_", ".")) for part in parts)


def natural_key(path):
    """Sort key that puts part.2 before part.10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def list_parquet_files(path, storage_options=None):
    """Sorted Parquet files under a file, a directory (recursively) or a glob."""
    fs, root = filesystem(path, storage_options)
    if any(ch in root for ch in "*?["):
        base = root[:min(root.find(ch) for ch in "*?[" if ch in root)].rpartition("/")[0]
        found = [f for f in fs.glob(root) if fs.isfile(f)]
        files = sorted((f for f in found if _is_data_file(f, base)), key=natural_key)
    elif fs.isdir(root):
        files = sorted((f for f in fs.find(root) if _is_data_file(f, root)), key=natural_key)
    elif fs.exists(root):
        files = [root]
    else:
        raise DataError(f"source.path: {path!r} does not exist; check the path in the config")
    if not files:
        raise DataError(f"source.path: no Parquet files match {path!r}")
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    if protocol not in ("file", "local"):
        files = [f"{protocol}://{f}" for f in files]
    return files


def read_table(path, columns, storage_options):
    """Columns of one input file as an Arrow table."""
    fs, root = filesystem(path, storage_options)
    with reading(path), fs.open(root, "rb") as handle:
        return pq.read_table(handle, columns=columns)


def _read_footer(path, storage_options):
    fs, root = filesystem(path, storage_options)
    with reading(path), fs.open(root, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        return parquet.schema_arrow, parquet.metadata.num_rows


def _is_numeric(arrow_type):
    return (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
            or pa.types.is_decimal(arrow_type))


# ------------------------------------------------------------------ inspection


@dataclass
class Schema:
    """What a run knows of its input before reading any data: files, features, rows."""

    files: list
    features: list
    rows: list  # per file, from the footers

    @property
    def n_rows(self):
        return int(sum(self.rows))


def inspect_schema(source, files, features=None):
    """Check every file's footer: feature columns present and numeric, passthrough present.

    Parameters
    ----------
    source : pipeline.config.Source
    files : list of str
    features : list of str, optional
        Overrides ``source.features`` (a saved model's features when scoring).

    Returns
    -------
    features : list of str
    rows : list of int
    """
    features = list(features or source.features or []) or None
    rows = []
    for path in files:
        schema, n_rows = _read_footer(path, source.storage_options)
        rows.append(n_rows)
        names = set(schema.names)
        if features is None:
            features = [f.name for f in schema if _is_numeric(f.type)
                        and f.name not in source.passthrough]
            if not features:
                raise DataError(f"{path}: no numeric columns to use as features; "
                                "list them in source.features")
        for column in source.passthrough:
            if column not in names:
                raise DataError(f"source.passthrough: column {column!r} is missing from "
                                f"{path}; every partition must have it")
        for column in features:
            if column not in names:
                raise DataError(f"source.features: column {column!r} is missing from "
                                f"{path}; every partition must have it")
            # numeric types may differ between partitions: every one is read as float64
            arrow_type = schema.field(column).type
            if not _is_numeric(arrow_type):
                raise DataError(
                    f"source.features: column {column!r} in {path} is "
                    f"{arrow_type}, not numeric; remove it from source.features or cast it")
    return features, rows


def inspect(source, features=None):
    """List the partitions and read their footers (no data): the run's :class:`Schema`."""
    files = list_parquet_files(source.path, source.storage_options)
    features, rows = inspect_schema(source, files, features)
    return Schema(files=files, features=features, rows=rows)


def fingerprint(files, storage_options=None):
    """A hash of the input files' paths, sizes and modification times (or ETags)."""
    fs, _ = filesystem(files[0], storage_options)
    digest = hashlib.sha256()
    for path in files:
        info = fs.info(filesystem(path, storage_options)[1])
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        digest.update(f"{path}\0{info.get('size')}\0{stamp}\n".encode())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------ reading


def features_from_table(table, features):
    """The feature columns of an Arrow table as a float64 array (nulls become NaN)."""
    if table.num_rows == 0:
        return np.empty((0, len(features)))
    # safe=False: an int64 beyond 2**53 becomes the nearest float64 instead of failing
    return np.column_stack([table.column(c).cast(pa.float64(), safe=False)
                            .to_numpy(zero_copy_only=False) for c in features])


def read_features(path, features, storage_options, dtype="float64"):
    """The feature columns of one file as a float array (nulls become NaN).

    Columns are read one at a time into the output array, so a worker streaming a
    partition holds the array plus one column, not a whole Arrow table besides it.
    """
    fs, root = filesystem(path, storage_options)
    try:
        with reading(path), fs.open(root, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            X = np.empty((parquet.metadata.num_rows, len(features)), dtype=dtype)
            for j, column in enumerate(features):
                table = parquet.read(columns=[column], use_threads=False)
                if table.num_rows:
                    X[:, j] = features_from_table(table, [column])[:, 0]
                del table
    finally:
        release_arrow_memory()
    return X


@dataclass
class Dataset:
    """The input as the engine sees it: files, features, and the lazily read array."""

    files: list
    features: list
    passthrough: list
    storage_options: dict
    nan_policy: str
    rows: list  # rows per file
    valid_rows: list  # rows per file kept for the fit (after nan_policy)
    dtype: str = "float64"
    scaler_mean: np.ndarray | None = None
    scaler_scale: np.ndarray | None = None
    X: object = field(default=None, repr=False)

    @property
    def n_rows(self):
        return int(sum(self.rows))

    @property
    def rows_dropped(self):
        return int(sum(self.rows) - sum(self.valid_rows))


def _scan_file(path, features, storage_options, distinct_limit):
    X = read_features(path, features, storage_options)
    valid = np.isfinite(X).all(axis=1)
    Xv = X[valid]
    mean = Xv.mean(axis=0) if len(Xv) else np.zeros(X.shape[1])
    m2 = ((Xv - mean) ** 2).sum(axis=0) if len(Xv) else np.zeros(X.shape[1])
    return {
        # exact constancy test: a rounded mean makes m2 > 0 for a constant column
        "min": Xv.min(axis=0) if len(Xv) else np.full(X.shape[1], np.inf),
        "max": Xv.max(axis=0) if len(Xv) else np.full(X.shape[1], -np.inf),
        "rows": int(X.shape[0]),
        "nan": np.isnan(X).sum(axis=0),
        "inf": np.isinf(X).sum(axis=0),
        "valid": int(valid.sum()),
        "mean": mean,
        "m2": m2,
        # up to distinct_limit distinct rows: enough to tell "fewer distinct rows than
        # components" without a global distinct count
        "distinct": np.unique(Xv, axis=0)[:distinct_limit] if distinct_limit else Xv[:0],
    }


def _read_block(paths, features, storage_options, drop, mean, scale, dtype):
    (path,) = paths  # a block of the one-chunk-per-file array of paths
    X = read_features(path, features, storage_options)
    if drop:
        X = X[np.isfinite(X).all(axis=1)]
    if mean is not None:
        X = (X - mean) / scale
    return X.astype(dtype, copy=False)


def count_distinct(dataset_scans, limit):
    """Distinct rows across partitions, counted up to ``limit``."""
    seen = set()
    for scan in dataset_scans:
        for row in scan["distinct"]:
            seen.add(row.tobytes())
            if len(seen) >= limit:
                return limit
    return len(seen)


def _check_scans(source, schema, scans, min_distinct_rows):
    """Refuse what the scan found unusable; every message names the column or file."""
    features, drop = schema.features, source.nan_policy == "drop"
    for column_index, column in enumerate(features):
        if all(s["rows"] == s["nan"][column_index] for s in scans):
            raise DataError(f"source.features: column {column!r} is null in every row; "
                            "remove it from source.features")
    for path, scan in zip(schema.files, scans):
        bad = [(c, int(n), int(i)) for c, n, i in zip(features, scan["nan"], scan["inf"])
               if n or i]
        if bad and not drop:
            column, n_nan, n_inf = bad[0]
            what = f"{n_nan} NaN/null" if n_nan else f"{n_inf} infinite"
            raise DataError(
                f"{path}: column {column!r} has {what} value(s); clean the data "
                "or set source.nan_policy: drop")
    n_valid = sum(s["valid"] for s in scans)
    if n_valid == 0:
        raise DataError("source.nan_policy: drop removed every row: no row has finite values "
                        "in all features")
    if drop and n_valid < schema.n_rows:
        logger.warning("nan_policy drop: %d of %d rows have NaN or inf in a feature and get "
                       "a null cluster", schema.n_rows - n_valid, schema.n_rows)
    lowest = np.min([s["min"] for s in scans], axis=0)
    highest = np.max([s["max"] for s in scans], axis=0)
    constant = [c for c, low, high in zip(features, lowest, highest) if low == high]
    if constant and len(features) > 1 and n_valid > 1:
        raise DataError(f"source.features: column {constant[0]!r} is constant (the same value "
                        "in every row); it carries no information and makes the covariances "
                        "singular: remove it from source.features")
    if constant and source.standardize:
        raise DataError(f"source.features: column {constant[0]!r} is constant; it cannot be "
                        "standardized: remove it from source.features")
    if min_distinct_rows:
        distinct = count_distinct(scans, min_distinct_rows)
        if distinct < min_distinct_rows:
            raise DataError(f"model.n_components: the data have only {distinct} distinct "
                            f"row(s), fewer than the {min_distinct_rows} components asked "
                            "for; lower model.n_components (or check for duplicated rows)")


def _pooled_scaler(scans):
    """Mean and standard deviation of every feature over the valid rows of all files."""
    n_valid = sum(s["valid"] for s in scans)
    mean = sum(s["mean"] * s["valid"] for s in scans) / n_valid
    m2 = sum(s["m2"] + s["valid"] * (s["mean"] - mean) ** 2 for s in scans)
    return mean, np.sqrt(m2 / n_valid)


def load(source, dtype="float64", min_distinct_rows=None, schema=None):
    """Scan the partitions once on the cluster and build the feature array.

    The scan pass counts NaN / inf per column and file (``nan_policy: error`` fails
    naming both) and gives the column statistics for ``standardize``.

    Parameters
    ----------
    source : pipeline.config.Source
    schema : Schema, optional
        The run's inspection of the input; inspected here when not given.

    Returns
    -------
    Dataset
    """
    import dask
    import dask.array as da

    schema = schema or inspect(source)
    if schema.n_rows == 0:
        raise DataError(f"source.path: the input has no rows ({len(schema.files)} file(s), "
                        "all empty)")
    so = source.storage_options
    features = schema.features
    if min_distinct_rows and min_distinct_rows > schema.n_rows:
        raise DataError(f"model.n_components: {min_distinct_rows} components asked for, but "
                        f"the input has only {schema.n_rows} row(s); lower "
                        "model.n_components")
    distinct_limit = min_distinct_rows or 0
    scans = dask.compute(*[dask.delayed(_scan_file, pure=True)(f, features, so,
                                                               distinct_limit)
                           for f in schema.files])
    _check_scans(source, schema, scans, min_distinct_rows)
    valid_rows = [s["valid"] for s in scans]
    mean, scale = _pooled_scaler(scans) if source.standardize else (None, None)
    drop = source.nan_policy == "drop"
    # map_blocks over the paths, not a concatenation of from_delayed pieces: concatenate
    # drops empty pieces, and chunk i must stay file i
    paths = da.from_array(np.asarray(schema.files, dtype=object), chunks=1)
    X = paths.map_blocks(_read_block, features, so, drop, mean, scale, dtype, new_axis=1,
                         chunks=(tuple(valid_rows), (len(features),)), dtype=np.dtype(dtype),
                         meta=np.empty((0, 0), dtype=dtype))
    return Dataset(files=list(schema.files), features=list(features),
                   passthrough=list(source.passthrough), storage_options=dict(so),
                   nan_policy=source.nan_policy, rows=list(schema.rows),
                   valid_rows=valid_rows, dtype=dtype, scaler_mean=mean, scaler_scale=scale,
                   X=X)
