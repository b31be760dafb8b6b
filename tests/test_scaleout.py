"""Scale-out: the same flow on a separate-process Dask cluster; an unreachable scheduler."""

import time

import numpy as np
import pytest
import yaml

from pipeline.demo import make_demo_data


def _config(tmp_path, data, output, address=None):
    config = {
        "source": {"path": str(data), "passthrough": ["id"]},
        "model": {"n_components": [2, 3, 4], "covariance_type": ["full", "diag"],
                  "random_state": 0},
        "cluster": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"},
        "output": {"path": str(output), "mode": "overwrite"},
    }
    if address:
        config["cluster"]["address"] = address
    path = tmp_path / f"{output.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_fit_flow_on_an_existing_cluster_gives_the_embedded_model(prefect_harness, tmp_path,
                                                                 process_cluster):
    from flows.fit import fit_flow

    address, processes = process_cluster
    data = tmp_path / "data"
    make_demo_data(data, n_rows=9000, n_partitions=4, n_features=3, n_clusters=3, seed=2)
    remote = fit_flow(str(_config(tmp_path, data, tmp_path / "remote", address)))
    embedded = fit_flow(str(_config(tmp_path, data, tmp_path / "embedded")))
    assert remote["model_id"] == embedded["model_id"]
    a = np.load(tmp_path / "remote" / "model" / "params.npz", allow_pickle=False)
    b = np.load(tmp_path / "embedded" / "model" / "params.npz", allow_pickle=False)
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])
    # the run never stops a cluster it did not create
    assert all(p.poll() is None for p in processes)


def test_unreachable_scheduler_fails_within_its_timeout(tmp_path):
    import socket

    from pipeline.cluster import ClusterError, connect
    from pipeline.config import Cluster

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"cluster.address: cannot reach the Dask scheduler "
                                           rf"at tcp://127.0.0.1:{port} within 2 s"):
        with connect(Cluster(address=f"tcp://127.0.0.1:{port}", connect_timeout=2)):
            pass
    assert time.monotonic() - started < 15


def test_scheduler_address_from_the_environment(monkeypatch, cluster2):
    from pipeline.cluster import connect
    from pipeline.config import Cluster

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster2.scheduler_address)
    with connect(Cluster()) as client:
        assert client.scheduler.address == cluster2.scheduler_address
    # the cluster we did not create is still running
    assert cluster2.status.name == "running"
