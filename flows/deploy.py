"""Deployments: serve the fit flow on the config's cron schedule."""

from pathlib import Path

from prefect.schedules import Cron

import flows  # noqa: F401
from flows.fit import fit_flow
from pipeline.config import ConfigError, load_config


def serve(config_path, overrides=()):
    """Run the fit flow on the config's ``schedule.cron`` until interrupted.

    Needs a long-running Prefect server (``prefect server start`` and PREFECT_API_URL):
    a temporary server cannot schedule runs.
    """
    config = load_config(config_path, overrides)
    if not config.schedule.cron:
        raise ConfigError(f"{config_path}: schedule.cron: missing; a served deployment needs "
                          "a cron schedule such as '0 2 * * *'")
    fit_flow.serve(
        name=config.name,
        schedules=[Cron(config.schedule.cron, timezone=config.schedule.timezone)],
        parameters={"config_path": str(Path(config_path).resolve()),
                    "overrides": list(overrides)},
        tags=["mixlake"],
    )
