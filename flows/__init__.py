"""Prefect flows for mixlake: thin wrappers, each task one library call.

The settings below make the embedded default work with no set-up on a small machine: a
temporary Prefect server with analytics off and a startup timeout that suits 2 cores,
and the library's own loggers shown in the flow run's logs. Each is only a default: an
environment that sets them (a real server through PREFECT_API_URL) wins.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
# the library also runs outside flows (tests, notebooks): its records then stay local
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def retry_transient(task, task_run, state):
    """Prefect retry condition: retry I/O glitches, never a bad config, bad data or a refusal.

    Retrying those would only repeat the same message after the backoff.
    """
    from pipeline.config import ConfigError
    from pipeline.output import OutputExistsError
    from pipeline.storage import DataError
    from pipeline.store import ModelFileError

    exc = state.data if isinstance(state.data, BaseException) else None
    permanent = (ConfigError, DataError, OutputExistsError, ModelFileError, PermissionError,
                 FileNotFoundError, ValueError)
    return not isinstance(exc, permanent)


IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)
