"""Reliability: a killed worker, a killed run, concurrent runs, output safety, no pickle."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.demo import make_demo_data


def _cli_env(api_url):
    return {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _config(tmp_path, data, output, address, **model):
    config = {
        "source": {"path": str(data), "passthrough": ["id"]},
        "model": {"n_components": [2, 3, 4], "covariance_type": ["full", "diag"],
                  "random_state": 0, **model},
        "cluster": {"address": address},
        "output": {"path": str(output), "mode": "overwrite"},
    }
    path = tmp_path / f"{Path(output).name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _params(output):
    with np.load(Path(output) / "model" / "params.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _assert_same_model(a, b):
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliability") / "data"
    make_demo_data(folder, n_rows=40_000, n_partitions=4, n_features=3, n_clusters=3, seed=9)
    return folder


# ------------------------------------------------------------------ worker loss


@pytest.mark.slow

def _kill_when(process, marker):
    """SIGKILL the run's process group at the first stderr line containing ``marker``
    (and in any case before returning); the lines read so far."""
    seen = []
    try:
        for line in process.stderr:
            seen.append(line)
            if marker in line:
                os.killpg(process.pid, signal.SIGKILL)
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return seen

def test_a_worker_killed_mid_fit_gives_the_same_model(process_cluster, data):
    from distributed import Client

    from pipeline import GaussianMixture, source
    from pipeline.config import Source

    address, processes = process_cluster
    # tol=1e-10 converges within max_iter: no ConvergenceWarning, and every pass counts
    settings = dict(n_components=3, covariance_type="full", tol=1e-10, max_iter=200,
                    random_state=0, persist=True)
    with Client(address) as client:
        X = source.load(Source(path=str(data))).X
        undisturbed = GaussianMixture(**settings).fit(X)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[-1]

        class KillAfterFirstIteration(logging.Handler):
            killed = False

            def emit(self, record):
                if not self.killed and "iteration 1:" in record.getMessage():
                    os.kill(victim, signal.SIGKILL)
                    self.killed = True

        handler = KillAfterFirstIteration()
        logger = logging.getLogger("pipeline.mixture")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            disturbed = GaussianMixture(**settings).fit(X)
        finally:
            logger.removeHandler(handler)
        assert handler.killed
        deadline = time.monotonic() + 30
        while len(client.scheduler_info()["workers"]) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(client.scheduler_info()["workers"]) == 1  # the worker is gone for good
    for name in ["weights_", "means_", "covariances_", "precisions_cholesky_"]:
        np.testing.assert_array_equal(getattr(disturbed, name), getattr(undisturbed, name))
    assert disturbed.lower_bounds_ == undisturbed.lower_bounds_


# ------------------------------------------------------------------ killed run


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint(prefect_harness, tmp_path, data, cluster2):
    address = cluster2.scheduler_address
    grid = dict(tol=0, max_iter=25)
    output = tmp_path / "out"
    config = _config(tmp_path, data, output, address, **grid)
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=_cli_env(prefect_harness), start_new_session=True)
    seen = _kill_when(process, "iteration 4:")
    assert any("iteration 4:" in line for line in seen), "".join(seen)
    assert not (output / "_SUCCESS.json").exists()
    work = [p for p in tmp_path.iterdir() if p.name.startswith(".out.work-")]
    assert len(work) == 1 and (work[0] / "state.json").is_file()

    rerun = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)],
                           capture_output=True, text=True, env=_cli_env(prefect_harness),
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    resumed = [line for line in rerun.stderr.splitlines() if "resumed from iteration" in line]
    assert resumed, rerun.stderr
    assert int(resumed[0].split("resumed from iteration ")[1].split()[0]) >= 3
    assert not work[0].exists()  # the checkpoint is dropped once the run is published

    reference = tmp_path / "reference"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run",
                           str(_config(tmp_path, data, reference, address, **grid))],
                          capture_output=True, text=True, env=_cli_env(prefect_harness),
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed" not in done.stderr
    _assert_same_model(output, reference)


@pytest.mark.slow
def test_a_run_killed_while_writing_leaves_the_previous_output(prefect_harness, tmp_path, data,
                                                               cluster2):
    address = cluster2.scheduler_address
    output = tmp_path / "out"
    config = _config(tmp_path, data, output, address, n_components=[2, 3])
    first = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)],
                           capture_output=True, text=True, env=_cli_env(prefect_harness),
                           timeout=300)
    assert first.returncode == 0, first.stderr
    before = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config),
                                "--set", "model.covariance_type=spherical"],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=_cli_env(prefect_harness), start_new_session=True)
    _kill_when(process, "writing 4 partition(s) into")
    assert process.returncode == -signal.SIGKILL
    after = {p.relative_to(output): p.read_bytes() for p in output.rglob("*") if p.is_file()}
    assert after == before  # byte for byte, and nothing new inside the output
    # whatever the killed run had written is in its hidden staging folder only
    assert all(p.name.startswith(".") for p in tmp_path.iterdir() if "out" in p.name
               and p != output and p.is_dir())


def _plain_env(**extra):
    """The command without Prefect (no server configured): the direct run path."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, **extra}


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("point", ["publish:staged", "publish:exchanged"])
def test_a_run_killed_in_the_publish_step_leaves_a_complete_output(tmp_path, data, cluster2,
                                                                   point):
    """SIGKILL at each step of the commit: the output is the previous run byte for byte
    (before the exchange) or the complete new one (after it); the next run repairs what
    was left, says so, and succeeds with the undisturbed model."""
    address = cluster2.scheduler_address
    output = tmp_path / "out"
    config = _config(tmp_path, data, output, address, n_components=[2, 3])
    first = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)],
                           capture_output=True, text=True, env=_plain_env(), timeout=300)
    assert first.returncode == 0, first.stderr
    before = _tree(output)
    changed = ["--set", "model.covariance_type=spherical"]
    killed = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config), *changed],
                            capture_output=True, text=True, timeout=300,
                            env=_plain_env(MIXLAKE_TEST_KILL_AT=point))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after = _tree(output)
    if point == "publish:staged":
        assert after == before
    else:
        manifest = json.loads(after["_SUCCESS.json"])
        assert manifest["config_hash"] != json.loads(before["_SUCCESS.json"])["config_hash"]
        for part in manifest["partitions"]:
            assert f"assignments/{part['part']}" in after
        assert {"model/params.npz", "model/model.json", "config.yaml"} <= after.keys()
    rerun = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config), *changed],
                           capture_output=True, text=True, env=_plain_env(), timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "left by the interrupted run" in rerun.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out", "out.yaml"]
    reference = tmp_path / "reference"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run",
                           str(_config(tmp_path, data, reference, address, n_components=[2, 3],
                                       covariance_type=["spherical"]))],
                          capture_output=True, text=True, env=_plain_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    _assert_same_model(output, reference)


@pytest.mark.slow
def test_a_second_run_on_the_same_output_is_refused_at_once(tmp_path, data, cluster2):
    output = tmp_path / "out"
    config = _config(tmp_path, data, output, cluster2.scheduler_address, tol=0, max_iter=40)
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=_plain_env())
    seen = []
    for line in process.stderr:  # the first run is fitting
        seen.append(line)
        if "iteration 1:" in line:
            break
    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)],
                            capture_output=True, text=True, env=_plain_env(), timeout=120)
    refused_in = time.monotonic() - started
    rest, _ = process.communicate(timeout=300)
    assert process.returncode == 0, "".join(seen) + rest
    assert second.returncode == 2, second.stderr
    assert "is being written by run" in second.stderr and f"pid {process.pid}" in second.stderr
    assert "iteration" not in second.stderr  # refused before any work
    assert refused_in < 60
    assert (output / "_SUCCESS.json").is_file()


def test_a_checkpoint_of_other_input_is_not_used(tmp_path, data):
    from pipeline.checkpoint import Checkpoint
    from pipeline.config import Output
    from pipeline.mixture._em import EMState

    checkpoint = Checkpoint(Output(path=str(tmp_path / "out")), "hash-a")
    state = EMState("diag", 1e-6, 1e-3, 10, np.ones(2) / 2, np.zeros((2, 3)), np.ones((2, 3)),
                    np.ones((2, 3)), name="diag-k2-init0")
    checkpoint.save([state], [None], "inputs-1", passes=7)
    payload, arrays = checkpoint.load("inputs-1")
    assert payload["passes"] == 7 and payload["candidates"][0]["name"] == "diag-k2-init0"
    assert checkpoint.load("inputs-2") is None  # the data changed
    assert Checkpoint(Output(path=str(tmp_path / "out")), "hash-b").load("inputs-1") is None


# ------------------------------------------------------------------ concurrency


@pytest.mark.slow
def test_three_concurrent_runs_match_their_runs_alone(prefect_harness, tmp_path, data,
                                                      cluster2):
    address = cluster2.scheduler_address
    variants = [dict(covariance_type=["full"]), dict(covariance_type=["diag", "spherical"]),
                dict(n_components=[3], covariance_type=["tied"], n_init=2)]
    alone, together = [], []
    for i, model in enumerate(variants):
        alone.append(_config(tmp_path, data, tmp_path / f"alone{i}", address, **model))
        together.append(_config(tmp_path, data, tmp_path / f"together{i}", address, **model))
    for config in alone:
        done = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)],
                              capture_output=True, text=True, env=_cli_env(prefect_harness),
                              timeout=300)
        assert done.returncode == 0, done.stderr
    processes = [subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env=_cli_env(prefect_harness)) for config in together]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    for i in range(3):
        _assert_same_model(tmp_path / f"alone{i}", tmp_path / f"together{i}")
        a = json.loads((tmp_path / f"alone{i}" / "_SUCCESS.json").read_text())
        b = json.loads((tmp_path / f"together{i}" / "_SUCCESS.json").read_text())
        assert a["model_id"] == b["model_id"]


# ------------------------------------------------------------------ output safety


def test_output_inside_the_input_is_refused_before_any_work(tmp_path, data):
    from pipeline.config import parse_config
    from pipeline.run import OutputExistsError, check_output

    for output in [data, data / "results", data.parent]:
        config = parse_config({"source": {"path": str(data)}, "output": {"path": str(output)}})
        with pytest.raises(OutputExistsError, match="overlaps the input"):
            check_output(config)


def test_unwritable_output_location_is_refused(tmp_path, data):
    from pipeline.config import parse_config
    from pipeline.run import check_output

    if os.geteuid() == 0:
        target = Path("/proc/mixlake-out")  # not even root can create folders here
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    config = parse_config({"source": {"path": str(data)}, "output": {"path": str(target)}})
    with pytest.raises(PermissionError, match="output.path"):
        check_output(config)


def test_no_pickle_on_disk(prefect_harness, tmp_path, data, cluster2):
    from flows.fit import fit_flow

    output = tmp_path / "out"
    fit_flow(str(_config(tmp_path, data, output, cluster2.scheduler_address,
                         n_components=[2], covariance_type=["full"])))
    for path in output.rglob("*"):
        assert path.suffix not in {".pkl", ".pickle", ".joblib"}, path
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                assert all(npz[k].dtype != object for k in npz.files)
        elif path.is_file():
            assert not path.read_bytes().startswith(b"\x80\x04"), path  # pickle protocol 4
