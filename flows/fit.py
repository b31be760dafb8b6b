"""The fit flow: the run's steps as Prefect tasks, then the BIC report as artifacts."""

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.tasks import as_task
from pipeline import run
from pipeline.config import RunConfig, load_config
from pipeline.report import candidate_table_markdown


def _publish_artifacts(summary):
    rows = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
            for row in summary["candidates"]]
    create_table_artifact(table=rows, key="candidates",
                          description=f"mixlake candidates, run {summary['run_id']}")
    create_markdown_artifact(
        markdown=f"# mixlake run {summary['run_id']}\n\nchosen: **{summary['chosen']}** by "
                 f"{summary['criterion'].upper()}, {summary['passes']} passes over the data\n\n"
                 + candidate_table_markdown(summary),
        key="bic-report", description="BIC/AIC report")


@flow(name="mixlake-fit", log_prints=True)
def fit_flow(config_path: str, overrides: list[str] | None = None,
             config: RunConfig | None = None) -> dict:
    """Fit the config's model grid on its Parquet partitions and publish the results.

    ``config``, when given, is the already parsed config of ``config_path`` (the command
    parses it once, before anything starts).
    """
    config = config or load_config(config_path, overrides or [])
    summary = run.execute(config, run.FIT, step=as_task)
    if summary.get("skipped"):
        print(f"{config.output.path} already holds a complete run of this config: skipped")
    else:
        _publish_artifacts(summary)
    return summary
