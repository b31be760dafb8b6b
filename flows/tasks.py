"""The steps of a run as Prefect tasks: :func:`pipeline.run.execute` calls each step
through :func:`as_task`, so a flow runs exactly the steps the command runs without Prefect.

Tasks receive the parsed :class:`~pipeline.config.RunConfig` and pass small results
(the input's schema, a summary); retries go on the I/O steps only, never on the math.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows import IO_RETRIES


def _run_step(func, args):
    return func(*args)


# the inputs (configs, functions) are not cache keys: every run does its work
_TASKS = {
    "check-output": task(name="check-output", cache_policy=NO_CACHE, **IO_RETRIES)(_run_step),
    "read-input": task(name="read-input", cache_policy=NO_CACHE, **IO_RETRIES)(_run_step),
    # the math is not retried: a failure there is a bug or bad data, not a glitch
    "fit": task(name="fit", cache_policy=NO_CACHE)(_run_step),
    "score": task(name="score", cache_policy=NO_CACHE)(_run_step),
    "update": task(name="update", cache_policy=NO_CACHE)(_run_step),
    "publish": task(name="publish", cache_policy=NO_CACHE, **IO_RETRIES)(_run_step),
}


def as_task(name, func, *args):
    """Run one step of :func:`pipeline.run.execute` as the Prefect task of that name."""
    return _TASKS[name](func, args)
