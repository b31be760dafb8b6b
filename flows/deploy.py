"""A flow (fit, or the nightly update) on the config's schedule: served from this process,
or deployed to a pool.

The config's ``schedule`` section is the one place a schedule lives: ``serve`` and
``deploy`` read it, nothing else carries a cron. Both need a long-running Prefect server
(``prefect server start`` and PREFECT_API_URL): a temporary server cannot schedule runs.

    python -m flows.deploy CONFIG [--flow fit|update] [--pool NAME] [--set key.path=value ...]

registers (or updates) the deployment named by the config's ``name`` on the work pool;
``prefect worker start --pool NAME`` then runs it on schedule.
"""

import argparse
from pathlib import Path

from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.fit import fit_flow
from pipeline.config import ConfigError, load_config

DEFAULT_WORK_POOL = "mixlake"


def _flow(name):
    if name == "update":
        from flows.update import update_flow

        return update_flow
    return fit_flow


def deployment_settings(config_path, overrides=()):
    """What a deployment of the fit flow is made of, all of it from the config:
    ``name``, ``schedules`` (its cron and time zone), ``parameters`` and ``tags``."""
    config = load_config(config_path, overrides)
    if not config.schedule.cron:
        raise ConfigError(f"{config_path}: schedule.cron: missing; a scheduled deployment "
                          "needs a cron schedule such as '0 2 * * *'")
    return {
        "name": config.name,
        "schedules": [Cron(config.schedule.cron, timezone=config.schedule.timezone)],
        # absolute, so the run finds the config whatever its working directory
        "parameters": {"config_path": str(Path(config_path).resolve()),
                       "overrides": list(overrides)},
        "tags": ["mixlake"],
    }


def serve(config_path, overrides=(), flow="fit"):
    """Run the flow (``fit`` or ``update``) on the config's ``schedule`` in this process
    until interrupted."""
    _flow(flow).serve(**deployment_settings(config_path, overrides))


def deploy(config_path, overrides=(), work_pool=DEFAULT_WORK_POOL, flow="fit"):
    """Create or update the deployment of the fit flow on ``work_pool``; returns its id.

    The work pool must exist (``prefect work-pool create mixlake --type process``). The
    deployment names the flow by module (``flows.fit``), so a worker runs it wherever
    mixlake is installed; the config path it passes must exist where the worker runs.
    """
    return _flow(flow).deploy(**deployment_settings(config_path, overrides),
                           work_pool_name=work_pool, build=False, push=False,
                           entrypoint_type=EntrypointType.MODULE_PATH,
                           print_next_steps=False, ignore_warnings=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m flows.deploy",
        description="Create or update the fit flow's deployment on a work pool, scheduled "
                    "by the config's schedule section; prints the deployment's id.")
    parser.add_argument("config", help="the run config (its schedule section is used)")
    parser.add_argument("--flow", choices=["fit", "update"], default="fit",
                        help="the flow to schedule (default fit; update: the nightly job)")
    parser.add_argument("--pool", default=DEFAULT_WORK_POOL,
                        help=f"the work pool (default {DEFAULT_WORK_POOL})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. schedule.cron='0 3 * * *'")
    args = parser.parse_args(argv)
    try:
        print(deploy(args.config, args.set, work_pool=args.pool, flow=args.flow))
    except ValueError as exc:  # a bad config, or Prefect's: the work pool does not exist
        raise SystemExit(f"{parser.prog}: {exc}") from None


if __name__ == "__main__":
    main()
