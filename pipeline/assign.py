"""Assignments: score each input partition with a fitted model and write its result file.

One task per input file, on the workers: read the file's passthrough and feature columns,
compute the most likely component, the probabilities and the log-density of every row
(and whether it is an outlier), and write ``assignments/<the input file's partition
folders and name>`` with the rows in the input's order (rows in = rows out; rows with a
non-finite feature get nulls).
Partition keys are not repeated inside the files: readers restore them from the folder
names (``pyarrow.dataset.dataset(..., partitioning="hive")``, DuckDB, Spark, dask).
"""

import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.source import (
    check_finite,
    features_from_table,
    numpy_to_arrow,
    primitive_values,
    read_table,
)
from pipeline.storage import as_location, release_arrow_memory

logger = logging.getLogger("pipeline.assign")
PROGRESS = logging.getLogger("pipeline.progress")


def assignment_table(X, passthrough_table, model, n_components, columns, mean=None,
                     scale=None, watch=None, sums=None, scores=None):
    """The output rows of one partition: passthrough, cluster, prob_k, log_density, outlier.

    Rows whose features are not all finite (``nan_policy: drop``) get nulls.
    ``watch`` (:class:`pipeline.monitor.Watch`) gives the outlier column its threshold;
    ``sums`` (:class:`pipeline.monitor.Sums`), when given, gets the scored rows added.
    ``scores``: :func:`pipeline.mixture._kernels.score_rows` of these rows, when the fit's
    final pass kept them (every row finite, already standardized).
    """
    from pipeline.mixture import _kernels

    valid = np.isfinite(X).all(axis=1) if scores is None else None
    every = scores is not None or bool(valid.all())
    Xv = X if every else X[valid]
    if mean is not None:
        Xv = (Xv - mean) / scale
    n = X.shape[0]
    Xv = Xv.astype(model["center"].dtype, copy=False)
    if scores is None:
        scores = _kernels.score_rows(Xv, model)
    log_prob_norm, resp, labels_v = scores
    if sums is not None:  # as the final pass adds them: the training rows give its sums
        sums.add_by_sub_blocks(Xv, log_prob_norm, labels_v, model)
    arrays = [passthrough_table.column(name) for name in passthrough_table.column_names]
    names = list(passthrough_table.column_names)
    mask = None if every else ~valid

    def full(values, dtype):
        if every:
            return values
        out = np.zeros(n, dtype=dtype)
        out[valid] = values
        return out

    def add_column(name, values, arrow_type):
        arrays.append(numpy_to_arrow(full(values, values.dtype), arrow_type, mask))
        names.append(name)

    add_column("cluster", labels_v, pa.int32())
    if "probabilities" in columns:
        for k in range(n_components):
            add_column(f"prob_{k}", resp[k], pa.float64())
    if "log_density" in columns:
        add_column("log_density", log_prob_norm.astype(np.float64, copy=False), pa.float64())
    if "outlier" in columns and watch is not None:
        add_column("outlier", log_prob_norm < watch.threshold, pa.bool_())
    return pa.Table.from_arrays(arrays, names=names)


def _write_part(path, part, features, passthrough, storage_options, model, n_components,
                columns, target, mean, scale, nan_policy, watch=None, block=None,
                scores=None):
    """Score one input file and write its assignment file. ``block``: the file's
    features as the fit kept them in memory (rows as in the file, already standardized):
    then only the passthrough columns are read; ``scores``: the rows' scores the fit's
    final pass kept (then they are not computed again)."""
    if block is not None:
        table = read_table(path, list(passthrough), storage_options)
        X, mean, scale = block, None, None
    else:
        table = read_table(path, list(passthrough) + list(features), storage_options)
        X = features_from_table(table, features)
    if nan_policy == "error":  # when no scan pass checked the file before (scoring)
        check_finite(path, X, features)
    sums = watch.sums(n_components) if watch is not None else None
    out = assignment_table(X, table.select(list(passthrough)), model, n_components, columns,
                           mean, scale, watch, sums, scores)
    with target.open(f"assignments/{part}", "wb") as handle:
        pq.write_table(out, handle, use_dictionary=_dictionary_columns(out.schema))
        size = handle.tell()
    labels = primitive_values(out.column("cluster").drop_null())
    result = {"file": str(path), "part": part,
              "rows_in": int(table.num_rows), "rows_out": int(out.num_rows),
              "rows_dropped": int(out.column("cluster").null_count),
              "cluster_counts": np.bincount(labels, minlength=n_components).tolist(),
              # what a table format's log records of the file (a Delta commit)
              "bytes": int(size), "mtime": int(time.time() * 1000), "schema": out.schema,
              "stats": file_stats(out),
              "monitor": sums.stats() if sums is not None else None}
    del table, out
    release_arrow_memory()
    return result


def _dictionary_columns(schema):
    """The columns worth dictionary encoding: not the floating-point ones (probabilities
    and log-densities are all distinct: pyarrow would build a dictionary for each column
    and give it up after its first megabyte, at half the time of the whole write)."""
    return [field.name for field in schema if not pa.types.is_floating(field.type)]


def _compute_with_progress(tasks):
    """Compute the tasks, telling a progress display as each file is done (a record
    without a message per file) when a distributed client runs them."""
    import dask

    try:
        from distributed import as_completed, get_client

        client = get_client()
    except (ImportError, ValueError):
        return list(dask.compute(*tasks))
    futures = client.compute(tasks)
    for _ in as_completed(futures):
        PROGRESS.debug("", extra={"progress": {"advance": 1}})
    return client.gather(futures)


def file_stats(table):
    """Row and null counts of every column, and the range of the integer ones (the
    cluster, integer keys): the statistics a Delta log keeps per data file for skipping.
    Floating-point ranges are left out: NaN and infinities have no JSON form."""
    ranges = {name: pc.min_max(column).as_py() for name, column in
              zip(table.column_names, table.columns) if pa.types.is_integer(column.type)}
    return {"numRecords": int(table.num_rows),
            "minValues": {k: v["min"] for k, v in ranges.items() if v["min"] is not None},
            "maxValues": {k: v["max"] for k, v in ranges.items() if v["max"] is not None},
            "nullCount": {name: int(column.null_count)
                          for name, column in zip(table.column_names, table.columns)}}


def can_use_scores(dataset):
    """Whether scores kept per chunk of the fit's array (``select(keep_scores=True)``) can
    be written as they are: a persisted array, one chunk per file, no row dropped."""
    return _kept_blocks(dataset)[0] is not None if dataset.files else False


def _kept_blocks(dataset):
    """Per file, the chunk of the fit's feature array held in the workers' memory, when
    it has every row of its file (no row dropped) and the array is persisted; else None
    (the writer reads the features again)."""
    X = dataset.X
    if X is None or dataset.valid_rows != dataset.rows:
        return [None] * len(dataset.files)
    try:
        from distributed import futures_of
    except ImportError:  # pragma: no cover - distributed is a dependency
        return [None] * len(dataset.files)
    if not futures_of(X):
        return [None] * len(dataset.files)
    return list(X.to_delayed(optimize_graph=False).ravel())


def write_assignments(dataset, model, n_components, columns, target, target_options=None,
                      watch=None, scores=None):
    """Write one assignment file under ``target/assignments/`` per input file, on the
    workers (``dataset.outputs`` names them).

    Parameters
    ----------
    dataset : pipeline.source.Dataset
    model : dict
        Prepared by :func:`pipeline.mixture._kernels.prepare_model`.
    target : pipeline.storage.Location or str
        The folder the run writes into (a str is read with ``target_options``).
    watch : pipeline.monitor.Watch, optional
        The model's baseline: the outlier column, and each file's monitoring sums.

    Returns
    -------
    partitions : list of dict
        Per input file: ``file``, ``part``, ``rows_in``, ``rows_out`` (equal),
        ``rows_dropped``, ``cluster_counts``, ``monitor`` (the file's
        :meth:`pipeline.monitor.Sums.stats`, or None without ``watch``), and the file
        written: ``bytes``, ``mtime`` (ms), ``schema`` and ``stats`` (:func:`file_stats`).
    scores : list, optional
        Per chunk of ``dataset.X``, a future of its rows' scores under ``model``
        (:attr:`pipeline.selection.SelectionResult.scores`); used when the chunks are the
        files' (:func:`can_use_scores`).
    """
    import dask

    target = as_location(target, target_options)
    blocks = _kept_blocks(dataset)
    if scores is None or blocks[0] is None or len(scores) != len(blocks):
        scores = [None] * len(blocks)
    tasks = [
        dask.delayed(_write_part, pure=False)(
            f, part, dataset.features, dataset.passthrough, dataset.storage_options, model,
            n_components, list(columns), target, dataset.scaler_mean, dataset.scaler_scale,
            dataset.nan_policy, watch, block, kept)
        for f, part, block, kept in zip(dataset.files, dataset.outputs, blocks, scores)
    ]
    results = _compute_with_progress(tasks)
    for r in results:
        if r["rows_in"] != r["rows_out"]:
            raise RuntimeError(f"{r['file']}: {r['rows_in']} rows in but {r['rows_out']} out")
    return results
