"""The score flow: apply a saved model to the source partitions and publish the assignments;
the monitor's figures and verdict as artifacts."""

from prefect import flow

from flows.tasks import as_task
from flows.update import publish_monitor_artifacts
from pipeline import run
from pipeline.config import RunConfig, load_config


@flow(name="mixlake-score", log_prints=True)
def score_flow(config_path: str, overrides: list[str] | None = None,
               config: RunConfig | None = None) -> dict:
    """Label the config's source partitions with the model at ``score.model_path``."""
    config = run.require_score(config or load_config(config_path, overrides or []),
                              config_path)
    summary = run.execute(config, run.SCORE, step=as_task)
    if not summary.get("skipped"):
        print(f"scored {summary['rows_out']} rows with model {summary['model_id']} into "
              f"{config.output.path}")
        publish_monitor_artifacts(summary)
    return summary
