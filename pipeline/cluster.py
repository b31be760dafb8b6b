"""A dask.distributed Client from the config: an embedded LocalCluster or a scheduler address.

The run closes only what it created: a LocalCluster it started is stopped at the end;
a cluster reached by address is left running.
"""

import contextlib
import logging
import os

logger = logging.getLogger("pipeline.cluster")


class ClusterError(RuntimeError):
    """The Dask cluster cannot be reached or started."""


@contextlib.contextmanager
def connect(cluster_config):
    """Yield a Client for ``cluster_config`` (a :class:`pipeline.config.Cluster`)."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    from distributed import Client, LocalCluster

    address = cluster_config.address or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            client = Client(address, timeout=cluster_config.connect_timeout,
                            set_as_default=True)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cluster.address: cannot reach the Dask scheduler at {address} within "
                f"{cluster_config.connect_timeout:g} s ({exc}); check the address or raise "
                "cluster.connect_timeout") from None
        logger.info("connected to the Dask scheduler at %s (%d workers)", address,
                    len(client.scheduler_info(n_workers=-1)["workers"]))
        try:
            yield client
        finally:
            client.close()
        return
    kwargs = dict(n_workers=cluster_config.n_workers,
                  threads_per_worker=cluster_config.threads_per_worker,
                  memory_limit=cluster_config.memory_limit, processes=True,
                  dashboard_address=":0")
    if cluster_config.local_directory:
        kwargs["local_directory"] = cluster_config.local_directory
    with LocalCluster(**kwargs) as cluster, Client(cluster, set_as_default=True) as client:
        logger.info("started a LocalCluster: %d workers x %d threads", cluster_config.n_workers,
                    cluster_config.threads_per_worker)
        yield client
