"""The fit and score jobs as plain library calls (the Prefect flows wrap these).

A run writes everything into a staging folder next to the output, ``_SUCCESS.json``
last, then moves the folder into place. A failed run leaves no partial output and never
touches a previous one.
"""

import datetime as dt
import json
import logging
import os
import posixpath
import shutil
import time
import uuid
from importlib import metadata

import numpy as np

from pipeline import io, store
from pipeline.cluster import connect
from pipeline.config import dump_config
from pipeline.mixture import _kernels

logger = logging.getLogger("pipeline.run")


class OutputExistsError(RuntimeError):
    """The output location already holds a run and the config's mode forbids replacing it."""


# ------------------------------------------------------------------ output location


def _local(path):
    return "://" not in path or path.startswith("file://")


def _strip(path):
    return path[len("file://"):] if path.startswith("file://") else path


def read_manifest(output_path, storage_options=None):
    """The ``_SUCCESS.json`` of a completed run at ``output_path``, or None."""
    fs, root = io.filesystem(output_path, storage_options)
    manifest = posixpath.join(root, "_SUCCESS.json")
    if not fs.exists(manifest):
        return None
    with fs.open(manifest, "r") as handle:
        return json.loads(handle.read())


def check_output(config):
    """Refuse bad output locations before any work; say whether the run should proceed.

    Returns
    -------
    'run' or 'skip' (mode skip-if-complete and a complete run of the same config exists).
    """
    out, src = config.output.path.rstrip("/"), config.source.path.rstrip("/")
    src_root = src.split("*")[0].rstrip("/")
    if out == src_root or out.startswith(src_root + "/") or src_root.startswith(out + "/"):
        raise OutputExistsError(f"output.path: {out!r} overlaps the input {src!r}; write the "
                                "results somewhere outside the input")
    fs, root = io.filesystem(out, config.output.storage_options)
    manifest = read_manifest(out, config.output.storage_options)
    exists = fs.exists(root) and (not fs.isdir(root) or bool(fs.ls(root)))
    mode = config.output.mode
    if mode == "skip-if-complete" and manifest and manifest.get("config_hash") == \
            config.config_hash():
        return "skip"
    if exists and mode == "error":
        raise OutputExistsError(f"output.path: {out!r} already exists; set output.mode: "
                                "overwrite (or skip-if-complete), or choose another path")
    return "run"


def staging_path(config, run_id):
    out = config.output.path.rstrip("/")
    parent, name = posixpath.split(out)
    return posixpath.join(parent, f".{name}.staging-{run_id}")


def publish(config, staging, run_id):
    """Move the staging folder into place; the previous output is replaced only now."""
    target = config.output.path.rstrip("/")
    if not _local(target):
        raise NotImplementedError("object-storage output is published by the manifest commit")
    target, staging = _strip(target), _strip(staging)
    previous = None
    if os.path.exists(target):
        parent, name = os.path.split(target)
        previous = os.path.join(parent, f".{name}.previous-{run_id}")
        os.replace(target, previous)
    os.replace(staging, target)
    if previous:
        shutil.rmtree(previous, ignore_errors=True)
    return target


def discard(staging):
    if _local(staging):
        shutil.rmtree(_strip(staging), ignore_errors=True)


# ------------------------------------------------------------------ helpers


def versions():
    names = ["mixlake", "numpy", "scikit-learn", "dask", "distributed", "pyarrow", "prefect"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _sample(dataset, size, seed):
    n = int(sum(dataset.valid_rows))
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, size), replace=False))
    return np.asarray(dataset.X[idx].compute())


def _write_json(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)


def new_run_id():
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


# ------------------------------------------------------------------ fit


def fit_to_staging(config, run_id):
    """Load, select, write assignments, model and report into a staging folder.

    Returns
    -------
    summary : dict
        Small and JSON-able: run id, staging path, candidate table, chosen model, cluster
        sizes, passes, timings, rows per partition.
    """
    from pipeline import report as report_mod
    from pipeline.selection import select

    staging = staging_path(config, run_id)
    timings = {}
    started = time.perf_counter()
    model_cfg = config.model
    try:
        with connect(config.cluster):
            t = time.perf_counter()
            dataset = io.load(config.source, dtype=model_cfg.dtype)
            timings["load"] = time.perf_counter() - t
            logger.info("loaded %d rows x %d features from %d partition(s)", dataset.n_rows,
                        len(dataset.features), len(dataset.files))
            t = time.perf_counter()
            result = select(
                dataset.X, n_components=model_cfg.component_counts(),
                covariance_types=model_cfg.covariance_types(), n_init=model_cfg.n_init,
                init_params=model_cfg.init_params, tol=model_cfg.tol,
                reg_covar=model_cfg.reg_covar, max_iter=model_cfg.max_iter,
                random_state=model_cfg.random_state, criterion=model_cfg.criterion,
                dtype=model_cfg.dtype, persist=model_cfg.persist)
            timings["select"] = time.perf_counter() - t
            estimator = result.estimator
            t = time.perf_counter()
            local_staging = _strip(staging)
            os.makedirs(local_staging, exist_ok=False)
            model = _kernels.prepare_model(estimator.weights_, estimator.means_,
                                           estimator.precisions_cholesky_,
                                           estimator.covariance_type, np.dtype(model_cfg.dtype))
            partitions = io.write_assignments(dataset, model, estimator.n_components,
                                              config.output.columns, staging)
            preprocessing = ({"mean": dataset.scaler_mean, "scale": dataset.scaler_scale}
                             if dataset.scaler_mean is not None else None)
            model_id = store.save_model(estimator, posixpath.join(staging, "model"),
                                        features=dataset.features, preprocessing=preprocessing,
                                        extra={"run_id": run_id,
                                               "config_hash": config.config_hash()})
            sample = _sample(dataset, 5000, 0)
            timings["write"] = time.perf_counter() - t
        counts = np.sum([p["cluster_counts"] for p in partitions], axis=0)
        timings["total"] = time.perf_counter() - started
        summary = {
            "run_id": run_id,
            "config_hash": config.config_hash(),
            "model_id": model_id,
            "criterion": result.criterion,
            "n_rows": dataset.n_rows,
            "n_features": len(dataset.features),
            "features": dataset.features,
            "passes": result.n_passes,
            "rows_dropped": dataset.rows_dropped,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "candidates": [c.row() for c in result.candidates],
            "chosen": result.best.name,
            "clusters": [{"cluster": k, "weight": float(estimator.weights_[k]),
                          "size": int(counts[k])} for k in range(estimator.n_components)],
        }
        report_mod.write_report(summary, os.path.join(local_staging, "report"),
                                sample_X=sample, sample_labels=estimator.predict(sample),
                                means=estimator.means_, covariances=estimator.covariances_,
                                covariance_type=estimator.covariance_type)
        with open(os.path.join(local_staging, "config.yaml"), "w") as handle:
            handle.write(dump_config(config))
        manifest = {
            "run_id": run_id,
            "config_hash": config.config_hash(),
            "model_id": model_id,
            "created": dt.datetime.now(dt.UTC).isoformat(),
            "versions": versions(),
            "rows_in": int(sum(p["rows_in"] for p in partitions)),
            "rows_out": int(sum(p["rows_out"] for p in partitions)),
            "partitions": [{k: p[k] for k in ("file", "part", "rows_in", "rows_out",
                                              "rows_dropped")} for p in partitions],
        }
        _write_json(os.path.join(local_staging, "_SUCCESS.json"), manifest)
    except BaseException:
        discard(staging)
        raise
    summary["staging"] = staging
    summary["output"] = config.output.path
    return summary


def fit(config, run_id=None):
    """The whole fit job without Prefect: check, fit into staging, publish."""
    run_id = run_id or new_run_id()
    if check_output(config) == "skip":
        logger.info("output %s already holds a complete run of this config: skipped",
                    config.output.path)
        return {"run_id": run_id, "skipped": True, "output": config.output.path}
    summary = fit_to_staging(config, run_id)
    try:
        publish(config, summary["staging"], run_id)
    except BaseException:
        discard(summary["staging"])
        raise
    return summary


# ------------------------------------------------------------------ score


def score_to_staging(config, model_path, run_id):
    """Apply a saved model to the config's source partitions, into a staging folder."""
    estimator, meta = store.load_model(model_path, config.output.storage_options)
    staging = staging_path(config, run_id)
    started = time.perf_counter()
    try:
        with connect(config.cluster):
            files = io.list_parquet_files(config.source.path, config.source.storage_options)
            # the model's own features and scaler, never the score config's standardize
            source = config.source.model_copy(update={
                "features": config.source.features or meta["features"], "standardize": False})
            features, _ = io.inspect_schema(source, files)
            if list(features) != list(meta["features"]):
                raise io.DataError(
                    f"source.features: the data's features {features} differ from the model's "
                    f"{meta['features']}; score with the same feature columns, in the same "
                    "order")
            dataset = io.load(source, dtype="float64")
            if meta["preprocessing"]:
                dataset.scaler_mean = meta["preprocessing"]["mean"]
                dataset.scaler_scale = meta["preprocessing"]["scale"]
            os.makedirs(_strip(staging), exist_ok=False)
            model = _kernels.prepare_model(estimator.weights_, estimator.means_,
                                           estimator.precisions_cholesky_,
                                           estimator.covariance_type,
                                           np.dtype(estimator.dtype or "float64"))
            partitions = io.write_assignments(dataset, model, estimator.n_components,
                                              config.output.columns, staging)
        manifest = {
            "run_id": run_id,
            "config_hash": config.config_hash(),
            "model_id": meta["model_id"],
            "model_path": model_path,
            "created": dt.datetime.now(dt.UTC).isoformat(),
            "versions": versions(),
            "rows_in": int(sum(p["rows_in"] for p in partitions)),
            "rows_out": int(sum(p["rows_out"] for p in partitions)),
            "partitions": [{k: p[k] for k in ("file", "part", "rows_in", "rows_out",
                                              "rows_dropped")} for p in partitions],
        }
        with open(os.path.join(_strip(staging), "config.yaml"), "w") as handle:
            handle.write(dump_config(config))
        _write_json(os.path.join(_strip(staging), "_SUCCESS.json"), manifest)
    except BaseException:
        discard(staging)
        raise
    return {"run_id": run_id, "staging": staging, "output": config.output.path,
            "model_id": meta["model_id"], "rows_in": manifest["rows_in"],
            "rows_out": manifest["rows_out"], "seconds": round(time.perf_counter() - started, 3)}
