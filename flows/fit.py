"""The fit flow: check the output -> fit into staging -> publish -> artifacts."""

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.tasks import check_output, read_input, stage_and_publish
from pipeline import run
from pipeline.config import load_config, parse_config
from pipeline.report import candidate_table_markdown


@task(name="fit")
def fit_to_staging(config: dict, run_id: str) -> dict:
    # The math is not retried: a failure here is a bug or bad data, not a glitch.
    return run.fit_to_staging(parse_config(config), run_id)


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
def fit_flow(config_path: str, overrides: list[str] | None = None) -> dict:
    """Fit the config's model grid on its Parquet partitions and publish the results."""
    config = load_config(config_path, overrides or [])
    resolved = config.model_dump(mode="json")
    run_id = run.new_run_id()
    if check_output(resolved) == "skip":
        print(f"{config.output.path} already holds a complete run of this config: skipped")
        return {"run_id": run_id, "skipped": True, "output": config.output.path}
    read_input(resolved)
    summary = stage_and_publish(fit_to_staging, resolved, run_id)
    _publish_artifacts(summary)
    return summary
