"""The steps of a run, in one place: the ``mixlake`` command and the Prefect flows both
call :func:`execute`, which checks the output, inspects the input, stages the run and
publishes it.

Each job stages its files through :class:`pipeline.output.Target` and commits them with
``_SUCCESS.json`` last: a failed run leaves no partial output and never touches a
previous one. The flows run each step as a Prefect task (with retries on the I/O steps)
by passing their own ``step`` callable; without Prefect each step is a plain call.

With ``output.format: delta`` the assignments are a Delta table whose commit is the
staging step's last act (:mod:`pipeline.delta` says how it fits this protocol); with a
``lineage`` section the run is wrapped in OpenLineage events (:mod:`pipeline.lineage`).
"""

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from pipeline import assign, delta, drawing, ledger, lineage, monitor, refit, source, store
from pipeline.checkpoint import Checkpoint
from pipeline.cluster import connect, discard_prestarted, prestart
from pipeline.config import ConfigError, dump_config
from pipeline.mixture import _kernels
from pipeline.monitor import history
from pipeline.output import (
    OutputExistsError,
    Target,
    locked,
    read_manifest,
    repair,
    resolve_model_path,
)
from pipeline.storage import DataError, is_local
from pipeline.store import ModelFileError

__all__ = ["FIT", "SCORE", "UPDATE", "Job", "OutputExistsError", "check_output", "discard",
           "execute", "fit", "fit_to_staging", "inspect_input", "new_run_id", "publish",
           "read_manifest", "score", "score_files", "score_to_staging", "update"]

logger = logging.getLogger("pipeline.run")


def new_run_id():
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def versions():
    out = {}
    for name in ["mixlake", "numpy", "scikit-learn", "dask", "distributed", "pyarrow",
                 "prefect"]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ------------------------------------------------------------------ the steps


def check_output(config, job="fit"):
    """'run', or 'skip' when skip-if-complete finds a complete run of this config; raises
    OutputExistsError for an output that overlaps the input or that mode: error protects."""
    return Target(config.output, "check").check(config, job)


def inspect_input(config, features=None):
    """List the partitions and check their schemas (footers only): the I/O a flow retries.

    Returns
    -------
    pipeline.source.Schema
        Handed on to the staging step, so the footers are read once per run.
    """
    return source.inspect(config.source, features)


def publish(config, run_id, manifest):
    """Commit the staged run (``_SUCCESS.json`` last), then drop the run's checkpoint."""
    path = Target(config.output, run_id).publish(manifest)
    Checkpoint(config.output, config.config_hash()).clear()
    return path


def discard(config, run_id):
    Target(config.output, run_id).discard()


@dataclass(frozen=True)
class Job:
    """What differs between the fit and the score job: how the input is inspected and
    what is staged."""

    name: str
    inspect: object  # (config) -> Schema
    stage: object  # (config, schema, run_id) -> summary with a "manifest"


class Laps:
    """Consecutive durations of a run's phases: they add up to the time they cover."""

    def __init__(self):
        self.mark = time.perf_counter()
        self.seconds = {}

    def lap(self, name):
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.mark
        self.mark = now

    def rounded(self):
        return {name: round(value, 3) for name, value in self.seconds.items()}


def _call(name, func, *args):
    return func(*args)


def execute(config, job, run_id=None, step=_call):
    """Run ``job`` on ``config``: check the output, inspect the input, stage, publish.

    Parameters
    ----------
    config : pipeline.config.RunConfig
    job : Job
        :data:`FIT` or :data:`SCORE`.
    step : callable, optional
        ``step(name, func, *args)`` runs one step (``check-output``, ``read-input``, the
        job's name, ``publish``); the flows pass one that runs it as a Prefect task.

    Returns
    -------
    summary : dict
        JSON-able; ``{"skipped": True, ...}`` when skip-if-complete found this run done.
    """
    run_id = run_id or new_run_id()
    with locked(config.output.path, run_id), lineage.events(config, job.name, run_id) as events:
        if is_local(config.output.path):
            repair(config.output.path)
        if config.output.format == "delta":
            delta.repair(config.output)  # object stores: a commit nobody published
        try:
            summary = _steps(config, job, run_id, step)
        except DETERMINISTIC_ERRORS:
            # a rerun would fail the same way: its checkpoint is of no use to anyone
            Checkpoint(config.output, config.config_hash()).clear()
            raise
        finally:
            discard_prestarted()
        events.complete(summary)
        return summary


# Failures a rerun of the same config on the same data cannot change (bad config, bad
# data, a model that cannot be fitted); a kill or a lost cluster raises none of them.
DETERMINISTIC_ERRORS = (ConfigError, DataError, ModelFileError, ValueError)


def _steps(config, job, run_id, step):
    laps = Laps()
    if step("check-output", check_output, config, job.name) == "skip":
        logger.info("output %s already holds a complete run of this config: skipped",
                    config.output.path)
        return {"run_id": run_id, "skipped": True, "output": config.output.path}
    schema = step("read-input", job.inspect, config)
    if job.name == "fit":  # its workers come up while the fit imports scikit-learn
        prestart(config.cluster)
    laps.lap("checks")
    summary = step(job.name, job.stage, config, schema, run_id)
    laps.mark = time.perf_counter()
    if summary.get("manifest") is not None:  # else nothing new: the output stays as it is
        try:
            step("publish", publish, config, run_id, summary["manifest"])
        except BaseException:
            discard(config, run_id)
            if config.output.format == "delta":
                delta.repair(config.output, current_run=run_id)  # undo its commit
            raise
        laps.lap("publish")
    timings = laps.rounded()
    summary["timings"] = {"checks": timings["checks"], **summary.get("timings", {}),
                          **({"publish": timings["publish"]} if "publish" in timings else {})}
    return summary


def _manifest(config, run_id, model_id, partitions, inputs, entries, **extra):
    """``_SUCCESS.json``: the run, and its lineage: every input file read (path, size,
    modification time or ETag, rows) and every output file written."""
    return {
        "run_id": run_id,
        "config_hash": config.config_hash(),
        "model_id": model_id,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "versions": versions(),
        "rows_in": int(sum(p["rows_in"] for p in partitions)),
        "rows_out": int(sum(p["rows_out"] for p in partitions)),
        "partitions": [{k: p[k] for k in ("file", "part", "rows_in", "rows_out", "rows_dropped")}
                       for p in partitions],
        "inputs": [{"path": f.url, "size": f.size, "stamp": f.stamp, "rows": int(p["rows_in"])}
                   for f, p in zip(inputs, partitions)],
        "outputs": sorted(e["output"] for e in entries),
        "ledger_sha256": ledger.digest(entries),
        **extra,
    }


def _output_table(config, target, schema):
    """The run's Delta output table, ready for its data files; None for Parquet output.
    Its commit is the assignments' commit point (see :mod:`pipeline.delta`)."""
    if config.output.format != "delta":
        return None
    table = delta.OutputTable(config.output, target)
    table.prepare(schema.partition_keys)
    return table


def _read_as(config, schema):
    """The config as the run read its input: a Delta source pinned to the version read,
    so that the run's ``config.yaml`` reads the same version when run again."""
    if config.source.format != "delta" or config.source.version is not None:
        return config
    return config.model_copy(update={"source": config.source.model_copy(
        update={"version": schema.version})})


def _table_records(config, schema, committed):
    """The manifest's record of a Delta source's version read and of the Delta output's
    commit (the version a reader time-travels to for this run's labels)."""
    extra = {}
    if config.source.format == "delta":
        extra["source"] = {"format": "delta", "path": config.source.path,
                           "version": schema.version}
    if committed is not None:
        extra["delta"] = committed
    return extra


def _sample(dataset, size, seed):
    n = int(sum(dataset.valid_rows))
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, size), replace=False))
    return np.asarray(dataset.X[idx].compute())


def _draw_figures(report_mod, run_id, config, dataset, result, sample, painter=None):
    """Draw the report's figures while the run writes (they need only the selection's
    result): in ``painter`` (:class:`pipeline.drawing.FigureProcess`) when there is one,
    else in a thread; returns a future of :func:`pipeline.report.render_figures`."""
    from concurrent.futures import ThreadPoolExecutor

    model = result.model
    selection = {"run_id": run_id, "criterion": result.criterion,
                 "features": dataset.features, "chosen": result.best.name,
                 "candidates": [c.row() for c in result.candidates],
                 "clusters": [{"cluster": k, "weight": float(model.weights_[k])}
                              for k in range(model.n_components)]}
    if config.model.kind == "bayesian":
        selection.update(kind="bayesian", weight_threshold=config.model.weight_threshold,
                         n_weighted=result.best.n_weighted)
    labels = _kernels.predict_chunk(sample, _prepared(model, config.model.dtype))
    arguments = (selection, sample, labels, model.means_, model.covariances_,
                 model.covariance_type)
    if painter is not None:
        return painter.draw(*arguments)
    executor = ThreadPoolExecutor(1, thread_name_prefix="mixlake-figures")
    try:
        return executor.submit(report_mod.render_figures, *arguments)
    finally:
        executor.shutdown(wait=False)


def _prepared(model, dtype):
    # the model's own E-step model: a Bayesian mixture's has its variational constants
    return model._model(np.dtype(dtype))


# ------------------------------------------------------------------ fit


def fit_to_staging(config, schema, run_id, checkpoint_hash=None):
    """Load, select, write assignments, model, report and config into the run's staging.

    ``checkpoint_hash`` names the checkpoint when it is not this config's (a refit
    inside `mixlake update`, whose publish clears the update config's).

    Returns
    -------
    summary : dict
        Small and JSON-able: run id, candidate table, chosen model, cluster sizes, passes,
        timings, and the ``manifest`` to publish.
    """
    laps = Laps()
    target = Target(config.output, run_id)
    model_cfg = config.model
    table = committed = None
    if config.output.format == "delta":  # before the passes, not after
        delta.check_partitioning(config.output, schema.partition_keys)
    # the figures' process imports matplotlib meanwhile, on the core these imports leave
    painter = drawing.FigureProcess() if sum(schema.rows) >= drawing.MIN_ROWS else None
    try:
        from pipeline import report as report_mod
        from pipeline.selection import select

        laps.lap("imports")
        with connect(config.cluster):
            laps.lap("cluster")
            dataset = source.load(config.source, dtype=model_cfg.dtype,
                                  min_distinct_rows=max(model_cfg.component_counts()),
                                  schema=schema, persist=model_cfg.persist)
            logger.info("loaded %d rows x %d features from %d partition(s)", dataset.n_rows,
                        len(dataset.features), len(dataset.files))
            laps.lap("load")
            init = refit.warm_start(config, dataset)
            checkpoint = Checkpoint(config.output, checkpoint_hash or config.config_hash())
            fingerprint = source.fingerprint(schema.inputs)
            result = select(
                dataset.X, n_components=model_cfg.component_counts(),
                covariance_types=model_cfg.covariance_types(), n_init=model_cfg.n_init,
                init_params=model_cfg.init_params, tol=model_cfg.tol,
                reg_covar=model_cfg.reg_covar, max_iter=model_cfg.max_iter,
                random_state=model_cfg.random_state, criterion=model_cfg.criterion,
                dtype=model_cfg.dtype, persist=model_cfg.persist, checkpoint=checkpoint,
                init=init, kind=model_cfg.kind, weight_threshold=model_cfg.weight_threshold,
                sample_weight=dataset.weight, keep_scores=assign.can_use_scores(dataset),
                described=dataset.described,
                fingerprint=fingerprint + (f"-from-{init['model_id']}" if init else ""))
            laps.lap("select")
            model = result.model  # not an estimator: no scikit-learn import (1.5 s or more)
            base = watch = None  # a Bayesian fit has no training baseline (yet)
            if result.baseline is not None:
                base = dict(result.baseline, window=monitor.window(
                    config.source.filter, len(schema.inputs), fingerprint))
                watch = monitor.watch(base, config.monitor.outlier_quantile)
            sample = _sample(dataset, 5000, 0)
            figures = _draw_figures(report_mod, run_id, config, dataset, result, sample,
                                    painter)
            target.begin()
            table = _output_table(config, target, schema)
            if table is not None:
                dataset.outputs = table.parts(dataset.outputs)
            logger.info("writing %d partition(s) into %s", len(dataset.files), target.staging,
                        extra={"progress": {"phase": "write", "total": len(dataset.files)}})
            partitions = assign.write_assignments(
                dataset, _prepared(model, model_cfg.dtype), model.n_components,
                config.output.columns, table.root if table else target.location, watch=watch,
                scores=result.scores)
            result.scores = None  # free the workers' memory
            preprocessing = ({"mean": dataset.scaler_mean, "scale": dataset.scaler_scale}
                             if dataset.scaler_mean is not None else None)
            model_id = store.save_model(model, target.location.join("model").url,
                                        features=dataset.features, preprocessing=preprocessing,
                                        extra={"run_id": run_id,
                                               "config_hash": config.config_hash()},
                                        baseline=base, storage_options=target.options)
            laps.lap("write")
        laps.lap("shutdown")
        counts = np.sum([p["cluster_counts"] for p in partitions], axis=0)
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
            "timings": laps.rounded(),
            "candidates": [c.row() for c in result.candidates],
            "chosen": result.best.name,
            "warm_start": init and init["model_id"],
            "clusters": [{"cluster": k, "weight": float(model.weights_[k]),
                          "size": int(counts[k])} for k in range(model.n_components)],
        }
        if model_cfg.kind == "bayesian":
            summary.update(kind="bayesian", weight_threshold=model_cfg.weight_threshold,
                           n_weighted=result.best.n_weighted)
        folder = target.local_folder("report")
        report_mod.write_report(summary, folder, figures=figures.result())
        target.upload(folder, "report")
        entries = ledger.entries_for(schema.inputs, schema.rows, dataset.outputs, model_id,
                                     run_id)
        target.write_text(ledger.NAME, ledger.dumps(entries))
        target.write_text("config.yaml", dump_config(_read_as(config, schema)))
        if table is not None:  # last: on an object store this commit is visible at once
            committed = table.commit(partitions, schema.inputs, dataset.outputs,
                                     schema.partition_keys, schema.partition_types, model_id,
                                     full=True)
        if base is not None:
            figures, _ = monitor.measure(config.monitor, {"baseline": base,
                                                          "features": dataset.features},
                                         model, partitions, watch, log=False)
            logger.info("training baseline: mean log-density %.3f (SD %.3f); %d rows below "
                        "the %g%% quantile %.3f are outliers", base["log_density"]["mean"],
                        base["log_density"]["std"], figures["outliers"],
                        100 * config.monitor.outlier_quantile, watch.threshold)
            summary["monitor"] = {"figures": figures}  # the training rows, against themselves
        laps.lap("report")
        summary["timings"] = laps.rounded()
    except BaseException:
        target.discard()
        if table is not None:
            table.discard()
        raise
    finally:
        if painter is not None:
            painter.close()
    summary["files"] = {"selected": len(schema.inputs), "listed": schema.n_listed}
    summary["manifest"] = _manifest(config, run_id, model_id, partitions, schema.inputs,
                                    entries, **_table_records(config, schema, committed))
    summary["output"] = config.output.path
    return summary


# ------------------------------------------------------------------ score


def require_score(config, origin="config"):
    """The config, if it names the model to apply; a ConfigError saying how otherwise."""
    if config.score is None:
        raise ConfigError(f"{origin}: score.model_path: missing; name the model folder "
                          "(<fit output>/model) to apply")
    return config


def _model_of(config):
    """(estimator, meta) of the saved model the score config names."""
    model_path = resolve_model_path(config.score.model_path, config.output.storage_options)
    estimator, meta = store.load_model(model_path, config.output.storage_options,
                                       estimator=False)
    return model_path, estimator, meta


@dataclass
class ScoreInput:
    """What the score job reads: the schema of the files to score and the plan."""

    schema: object  # source.Schema of plan.to_score
    plan: object  # ledger.Plan
    n_selected: int
    replaced: list = None  # ledger entries whose output this run replaces or removes


def inspect_for_score(config):
    """Plan the score run from the listing and the ledger; read the footers of the files
    to score only (with the saved model's features unless the config names them)."""
    _, _, meta = _model_of(require_score(config))
    listed = source.listing(config.source)  # once: a Delta table may move meanwhile
    entries = []
    if config.output.mode_for("score") == "incremental":
        published = Target(config.output, "plan").published()
        entries = ledger.read(published) if published is not None else []
        was_delta = "delta" in (read_manifest(config.output.path,
                                              config.output.storage_options) or {})
        if was_delta != (config.output.format == "delta"):
            entries = []  # the output changed format: rewrite it whole
        elif config.output.format == "delta":
            entries = delta.check_ledger(config.output, entries)
    plan = ledger.plan(listed.selected, entries, meta["model_id"])
    features = config.source.features or meta["features"]
    # scoring reads no weights: the fit's source.weight need not be in the files scored
    schema = source.inspect(config.source.model_copy(update={"weight": None}), features,
                            inputs=plan.to_score, listed=listed)
    by_input = {e["input"]: e for e in entries}
    replaced = [by_input[f.url] for f in plan.to_score if f.url in by_input] + plan.removed
    return ScoreInput(schema=schema, plan=plan, n_selected=len(listed.selected),
                      replaced=replaced)


def check_features(schema, meta):
    if schema.inputs and list(schema.features) != list(meta["features"]):
        raise DataError(
            f"source.features: the data's features {schema.features} differ from the model's "
            f"{meta['features']}; score with the same feature columns, in the same order")


def score_files(config, schema, plan, estimator, meta, target, run_id, watch=None,
                replaced=None, delta_out=None):
    """Into the begun staging: the assignments of the files the plan scores, the kept
    ones carried over, the ledger and config.yaml. Returns (partitions, ledger entries).

    With ``output.format: delta`` the assignments go into the Delta table (``delta_out``
    receives the ``table`` and, after its commit, ``committed``), last of all.
    """
    partitions = []
    table = _output_table(config, target, schema)
    outputs = table.parts(schema.outputs) if table is not None else schema.outputs
    if delta_out is not None:
        delta_out["table"] = table
    if plan.to_score:
        with connect(config.cluster):
            # no scan pass: each file is read once, checked as it is scored; the
            # model's own scaler, never the score config's standardize
            dataset = source.for_scoring(config.source, schema)
            if meta["preprocessing"]:
                dataset.scaler_mean = meta["preprocessing"]["mean"]
                dataset.scaler_scale = meta["preprocessing"]["scale"]
            dataset.outputs = outputs
            partitions = assign.write_assignments(
                dataset, _prepared(estimator, estimator.dtype or "float64"),
                estimator.n_components, config.output.columns,
                table.root if table is not None else target.location, watch=watch)
    if plan.kept and table is None:  # a Delta table keeps its files in place
        target.carry([e["output"] for e in plan.kept], target.published())
    entries = plan.kept + ledger.entries_for(schema.inputs, schema.rows, outputs,
                                             meta["model_id"], run_id)
    target.write_text(ledger.NAME, ledger.dumps(entries))
    target.write_text("config.yaml", dump_config(_read_as(config, schema)))
    if table is not None:  # last: on an object store this commit is visible at once
        delta_out["committed"] = table.commit(
            partitions, schema.inputs, outputs, schema.partition_keys, schema.partition_types,
            meta["model_id"], replaced=replaced or [], full=not plan.kept)
    logger.info("scored %d file(s), %d unchanged, %d removed", len(plan.to_score),
                len(plan.kept), len(plan.removed))
    return partitions, entries


def score_to_staging(config, score_input, run_id):
    """Apply the saved model at ``score.model_path`` to the files the plan scores; carry
    the unchanged ones over from the published output; drop those whose input is gone;
    monitor the scored rows against the model's baseline (``monitor/``)."""
    model_path, estimator, meta = _model_of(config)
    schema, plan = score_input.schema, score_input.plan
    target = Target(config.output, run_id)
    started = time.perf_counter()
    counts = {"scored": len(plan.to_score), "unchanged": len(plan.kept),
              "removed": len(plan.removed)}
    summary = {"run_id": run_id, "output": config.output.path, "model_id": meta["model_id"],
               "files": counts}
    if plan.nothing_to_do:
        logger.info("nothing new: %d file(s) unchanged since they were scored by model %s; "
                    "the output is left as it is", len(plan.kept), meta["model_id"])
        return {**summary, "rows_in": 0, "rows_out": 0, "manifest": None,
                "seconds": round(time.perf_counter() - started, 3)}
    check_features(schema, meta)
    watch = monitor.watch_of(meta, config.monitor)
    delta_out = {"table": None, "committed": None}
    try:
        target.begin()
        published = target.published()
        partitions, entries = score_files(config, schema, plan, estimator, meta, target,
                                          run_id, watch, replaced=score_input.replaced,
                                          delta_out=delta_out)
        figures, verdict = monitor.measure(config.monitor, meta, estimator, partitions, watch)
        if figures is None:
            history.carry(target, published)
        else:
            history.write(target, published, history.record(
                run_id, "score", meta["model_id"], "scored", figures, verdict, config.monitor,
                files=counts), config.monitor)
    except BaseException:
        target.discard()
        if delta_out["table"] is not None:
            delta_out["table"].discard()
        raise
    manifest = _manifest(config, run_id, meta["model_id"], partitions, schema.inputs, entries,
                         model_path=model_path, files=counts,
                         **_table_records(config, schema, delta_out["committed"]))
    return {**summary, "rows_in": manifest["rows_in"], "rows_out": manifest["rows_out"],
            "seconds": round(time.perf_counter() - started, 3), "manifest": manifest,
            "monitor": {"figures": figures, "verdict": verdict}}


FIT = Job("fit", inspect=lambda config: inspect_input(config),
          stage=lambda config, schema, run_id: fit_to_staging(config, schema, run_id))
SCORE = Job("score", inspect=lambda config: inspect_for_score(config),
            stage=lambda config, schema, run_id: score_to_staging(config, schema, run_id))


def _update_job():
    from pipeline import update

    return update


# the update job lives in pipeline.update, which builds on the steps above
UPDATE = Job("update", inspect=lambda config: _update_job().inspect_for_update(config),
             stage=lambda config, plan, run_id: _update_job().update_to_staging(config, plan,
                                                                                run_id))


def fit(config, run_id=None):
    """The whole fit job without Prefect: check, fit into staging, publish."""
    return execute(config, FIT, run_id)


def score(config, run_id=None):
    """The whole score job without Prefect."""
    return execute(config, SCORE, run_id)


def update(config, run_id=None):
    """The whole update job without Prefect."""
    return execute(config, UPDATE, run_id)
