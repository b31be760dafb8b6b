"""`mixlake update`: the scheduled job. One output holds the model and what it scored:

```
<output>/model/ report/ assignments/ _ledger.json monitor/ config.yaml _SUCCESS.json
```

With no model there yet, the job is a fit of the config's grid. Otherwise it scores the
new and changed input files with the current model (the ledger's incremental plan),
monitors them against the model's training baseline, and then either keeps the model
(the model and report are carried over, as the unchanged assignments are) or, when the
verdict recommends it, ``refit.max_age`` has passed or ``refit.mode`` is ``always``,
refits (warm from the current model, or the whole grid with ``refit.grid``) and rescores
every file with the new model. Either way the run is ONE commit through
:class:`pipeline.output.Target`: a killed run leaves the previous model and assignments
in place, and the next run finishes the job (a killed refit resumes from its checkpoint).
"""

import logging
import posixpath
import time
from dataclasses import dataclass

from pipeline import ledger, monitor, refit, run, source, store
from pipeline.config import dump_config
from pipeline.monitor import history
from pipeline.output import Target

logger = logging.getLogger("pipeline.update")

KEPT_FOLDERS = ("model", "report")


@dataclass
class UpdateInput:
    """What the update job reads: the schema of the files to score, the plan, the model
    (``plan`` and ``model_path`` are None when there is no model yet: a fit)."""

    schema: object
    plan: object
    n_selected: int
    model_path: str | None = None


def inspect_for_update(config):
    """Plan the run from the published output (its model and ledger) and the listing."""
    published = Target(config.output, "plan").published()
    if published is None or not published.exists("model", "model.json"):
        schema = run.inspect_input(config)
        return UpdateInput(schema, None, len(schema.inputs))
    model_path = published.join("model").url
    _, meta = store.load_model(model_path, config.output.storage_options, estimator=False)
    listed = source.listing(config.source)
    incremental = config.output.mode_for("update") == "incremental"
    plan = ledger.plan(listed.selected, ledger.read(published) if incremental else [],
                       meta["model_id"])
    # scoring reads no weights: the fit's source.weight need not be in the files scored
    schema = source.inspect(config.source.model_copy(update={"weight": None}),
                            config.source.features or meta["features"],
                            inputs=plan.to_score, listed=listed)
    return UpdateInput(schema, plan, len(listed.selected), model_path)


def _files_under(location, folder):
    """Paths relative to ``location`` of the files under its ``folder``."""
    if not location.exists(folder):
        return []
    root = location.path()
    return sorted(posixpath.relpath(p, root) for p in location.fs.find(location.path(folder)))


def update_to_staging(config, update_input, run_id):
    """Stage the night's run: a first fit, or score -> monitor -> keep or refit."""
    if update_input.plan is None:
        return _first_fit(config, update_input.schema, run_id)
    started = time.perf_counter()
    plan, schema = update_input.plan, update_input.schema
    estimator, meta = store.load_model(update_input.model_path, config.output.storage_options,
                                       estimator=False)
    counts = {"scored": len(plan.to_score), "unchanged": len(plan.kept),
              "removed": len(plan.removed)}
    summary = {"run_id": run_id, "job": "update", "output": config.output.path,
               "model_id": meta["model_id"], "files": counts}
    if plan.nothing_to_do:
        logger.info("nothing new: %d file(s) already scored by model %s; nothing written",
                    len(plan.kept), meta["model_id"])
        return {**summary, "action": "none", "why": "nothing new", "rows_in": 0,
                "rows_out": 0, "manifest": None}
    run.check_features(schema, meta)
    watch = monitor.watch_of(meta, config.monitor)
    target = Target(config.output, run_id)
    try:
        target.begin()
        published = target.published()
        partitions, entries = run.score_files(config, schema, plan, estimator, meta, target,
                                              run_id, watch)
        figures, verdict = monitor.measure(config.monitor, meta, estimator, partitions, watch)
        decision = refit.decide(config.refit, verdict, meta.get("baseline"))
        summary["monitor"] = {"figures": figures, "verdict": verdict}
        if decision.refit:
            logger.info("refit: %s", decision.why)
            target.discard()  # every file is rescored by the new model
            result = _refit(config, update_input, estimator, meta, run_id)
            manifest, new_model = result["manifest"], result["model_id"]
            summary["refit"] = {k: result[k] for k in (
                "model_id", "chosen", "candidates", "passes", "n_rows", "warm_start",
                "timings", "clusters")}
        else:
            logger.info("model %s kept: %s", meta["model_id"], decision.why)
            for folder in KEPT_FOLDERS:
                target.carry(_files_under(published, folder), published)
            manifest = run._manifest(config, run_id, meta["model_id"], partitions,
                                     schema.inputs, entries, files=counts)
            new_model = None
        entry = history.record(run_id, "update", meta["model_id"],
                               "refit" if decision.refit else "kept", figures, verdict,
                               config.monitor, new_model_id=new_model, why=decision.why,
                               files=counts)
        history.write(target, published, entry, config.monitor)
    except BaseException:
        target.discard()
        raise
    manifest["update"] = {"action": entry["action"], "why": decision.why,
                          "reasons": verdict["reasons"]}
    return {**summary, "action": entry["action"], "why": decision.why,
            "new_model_id": new_model, "rows_in": manifest["rows_in"],
            "rows_out": manifest["rows_out"], "manifest": manifest,
            "seconds": round(time.perf_counter() - started, 3)}


def _refit(config, update_input, estimator, meta, run_id):
    """Fit the new model and rescore every selected file into the staging (the update
    config's checkpoint: a killed refit resumes, and the publish clears it)."""
    refit_config = refit.refit_config(config, estimator, update_input.model_path,
                                      meta["features"])
    schema = source.inspect(refit_config.source)
    result = run.fit_to_staging(refit_config, schema, run_id,
                                checkpoint_hash=config.config_hash())
    target = Target(config.output, run_id)
    try:
        target.write_text("config.yaml", dump_config(config))
    except BaseException:
        target.discard()
        raise
    result["manifest"]["config_hash"] = config.config_hash()
    logger.info("refitted: model %s (%s) replaces %s; rescored %d file(s)",
                result["model_id"], result["chosen"], meta["model_id"], len(schema.inputs))
    return result


def _first_fit(config, schema, run_id):
    """No model yet: fit the grid; the history starts with the training rows' figures."""
    summary = run.fit_to_staging(config, schema, run_id)
    target = Target(config.output, run_id)
    try:
        why = "no model yet: fitted the model grid"
        verdict = monitor.verdict(None, config.monitor)
        entry = history.record(run_id, "update", summary["model_id"], "fit",
                               summary["monitor"]["figures"], verdict, config.monitor,
                               new_model_id=summary["model_id"], why=why)
        history.write(target, target.published(), entry, config.monitor)
    except BaseException:
        target.discard()
        raise
    summary["manifest"]["update"] = {"action": "fit", "why": why, "reasons": []}
    return {**summary, "job": "update", "action": "fit", "why": why,
            "new_model_id": summary["model_id"]}
