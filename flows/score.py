"""The score flow: apply a saved model to new partitions and publish the assignments."""

from prefect import flow, task

from flows.tasks import check_output, read_input, stage_and_publish
from pipeline import run
from pipeline.config import ConfigError, load_config, parse_config


@task(name="score")
def score_to_staging(config: dict, run_id: str) -> dict:
    return run.score_to_staging(parse_config(config), run_id)


@flow(name="mixlake-score", log_prints=True)
def score_flow(config_path: str, overrides: list[str] | None = None) -> dict:
    """Label the config's source partitions with the model at ``score.model_path``."""
    config = load_config(config_path, overrides or [])
    if config.score is None:
        raise ConfigError(f"{config_path}: score.model_path: missing; name the model folder "
                          "(<fit output>/model) to apply")
    resolved = config.model_dump(mode="json")
    run_id = run.new_run_id()
    if check_output(resolved) == "skip":
        return {"run_id": run_id, "skipped": True, "output": config.output.path}
    read_input(resolved)
    summary = stage_and_publish(score_to_staging, resolved, run_id)
    print(f"scored {summary['rows_out']} rows with model {summary['model_id']} into "
          f"{config.output.path}")
    return summary
