"""Parquet partitions in, as a dask array with one chunk per file; results out, atomically.

Reading never goes through a dask DataFrame: each file becomes exactly one chunk of the
feature array, whose row count comes from the Parquet footer (or from the scan pass
when rows are dropped). So chunks stay aligned with partitions, and with the
passthrough columns that the writer reads back from the same file (dask/dask#12411:
column selection on a DataFrame may merge partitions and misalign them).
"""

import logging
import posixpath
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger("pipeline.io")

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


class DataError(ValueError):
    """The input data cannot be used; the message names the file, column or setting."""


# ------------------------------------------------------------------ files


def filesystem(path, storage_options=None):
    """(fsspec filesystem, path without protocol) for a local path or a URL."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    return fs, root


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


def short_name(path):
    return posixpath.basename(str(path))


def _read_table(path, columns, storage_options):
    fs, root = filesystem(path, storage_options)
    try:
        with fs.open(root, "rb") as handle:
            return pq.read_table(handle, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}); "
                        "replace or remove the file") from None


def _read_schema(path, storage_options):
    fs, root = filesystem(path, storage_options)
    try:
        with fs.open(root, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            return parquet.schema_arrow, parquet.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}); "
                        "replace or remove the file") from None


def _is_numeric(arrow_type):
    return (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
            or pa.types.is_decimal(arrow_type))


# ------------------------------------------------------------------ inspection


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


def inspect_schema(source, files):
    """Check every file's footer: feature columns present and numeric, passthrough present.

    Returns
    -------
    features : list of str
    rows : list of int
    """
    features = list(source.features) if source.features else None
    rows = []
    for path in files:
        schema, n_rows = _read_schema(path, source.storage_options)
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


def read_features(path, features, storage_options, dtype="float64"):
    """The feature columns of one file as a float array (nulls become NaN).

    Columns are read one at a time into the output array, so a worker streaming a
    partition holds the array plus one column, not a whole Arrow table besides it.
    """
    fs, root = filesystem(path, storage_options)
    try:
        with fs.open(root, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            X = np.empty((parquet.metadata.num_rows, len(features)), dtype=dtype)
            for j, column in enumerate(features):
                table = parquet.read(columns=[column], use_threads=False)
                if table.num_rows:
                    X[:, j] = read_features_from_table(table, [column])[:, 0]
                del table
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}); "
                        "replace or remove the file") from None
    finally:
        release_arrow_memory()
    return X


def fingerprint(files, storage_options=None):
    """A hash of the input files' paths, sizes and modification times (or ETags)."""
    import hashlib

    fs, _ = filesystem(files[0], storage_options)
    digest = hashlib.sha256()
    for path in files:
        info = fs.info(filesystem(path, storage_options)[1])
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        digest.update(f"{path}\0{info.get('size')}\0{stamp}\n".encode())
    return digest.hexdigest()[:16]


def release_arrow_memory():
    """Give Arrow's freed buffers back to the OS.

    Arrow's allocator keeps freed memory for reuse; on a worker streaming partitions that
    shows up as unmanaged memory growing until dask pauses the worker.
    """
    pa.default_memory_pool().release_unused()


def read_features_from_table(table, features):
    if table.num_rows == 0:
        return np.empty((0, len(features)))
    # safe=False: an int64 beyond 2**53 becomes the nearest float64 instead of failing
    return np.column_stack([table.column(c).cast(pa.float64(), safe=False)
                            .to_numpy(zero_copy_only=False) for c in features])


DISTINCT_SAMPLE = 1024


def _scan_file(path, features, storage_options):
    X = read_features(path, features, storage_options)
    finite = np.isfinite(X)
    valid = finite.all(axis=1)
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
        # up to DISTINCT_SAMPLE distinct rows: enough to tell "fewer distinct rows than
        # components" without a global distinct count
        "distinct": np.unique(Xv, axis=0)[:DISTINCT_SAMPLE] if len(Xv) else Xv,
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


def load(source, dtype="float64", min_distinct_rows=None):
    """Inspect the partitions, scan them once on the cluster, and build the feature array.

    The scan pass counts NaN / inf per column and file (``nan_policy: error`` fails
    naming both) and gives the column statistics for ``standardize``.

    Returns
    -------
    Dataset
    """
    import dask
    import dask.array as da

    files = list_parquet_files(source.path, source.storage_options)
    features, rows = inspect_schema(source, files)
    if sum(rows) == 0:
        raise DataError(f"source.path: the input has no rows ({len(files)} file(s), all "
                        "empty)")
    so = source.storage_options
    scans = dask.compute(*[dask.delayed(_scan_file, pure=True)(f, features, so)
                           for f in files])
    drop = source.nan_policy == "drop"
    for column_index, column in enumerate(features):
        if all(s["rows"] == s["nan"][column_index] for s in scans):
            raise DataError(f"source.features: column {column!r} is null in every row; "
                            "remove it from source.features")
    for path, scan in zip(files, scans):
        bad = [(c, int(n), int(i)) for c, n, i in zip(features, scan["nan"], scan["inf"])
               if n or i]
        if bad and not drop:
            column, n_nan, n_inf = bad[0]
            what = f"{n_nan} NaN/null" if n_nan else f"{n_inf} infinite"
            raise DataError(
                f"{path}: column {column!r} has {what} value(s); clean the data "
                "or set source.nan_policy: drop")
    valid_rows = [s["valid"] for s in scans]
    if sum(valid_rows) == 0:
        raise DataError("source.nan_policy: drop removed every row: no row has finite values "
                        "in all features")
    if drop and sum(valid_rows) < sum(rows):
        logger.warning("nan_policy drop: %d of %d rows have NaN or inf in a feature and get "
                       "a null cluster", sum(rows) - sum(valid_rows), sum(rows))
    mean = scale = None
    n_valid = sum(valid_rows)
    pooled_mean = sum(s["mean"] * s["valid"] for s in scans) / n_valid
    pooled_m2 = sum(s["m2"] + s["valid"] * (s["mean"] - pooled_mean) ** 2 for s in scans)
    variance = pooled_m2 / n_valid
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
        distinct = count_distinct(scans, min(min_distinct_rows, DISTINCT_SAMPLE))
        if distinct < min(min_distinct_rows, DISTINCT_SAMPLE):
            raise DataError(f"model.n_components: the data have only {distinct} distinct "
                            f"row(s), fewer than the {min_distinct_rows} components asked "
                            "for; lower model.n_components (or check for duplicated rows)")
    if source.standardize:
        mean, scale = pooled_mean, np.sqrt(variance)
    # map_blocks over the paths, not a concatenation of from_delayed pieces: concatenate
    # drops empty pieces, and chunk i must stay file i
    paths = da.from_array(np.asarray(files, dtype=object), chunks=1)
    X = paths.map_blocks(_read_block, features, so, drop, mean, scale, dtype, new_axis=1,
                         chunks=(tuple(valid_rows), (len(features),)), dtype=np.dtype(dtype),
                         meta=np.empty((0, 0), dtype=dtype))
    return Dataset(files=files, features=features, passthrough=list(source.passthrough),
                   storage_options=dict(so), nan_policy=source.nan_policy, rows=rows,
                   valid_rows=valid_rows, dtype=dtype, scaler_mean=mean, scaler_scale=scale,
                   X=X)


# ------------------------------------------------------------------ writing


def assignment_table(X, passthrough_table, model, n_components, columns, mean=None,
                     scale=None):
    """The output rows of one partition: passthrough, cluster, prob_k, log_density.

    Rows whose features are not all finite (``nan_policy: drop``) get nulls.
    """
    from pipeline.mixture import _kernels

    valid = np.isfinite(X).all(axis=1)
    Xv = X[valid]
    if mean is not None:
        Xv = (Xv - mean) / scale
    log_prob_norm, log_resp = _kernels.log_prob_resp(Xv.astype(model["center"].dtype), model)
    n = X.shape[0]
    arrays, names = [], []
    for name in passthrough_table.column_names:
        arrays.append(passthrough_table.column(name))
        names.append(name)
    labels = np.zeros(n, dtype=np.int32)
    labels[valid] = log_resp.argmax(axis=1)
    arrays.append(pa.array(labels, mask=~valid, type=pa.int32()))
    names.append("cluster")
    if "probabilities" in columns:
        proba = np.zeros((n, n_components))
        proba[valid] = np.exp(log_resp)
        for k in range(n_components):
            arrays.append(pa.array(proba[:, k], mask=~valid, type=pa.float64()))
            names.append(f"prob_{k}")
    if "log_density" in columns:
        density = np.zeros(n)
        density[valid] = log_prob_norm
        arrays.append(pa.array(density, mask=~valid, type=pa.float64()))
        names.append("log_density")
    return pa.Table.from_arrays(arrays, names=names)


def _write_part(index, path, features, passthrough, storage_options, model, n_components,
                columns, target, target_options, mean, scale):
    table = _read_table(path, list(passthrough) + list(features), storage_options)
    X = read_features_from_table(table, features)
    out = assignment_table(X, table.select(list(passthrough)), model, n_components, columns,
                           mean, scale)
    fs, root = filesystem(target, target_options)
    part = posixpath.join(root, "assignments", f"part.{index}.parquet")
    fs.makedirs(posixpath.dirname(part), exist_ok=True)
    with fs.open(part, "wb") as handle:
        pq.write_table(out, handle)
    labels = out.column("cluster").drop_null().to_numpy()
    result = {"file": str(path), "part": f"part.{index}.parquet",
              "rows_in": int(table.num_rows), "rows_out": int(out.num_rows),
              "rows_dropped": int(out.column("cluster").null_count),
              "cluster_counts": np.bincount(labels, minlength=n_components).tolist()}
    del table, out
    release_arrow_memory()
    return result


def write_assignments(dataset, model, n_components, columns, target, target_options=None):
    """Write ``assignments/part.<i>.parquet`` under ``target``, one per input file, on the
    workers. Returns the per-partition row counts (rows in must equal rows out)."""
    import dask

    tasks = [
        dask.delayed(_write_part, pure=False)(
            i, f, dataset.features, dataset.passthrough, dataset.storage_options, model,
            n_components, list(columns), target, target_options or {}, dataset.scaler_mean,
            dataset.scaler_scale)
        for i, f in enumerate(dataset.files)
    ]
    results = list(dask.compute(*tasks))
    for r in results:
        if r["rows_in"] != r["rows_out"]:
            raise RuntimeError(f"{r['file']}: {r['rows_in']} rows in but {r['rows_out']} out")
    return results
