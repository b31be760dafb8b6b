"""Object storage: fit and score flows on a real S3-protocol server (moto) on 127.0.0.1."""

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from s3server import moto_s3_server

from pipeline.demo import make_demo_data

SECRET = "mixlake-test-secret-7f3a9c"
BUCKET = "lake"


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on loopback, credentials only in the environment."""
    with moto_s3_server() as endpoint:
        yield from _s3_environment(endpoint)


def _s3_environment(endpoint):
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}
    # set before any LocalCluster of the run starts, so its worker processes inherit them
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=SECRET,
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    import boto3
    import s3fs

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    # fsspec keeps filesystems by their arguments, not by the endpoint in the environment:
    # one made against another module's (stopped) server must not be handed out here
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield endpoint
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def s3_data(s3_server, tmp_path_factory):
    import s3fs

    local = tmp_path_factory.mktemp("s3data")
    make_demo_data(local, n_rows=6000, n_partitions=3, n_features=2, n_clusters=3, seed=5)
    fs = s3fs.S3FileSystem()
    for path in sorted(local.glob("*.parquet")):
        fs.put_file(str(path), f"{BUCKET}/input/{path.name}")
    return f"s3://{BUCKET}/input/"


def _config(tmp_path, source, output, **extra):
    config = {
        "source": {"path": source, "passthrough": ["id"]},
        "model": {"n_components": [2, 3], "covariance_type": ["full", "spherical"],
                  "random_state": 0},
        "cluster": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"},
        "output": {"path": output, "mode": "overwrite"},
        **extra,
    }
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _s3():
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem()


@pytest.mark.slow
def test_fit_and_score_on_s3_manifest_last_and_failures_harmless(
        prefect_harness, s3_data, tmp_path, monkeypatch, caplog):
    from flows.fit import fit_flow
    from flows.score import score_flow
    from pipeline import store

    output = f"s3://{BUCKET}/results/nightly"
    config = _config(tmp_path, s3_data, output)
    first = fit_flow(str(config))
    fs = _s3()
    manifest = json.loads(fs.cat_file(f"{BUCKET}/results/nightly/_SUCCESS.json"))
    prefix = manifest["prefix"]
    assert prefix == f"runs/{first['run_id']}"
    run_root = f"{BUCKET}/results/nightly/{prefix}"
    for name in ["assignments/part.0.parquet", "assignments/part.2.parquet", "model/model.json",
                 "model/params.npz", "report/report.md", "report/bic.png", "config.yaml"]:
        assert fs.exists(f"{run_root}/{name}"), name
    # the manifest was written after every file of the run
    manifest_time = fs.info(f"{BUCKET}/results/nightly/_SUCCESS.json")["LastModified"]
    assert all(fs.info(f)["LastModified"] <= manifest_time for f in fs.find(run_root))
    assert manifest["rows_in"] == manifest["rows_out"] == 6000
    with fs.open(f"{run_root}/assignments/part.1.parquet", "rb") as handle:
        assert pq.read_table(handle).num_rows == 2000

    # a failed run leaves no manifest of its own: the previous one stays in force
    def broken_save(*args, **kwargs):
        raise OSError("injected failure while writing the model")

    monkeypatch.setattr(store, "save_model", broken_save)
    with pytest.raises(OSError, match="injected"):
        fit_flow(str(config), ["model.covariance_type=diag"])
    monkeypatch.undo()
    assert json.loads(fs.cat_file(f"{BUCKET}/results/nightly/_SUCCESS.json")) == manifest
    runs = fs.ls(f"{BUCKET}/results/nightly/runs")
    assert [posixpath_name(r) for r in runs] == [first["run_id"]]  # the failed prefix is gone

    # the score flow finds the model through the manifest and reproduces the assignments
    score_config = _config(tmp_path, s3_data, f"s3://{BUCKET}/results/scored",
                           score={"model_path": output})
    scored = score_flow(str(score_config))
    assert scored["model_id"] == first["model_id"]
    scored_manifest = json.loads(fs.cat_file(f"{BUCKET}/results/scored/_SUCCESS.json"))
    for i in range(3):
        with fs.open(f"{run_root}/assignments/part.{i}.parquet", "rb") as a, \
                fs.open(f"{BUCKET}/results/scored/{scored_manifest['prefix']}/assignments/"
                        f"part.{i}.parquet", "rb") as b:
            assert pq.read_table(a).equals(pq.read_table(b))

    # credentials never reach the output or the logs
    for path in fs.find(f"{BUCKET}/results"):
        assert SECRET.encode() not in fs.cat_file(path), path
    assert SECRET not in caplog.text


def posixpath_name(path):
    return Path(path).name


def test_s3_config_must_not_carry_credentials(tmp_path):
    from pipeline.config import ConfigError, load_config

    path = _config(tmp_path, "s3://lake/input/", "s3://lake/out")
    raw = yaml.safe_load(path.read_text())
    raw["source"]["storage_options"] = {"client_kwargs": {"aws_secret_access_key": "x"}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="credentials"):
        load_config(path)


def test_manifest_resolution_for_a_model_path(s3_server):
    from pipeline.output import resolve_model_path

    fs = _s3()
    fs.pipe_file(f"{BUCKET}/m/_SUCCESS.json", json.dumps({"prefix": "runs/r1"}).encode())
    fs.pipe_file(f"{BUCKET}/m/runs/r1/model/model.json", b"{}")
    assert resolve_model_path(f"s3://{BUCKET}/m") == f"s3://{BUCKET}/m/runs/r1/model"
    assert resolve_model_path(f"s3://{BUCKET}/m/model") == f"s3://{BUCKET}/m/runs/r1/model"
    assert resolve_model_path(f"s3://{BUCKET}/m/runs/r1/model") == \
        f"s3://{BUCKET}/m/runs/r1/model"


@pytest.mark.slow
def test_a_run_killed_before_its_manifest_leaves_the_previous_run_in_force(s3_data, tmp_path):
    """SIGKILL between writing the run's files and writing _SUCCESS.json: readers still
    resolve the previous run; the next run publishes and removes the orphaned prefix."""
    import signal
    import subprocess
    import sys

    output = f"s3://{BUCKET}/results/killed"
    config = _config(tmp_path, s3_data, output)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    first = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    fs = _s3()
    manifest = fs.cat_file(f"{BUCKET}/results/killed/_SUCCESS.json")
    killed = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config), "--set",
                             "model.covariance_type=diag"], capture_output=True, text=True,
                            env={**env, "MIXLAKE_TEST_KILL_AT": "publish:staged"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    fs = _s3()
    assert fs.cat_file(f"{BUCKET}/results/killed/_SUCCESS.json") == manifest
    runs = {posixpath_name(r) for r in fs.ls(f"{BUCKET}/results/killed/runs")}
    assert len(runs) == 2  # the killed run's files, never named by a manifest
    rerun = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config), "--set",
                            "model.covariance_type=diag"], capture_output=True, text=True,
                           env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    fs = _s3()
    published = json.loads(fs.cat_file(f"{BUCKET}/results/killed/_SUCCESS.json"))
    kept = {posixpath_name(r) for r in fs.ls(f"{BUCKET}/results/killed/runs")}
    # the new run and the previous one (a reader may still be on it); the orphan is gone
    assert kept == {published["prefix"].split("/")[1], json.loads(manifest)["run_id"]}
