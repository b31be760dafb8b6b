"""The score flow: apply a saved model to new partitions and publish the assignments."""

from prefect import flow, task

from flows import IO_RETRIES  # flows/__init__ (Prefect defaults) ran before this module
from pipeline import run
from pipeline.config import ConfigError, load_config, parse_config


@task(name="check-output", **IO_RETRIES)
def check_output(config: dict) -> str:
    return run.check_output(parse_config(config))


@task(name="score")
def score_to_staging(config: dict, run_id: str) -> dict:
    return run.score_to_staging(parse_config(config), run_id)


@task(name="publish", **IO_RETRIES)
def publish(config: dict, run_id: str, manifest: dict) -> str:
    return run.publish(parse_config(config), run_id, manifest)


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
    summary = score_to_staging(resolved, run_id)
    try:
        publish(resolved, run_id, summary["manifest"])
    except BaseException:
        run.discard(parse_config(resolved), run_id)
        raise
    print(f"scored {summary['rows_out']} rows with model {summary['model_id']} into "
          f"{config.output.path}")
    return summary
