"""The input table: Parquet partitions in, as a dask array with one chunk per file.

The only module that opens input Parquet files. A Delta table (``source.format: delta``)
is read the same way: its log (:mod:`pipeline.delta`) gives the data files of one
version, with their partition values, and from there on they are Parquet files like any.
A run inspects the input once (:func:`inspect`: file list, feature columns, row counts
from the footers) and hands the resulting :class:`Schema` on to :func:`load` and to the
assignment writer.

Reading never goes through a dask DataFrame: each file becomes exactly one chunk of the
feature array, whose row count comes from the Parquet footer (or from the scan pass
when rows are dropped). So chunks stay aligned with partitions, and with the
passthrough columns that the writer reads back from the same file (dask/dask#12411:
column selection on a DataFrame may merge partitions and misalign them).
"""

import hashlib
import logging
from dataclasses import dataclass, field
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import partitions
from pipeline.mixture._kernels import squared_deviations
from pipeline.storage import DataError, filesystem, reading, release_arrow_memory

logger = logging.getLogger("pipeline.source")



# ------------------------------------------------------------------ files


def list_parquet_files(path, storage_options=None):
    """Sorted Parquet files under a file, a directory (recursively) or a glob."""
    return [f.url for f in partitions.list_files(path, storage_options)]


def read_table(path, columns, storage_options):
    """Columns of one input file as an Arrow table (through ``ParquetFile``: the
    ``read_table`` function goes through ``pyarrow.dataset``, whose import imports pandas,
    0.5 s of a run here)."""
    fs, root = filesystem(path, storage_options)
    with reading(path), fs.open(root, "rb") as handle:
        return pq.ParquetFile(handle).read(columns=columns)


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
    """What a run knows of its input before reading any data: the files it reads (with
    their partitions), the features, and the rows of each file from its footer."""

    inputs: list  # of partitions.InputFile
    features: list
    rows: list  # per file, from the footers
    partition_keys: list = field(default_factory=list)
    n_listed: int = 0  # files in the table before source.filter
    version: int | None = None  # the Delta table's version read
    partition_types: dict | None = None  # Delta: key -> Arrow type; None: folder text

    @property
    def files(self):
        return [f.url for f in self.inputs]

    @property
    def n_rows(self):
        return int(sum(self.rows))

    @property
    def outputs(self):
        """The assignment file of each input file, relative to ``assignments/``: the same
        folders (Hive ``key=value`` ones where the input's are plain values) and name."""
        out = []
        for f in self.inputs:
            if self.partition_keys and not f.relative.startswith(
                    f"{self.partition_keys[0]}="):
                rest = f.relative.split("/")[len(self.partition_keys):]
                folders = [f"{k}={quote(f.partition[k], safe='')}"
                           for k in self.partition_keys]
                out.append("/".join(folders + rest))
            else:
                out.append(f.relative)
        return out


def inspect_schema(source, files, features=None, partition_keys=()):
    """Check every file's footer: feature columns present and numeric, passthrough present.

    Parameters
    ----------
    source : pipeline.config.Source
    files : list of str
    features : list of str, optional
        Overrides ``source.features`` (a saved model's features when scoring).
    partition_keys : list of str
        Columns that come from folder names: usable as passthrough, never as features.

    Returns
    -------
    features : list of str
    rows : list of int
    """
    features = list(features or source.features or []) or None
    keyed = [c for c in features or () if c in partition_keys]
    if keyed:
        raise DataError(f"source.features: {keyed[0]!r} is a partition key (a folder name), "
                        "not a feature; list it in source.passthrough to keep it")
    from_files = [c for c in source.passthrough if c not in partition_keys]
    rows = []
    for path in files:
        schema, n_rows = _read_footer(path, source.storage_options)
        rows.append(n_rows)
        names = set(schema.names)
        if features is None:
            features = [f.name for f in schema if _is_numeric(f.type)
                        and f.name not in source.passthrough and f.name != source.weight]
            if not features:
                raise DataError(f"{path}: no numeric columns to use as features; "
                                "list them in source.features")
        for column in from_files:
            if column not in names:
                raise DataError(f"source.passthrough: column {column!r} is missing from "
                                f"{path}; every partition must have it")
        if source.weight and source.weight not in names:
            raise DataError(f"source.weight: column {source.weight!r} is missing from "
                            f"{path}; every partition must have it")
        if source.weight and not _is_numeric(schema.field(source.weight).type):
            raise DataError(f"source.weight: column {source.weight!r} in {path} is "
                            f"{schema.field(source.weight).type}, not numeric; cast it")
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


@dataclass
class Listing:
    """The input's files as listed once per run: those ``source.filter`` selects, the
    partition keys, and for a Delta table the version read and its partition types."""

    selected: list  # of partitions.InputFile
    keys: list
    n_listed: int
    version: int | None = None
    partition_types: dict | None = None


def listing(source):
    """List the table's files and their partitions and apply ``source.filter``, from the
    listing (or the Delta log) alone: no data file is opened."""
    version = partition_types = None
    if source.format == "delta":
        from pipeline import delta

        listed, keys, version, partition_types = delta.list_table(source)
    else:
        _refuse_delta_as_parquet(source)
        listed = partitions.list_files(source.path, source.storage_options)
        keys = partitions.with_partitions(listed, source.partitioning)
    selected = partitions.select(listed, keys, source.filter)
    if not selected:
        raise DataError(f"source.filter: selects none of the {len(listed)} file(s) under "
                        f"{source.path!r}; check the filter's values")
    return Listing(selected=selected, keys=keys, n_listed=len(listed), version=version,
                   partition_types=partition_types)


def _refuse_delta_as_parquet(source):
    """A Delta table's folder read as plain Parquet would bring back the files its log
    has removed (overwritten, deleted rows): refuse it."""
    fs, root = filesystem(source.path, source.storage_options)
    if not any(ch in root for ch in "*?[") and fs.exists(f"{root.rstrip('/')}/_delta_log"):
        raise DataError(f"source.path: {source.path!r} is a Delta table; set source.format: "
                        "delta (read as plain Parquet files it would include rows its log "
                        "has removed)")


def inspect(source, features=None, inputs=None, listed=None):
    """Discover the input and read the footers of its files (no data): the run's
    :class:`Schema`. ``inputs`` restricts the footers read to those files (of
    ``listed``, the run's :class:`Listing`, made here when not given), as incremental
    scoring does."""
    listed = listed or listing(source)
    inputs = listed.selected if inputs is None else inputs
    features, rows = inspect_schema(source, [f.url for f in inputs], features, listed.keys)
    return Schema(inputs=list(inputs), features=features, rows=rows,
                  partition_keys=listed.keys, n_listed=listed.n_listed,
                  version=listed.version, partition_types=listed.partition_types)


def fingerprint(inputs):
    """A hash of the input files' paths, sizes and modification times (or ETags)."""
    digest = hashlib.sha256()
    for f in inputs:
        digest.update(f"{f.url}\0{f.size}\0{f.stamp}\n".encode())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------ reading


def features_from_table(table, features):
    """The feature columns of an Arrow table as a float64 array (nulls become NaN)."""
    X = np.empty((table.num_rows, len(features)))
    for j, column in enumerate(features):
        float64_values(table.column(column), out=X[:, j])
    return X


def float64_values(column, out=None):
    """An Arrow column as float64 numpy values (nulls become NaN), into ``out`` if given
    (a column of a 2-D array, say)."""
    # safe=False: an int64 beyond 2**53 becomes the nearest float64 instead of failing
    column = column.cast(pa.float64(), safe=False)
    if column.null_count:
        column = pc.fill_null(column, np.nan)
    return primitive_values(column, out)


def primitive_values(column, out=None):
    """A numeric Arrow column without nulls as numpy values, copied from the Arrow
    buffers into ``out`` (a new array if None): pyarrow's ``to_numpy`` imports pandas on
    its first call (0.5 s of a run here, for a conversion that needs none of it)."""
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise TypeError(f"an integer or floating-point column, not {column.type}")
    if column.null_count:
        raise ValueError("a column without nulls")
    dtype = np.dtype(column.type.to_pandas_dtype())
    values = np.empty(len(column), dtype=dtype) if out is None else out
    start = 0
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        values[start : start + len(chunk)] = np.frombuffer(
            chunk.buffers()[1], dtype=dtype, count=len(chunk),
            offset=dtype.itemsize * chunk.offset)
        start += len(chunk)
    return values


def numpy_to_arrow(values, arrow_type, mask=None):
    """A numpy array as an Arrow array of ``arrow_type`` (integer, floating or boolean),
    null where ``mask`` is True; from buffers rather than through ``pa.array``, whose first
    call imports pandas (0.5 s of a run here)."""
    if pa.types.is_boolean(arrow_type):
        data = pa.py_buffer(np.packbits(np.asarray(values, dtype=bool), bitorder="little"))
    else:
        data = pa.py_buffer(np.ascontiguousarray(values, dtype=arrow_type.to_pandas_dtype()))
    validity = None if mask is None else pa.py_buffer(np.packbits(~mask, bitorder="little"))
    return pa.Array.from_buffers(arrow_type, len(values), [validity, data],
                                 null_count=0 if mask is None else int(mask.sum()))


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
                float64_values(table.column(0), out=X[:, j])
                del table
    finally:
        release_arrow_memory()
    return X


@dataclass
class Dataset:
    """The input as the engine sees it: files, features, and the array (persisted on the
    workers, or read again at each pass)."""

    files: list
    features: list
    passthrough: list  # columns read from each file (partition keys come from folders)
    storage_options: dict
    nan_policy: str
    rows: list  # rows per file
    valid_rows: list  # rows per file kept for the fit (after nan_policy)
    dtype: str = "float64"
    scaler_mean: np.ndarray | None = None
    scaler_scale: np.ndarray | None = None
    X: object = field(default=None, repr=False)
    weight: object = field(default=None, repr=False)  # source.weight, chunked as X
    outputs: list = field(default_factory=list)  # assignment file of each input file
    # describe_chunk of each file's block of X, from the load's scan (float64 X as read,
    # no weights, no standardize), or None: select() then makes no describe pass
    described: list | None = field(default=None, repr=False)

    @property
    def n_rows(self):
        return int(sum(self.rows))

    @property
    def rows_dropped(self):
        return int(sum(self.rows) - sum(self.valid_rows))


def _distinct_rows(X, limit):
    """Up to ``limit`` distinct rows of X: sorting a prefix of a few times ``limit`` rows
    finds them in all but degenerate data, and costs a fraction of sorting every row."""
    prefix = 4 * limit
    while True:
        distinct = np.unique(X[:prefix], axis=0)
        if len(distinct) >= limit or prefix >= len(X):
            return distinct[:limit]
        prefix *= 8


def _scan_file(path, columns, storage_options, distinct_limit, weighted):
    """:func:`_scan_block` of one file read here (streamed data: nothing kept)."""
    return _scan_block(read_features(path, columns, storage_options), distinct_limit,
                       weighted)


def column_extremes(X, block_rows=4096):
    """``(X.min(axis=0), X.max(axis=0))`` (+inf / -inf for no rows) of a row-major X,
    folded block of rows by block with elementwise minimum / maximum: numpy's reduction
    over axis 0 runs a loop of D elements per row (72 ms for 625,000 x 16 here; 9 ms)."""
    n_rows, n_features = X.shape
    if n_rows == 0:
        return np.full(n_features, np.inf), np.full(n_features, -np.inf)
    lowest = np.array(X[:block_rows])
    highest = lowest.copy()
    for start in range(block_rows, n_rows, block_rows):
        block = X[start : start + block_rows]
        np.minimum(lowest[: len(block)], block, out=lowest[: len(block)])
        np.maximum(highest[: len(block)], block, out=highest[: len(block)])
    return lowest.min(axis=0), highest.max(axis=0)


def _scan_block(X, distinct_limit, weighted):
    """What the scan pass learns of one file's block (its weight column last when
    ``weighted``): NaN / inf counts, valid rows, column statistics, distinct rows."""
    X, w = (X[:, :-1], X[:, -1]) if weighted else (X, None)
    # the usual case, every value finite, shows in the column means (a NaN or inf makes
    # its column's mean NaN or inf): then no row test, no copy, no NaN/inf counts
    with np.errstate(over="ignore", invalid="ignore"):
        mean = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
    every = bool(np.isfinite(mean).all())
    valid = None if every else np.isfinite(X).all(axis=1)
    every = every or bool(valid.all())  # finite values whose sum overflowed
    Xv = X if every else X[valid]
    weights, candidates = {}, Xv
    if weighted:
        wv = w if every else w[valid]  # the rows the fit keeps (nan_policy drop: valid)
        weights = {"w_nan": int(np.isnan(wv).sum()), "w_inf": int(np.isinf(wv).sum()),
                   "w_negative": int((wv < 0).sum()), "w_positive": int((wv > 0).sum())}
        candidates = Xv[wv > 0]  # a row of weight 0 can start no component
    if Xv is not X:
        mean = Xv.mean(axis=0) if len(Xv) else np.zeros(X.shape[1])
    m2 = squared_deviations(Xv, mean)
    no_count = np.zeros(X.shape[1], dtype=np.intp)
    lowest, highest = column_extremes(Xv)
    return {
        # exact constancy test: a rounded mean makes m2 > 0 for a constant column
        "min": lowest,
        "max": highest,
        "rows": int(X.shape[0]),
        "nan": no_count if every else np.isnan(X).sum(axis=0),
        "inf": no_count if every else np.isinf(X).sum(axis=0),
        "valid": int(X.shape[0] if every else valid.sum()),
        "mean": mean,
        "m2": m2,
        # up to distinct_limit distinct rows: enough to tell "fewer distinct rows than
        # components" without a global distinct count
        "distinct": (_distinct_rows(candidates, distinct_limit) if distinct_limit
                     else Xv[:0]),
        **weights,
    }


def _refuse_non_finite(path, features, n_nan, n_inf):
    bad = [(c, int(n), int(i)) for c, n, i in zip(features, n_nan, n_inf) if n or i]
    if bad:
        column, nans, infs = bad[0]
        what = f"{nans} NaN/null" if nans else f"{infs} infinite"
        raise DataError(f"{path}: column {column!r} has {what} value(s); clean the data "
                        "or set source.nan_policy: drop")


def check_finite(path, X, features):
    """DataError naming the file and the first column with NaN, null or inf values."""
    if not np.isfinite(X).all():
        _refuse_non_finite(path, features, np.isnan(X).sum(axis=0), np.isinf(X).sum(axis=0))


def for_scoring(source, schema):
    """The Dataset of the files to score, without the scan pass: scoring reads each file
    once, and checks its values as it reads them (:func:`check_finite`)."""
    return Dataset(files=list(schema.files), features=list(schema.features),
                   passthrough=[c for c in source.passthrough
                                if c not in schema.partition_keys],
                   outputs=schema.outputs, storage_options=dict(source.storage_options),
                   nan_policy=source.nan_policy, rows=list(schema.rows),
                   valid_rows=list(schema.rows))


def _read_raw(paths, columns, storage_options):
    """The columns of one file in float64 (a block of the one-chunk-per-file paths)."""
    (path,) = paths
    return read_features(path, columns, storage_options)


def _prepared_block(X, n_features, drop, mean, scale, dtype):
    """A file's raw block as the fit sees it: rows with a non-finite feature dropped
    (``drop``), standardized, in ``dtype``; a weight column (after the features) stays
    float64."""
    if drop:
        X = X[np.isfinite(X[:, :n_features]).all(axis=1)]
    if mean is not None:
        X = X if drop else X.copy()  # never the block read, which may be kept
        X[:, :n_features] = (X[:, :n_features] - mean) / scale
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
    if not drop:
        for path, scan in zip(schema.files, scans):
            _refuse_non_finite(path, features, scan["nan"], scan["inf"])
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
    if source.weight:
        _check_weights(source.weight, schema.files, scans)
    if min_distinct_rows:
        distinct = count_distinct(scans, min_distinct_rows)
        if distinct < min_distinct_rows:
            raise DataError(f"model.n_components: the data have only {distinct} distinct "
                            f"row(s), fewer than the {min_distinct_rows} components asked "
                            "for; lower model.n_components (or check for duplicated rows)")


def _described(scan):
    """:func:`pipeline.mixture._kernels.describe_chunk` of a block of the scan's valid
    rows (unweighted): the same mean and squared deviations, computed the same way."""
    n = scan["valid"]
    return {"n": n, "n_nan": 0, "n_inf": 0, "weight": float(n), "n_positive": n,
            "w_nan": 0, "w_inf": 0, "w_negative": 0, "mean": scan["mean"], "m2": scan["m2"]}


def _check_weights(column, files, scans):
    """The weight column: finite and non-negative in every file, positive somewhere."""
    for path, scan in zip(files, scans):
        for key, what in (("w_nan", "NaN/null"), ("w_inf", "infinite"),
                          ("w_negative", "negative")):
            if scan[key]:
                raise DataError(f"{path}: source.weight column {column!r} has {scan[key]} "
                                f"{what} value(s); weights must be finite and >= 0")
    if not any(scan["w_positive"] for scan in scans):
        raise DataError(f"source.weight: column {column!r} is 0 in every row (of every "
                        f"file); at least one row needs a positive weight")


def _pooled_scaler(scans):
    """Mean and standard deviation of every feature over the valid rows of all files."""
    n_valid = sum(s["valid"] for s in scans)
    mean = sum(s["mean"] * s["valid"] for s in scans) / n_valid
    m2 = sum(s["m2"] + s["valid"] * (s["mean"] - mean) ** 2 for s in scans)
    return mean, np.sqrt(m2 / n_valid)


def load(source, dtype="float64", min_distinct_rows=None, schema=None, persist="auto"):
    """Read the partitions once on the cluster: scan them, and build the feature array.

    The scan counts NaN / inf per column and file (``nan_policy: error`` fails naming
    both) and gives the column statistics for ``standardize``. When the data are kept
    in the workers' memory (``persist``, as :class:`~pipeline.mixture._chunks.ChunkedData`
    decides it: by default when they take at most half of it), each file is read once:
    the scan runs on the block read, and the array the fit passes over is that block.
    Otherwise (streamed) the scan reads each file, and every pass reads it again.

    Parameters
    ----------
    source : pipeline.config.Source
    schema : Schema, optional
        The run's inspection of the input; inspected here when not given.
    persist : {'auto', True, False}
        ``model.persist``.

    Returns
    -------
    Dataset
        ``X`` (and ``weight``) persisted on the workers, or lazy when streamed.
    """
    import dask
    import dask.array as da

    from pipeline.mixture._chunks import should_persist

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
    columns = features + ([source.weight] if source.weight else [])
    logger.info("reading %d file(s): NaN/inf and column statistics", len(schema.files),
                extra={"progress": {"phase": "scan", "total": 1}})
    # map_blocks over the paths, not a concatenation of from_delayed pieces: concatenate
    # drops empty pieces, and chunk i must stay file i
    paths = da.from_array(np.asarray(schema.files, dtype=object), chunks=1)
    raw = paths.map_blocks(_read_raw, columns, so, new_axis=1,
                           chunks=(tuple(schema.rows), (len(columns),)), dtype=np.float64,
                           meta=np.empty((0, 0)))
    keep = should_persist(schema.n_rows * len(features) * np.dtype(dtype).itemsize, persist)
    if keep:  # the scan runs on the blocks the fit keeps
        raw = raw.persist()
        scans = dask.compute(*[dask.delayed(_scan_block, pure=True)(
            block, distinct_limit, bool(source.weight))
            for block in raw.to_delayed(optimize_graph=False).ravel()])
    else:  # one task reads and scans a file: no block waits in memory for its scan
        scans = dask.compute(*[dask.delayed(_scan_file, pure=True)(
            path, columns, so, distinct_limit, bool(source.weight))
            for path in schema.files])
    _check_scans(source, schema, scans, min_distinct_rows)
    valid_rows = [s["valid"] for s in scans]
    mean, scale = _pooled_scaler(scans) if source.standardize else (None, None)
    drop = source.nan_policy == "drop"
    n_features = len(features)
    weight = None
    if drop or mean is not None or np.dtype(dtype) != np.float64:
        # the weight column stays float64 (it is split off below)
        block = raw.map_blocks(_prepared_block, n_features, drop, mean, scale,
                               "float64" if source.weight else dtype,
                               chunks=(tuple(valid_rows), (len(columns),)),
                               dtype=np.float64 if source.weight else np.dtype(dtype),
                               meta=np.empty((0, 0)))
    else:
        block = raw
    if source.weight:
        X, weight = block[:, :-1].astype(dtype), block[:, -1]
    else:
        X = block
    if keep and block is not raw:
        X, weight = dask.persist(X, weight)  # then the raw blocks are let go
    del raw
    described = None
    if np.dtype(dtype) == np.float64 and mean is None and not source.weight:
        # X's blocks are the scanned rows (all of them, or the valid ones under drop)
        described = [_described(scan) for scan in scans]
    return Dataset(files=list(schema.files), features=list(features),
                   passthrough=[c for c in source.passthrough
                                if c not in schema.partition_keys],
                   outputs=schema.outputs, storage_options=dict(so),
                   nan_policy=source.nan_policy, rows=list(schema.rows),
                   valid_rows=valid_rows, dtype=dtype, scaler_mean=mean, scaler_scale=scale,
                   X=X, weight=weight, described=described)
