"""The I/O tasks both flows share: each one library call, retried on transient errors."""

from prefect import task

from flows import IO_RETRIES
from pipeline import run
from pipeline.config import parse_config


@task(name="check-output", **IO_RETRIES)
def check_output(config: dict) -> str:
    return run.check_output(parse_config(config))


@task(name="read-input", **IO_RETRIES)
def read_input(config: dict) -> dict:
    return run.inspect_input(parse_config(config))


@task(name="publish", **IO_RETRIES)
def publish(config: dict, run_id: str, manifest: dict) -> str:
    return run.publish(parse_config(config), run_id, manifest)


def stage_and_publish(stage_task, resolved: dict, run_id: str) -> dict:
    """Run the staging task, then publish; a failed publish discards the staged run."""
    summary = stage_task(resolved, run_id)
    try:
        publish(resolved, run_id, summary["manifest"])
    except BaseException:
        run.discard(parse_config(resolved), run_id)
        raise
    return summary
