"""The update flow: the nightly job (score the new files, monitor them, keep the model or
refit and rescore, one commit), with the monitor's figures and verdict as artifacts."""

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.tasks import as_task
from pipeline import run
from pipeline.config import RunConfig, load_config

FIGURE_ROWS = (("rows", "rows scored", "{:,}"),
               ("mean_log_density", "mean log-density", "{:.3f}"),
               ("training_mean_log_density", "training mean log-density", "{:.3f}"),
               ("loglik_drop", "log-density drop (nats/row)", "{:.3f}"),
               ("loglik_drop_sd", "log-density drop (training SDs)", "{:.3f}"),
               ("outlier_rate", "outlier rate", "{:.2%}"),
               ("outliers", "outliers", "{:,}"),
               ("psi", "cluster-proportion PSI", "{:.4f}"),
               ("max_proportion_change", "largest proportion change", "{:+.2%}"),
               ("max_feature_shift", "largest feature shift (SDs)", "{:+.3f}"),
               ("moved_component", "component that moved most", "{}"),
               ("moved_component_sd", "its rows' move (SDs)", "{:.2f}"))


def verdict_markdown(summary):
    """The verdict of a monitored run, and what the run did, as Markdown."""
    monitored = summary.get("monitor") or {}
    verdict = monitored.get("verdict") or {"refit_recommended": False, "reasons": []}
    lines = [f"# mixlake {summary.get('job', 'score')} {summary['run_id']}", "",
             f"**refit recommended: {'yes' if verdict['refit_recommended'] else 'no'}**", ""]
    lines += [f"- {reason}" for reason in verdict["reasons"]]
    if summary.get("action"):
        lines += ["", f"action: **{summary['action']}** ({summary.get('why', '')})"]
    return "\n".join(lines) + "\n"


def publish_monitor_artifacts(summary):
    """The figures as a table artifact and the verdict as a Markdown one (nothing when
    the run monitored no rows)."""
    figures = (summary.get("monitor") or {}).get("figures")
    if not figures:
        return
    rows = [{"figure": label, "value": fmt.format(figures[key])}
            for key, label, fmt in FIGURE_ROWS if figures.get(key) is not None]
    create_table_artifact(table=rows, key="monitor-figures",
                          description=f"mixlake monitor figures, run {summary['run_id']}")
    create_markdown_artifact(markdown=verdict_markdown(summary), key="monitor-verdict",
                             description="mixlake refit verdict")


@flow(name="mixlake-update", log_prints=True)
def update_flow(config_path: str, overrides: list[str] | None = None,
                config: RunConfig | None = None) -> dict:
    """Score the new partitions with the output's model, monitor them, refit if needed."""
    config = config or load_config(config_path, overrides or [])
    summary = run.execute(config, run.UPDATE, step=as_task)
    if not summary.get("skipped"):
        print(f"update {summary['run_id']}: {summary.get('action')} ({summary.get('why')})")
        publish_monitor_artifacts(summary)
    return summary
