"""End-to-end: demo data -> Prefect fit flow -> outputs; score flow; reruns; failures."""

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.demo import make_demo_data


def _config(tmp_path, data, output, address=None, **model):
    config = {
        "name": "test",
        "source": {"path": str(data), "features": ["x0", "x1", "x2"], "passthrough": ["id"]},
        "model": {"n_components": {"min": 1, "max": 5},
                  "covariance_type": ["full", "diag"], "random_state": 0, **model},
        "cluster": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"},
        "output": {"path": str(output), "mode": "overwrite"},
    }
    if address:
        config["cluster"]["address"] = address
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo") / "data"
    truth = make_demo_data(folder, n_rows=12_000, n_partitions=5, n_features=3, n_clusters=3,
                           seed=4)
    # an empty partition is allowed and must come out empty
    table = pq.read_table(folder / "part.0.parquet").slice(0, 0)
    pq.write_table(table, folder / "part.5.parquet")
    return folder, truth


def _tree_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _assignments(output):
    parts = sorted((Path(output) / "assignments").glob("part.*.parquet"),
                   key=lambda p: int(p.name.split(".")[1]))
    return [pq.read_table(p) for p in parts]


def test_fit_flow_end_to_end_on_embedded_cluster(prefect_harness, demo_data, tmp_path):
    from flows.fit import fit_flow

    data, truth = demo_data
    output = tmp_path / "out"
    summary = fit_flow(str(_config(tmp_path, data, output)))
    for name in ["_SUCCESS.json", "config.yaml", "model/model.json", "model/params.npz",
                 "report/report.json", "report/report.md", "report/bic.png",
                 "report/clusters.png"]:
        assert (output / name).is_file(), name
    manifest = json.loads((output / "_SUCCESS.json").read_text())
    inputs = sorted(data.glob("part.*.parquet"), key=lambda p: int(p.name.split(".")[1]))
    tables = _assignments(output)
    assert len(tables) == len(inputs) == len(manifest["partitions"])
    for source, table, counts in zip(inputs, tables, manifest["partitions"]):
        ids = pq.read_table(source, columns=["id"]).column("id")
        assert table.column("id").equals(ids)  # same rows, same order
        assert counts["rows_in"] == counts["rows_out"] == table.num_rows
        if table.num_rows == 0:
            continue
        proba = np.column_stack([table.column(f"prob_{k}").to_numpy() for k in range(3)])
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
        assert table.schema.field("cluster").type == "int32"
        np.testing.assert_array_equal(table.column("cluster").to_numpy(), proba.argmax(axis=1))
        assert np.all(np.isfinite(table.column("log_density").to_numpy()))
    assert summary["chosen"].endswith("k3-init0")  # BIC finds the 3 true clusters
    assert manifest["rows_in"] == manifest["rows_out"] == len(truth)
    labels = np.concatenate([t.column("cluster").to_numpy() for t in tables])
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) > 0.99
    report = json.loads((output / "report" / "report.json").read_text())
    assert report["passes"] == summary["passes"] and len(report["candidates"]) == 10

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["candidates", "bic-report"])))
    kinds = {a.key: a.type for a in artifacts}
    assert kinds == {"candidates": "table", "bic-report": "markdown"}


def test_the_flow_and_the_plain_run_write_the_same_output(prefect_harness, demo_data,
                                                          tmp_path, cluster2):
    """The command runs the steps directly unless Prefect is configured; the flow runs the
    same steps as tasks: the same data files, bit for bit."""
    from flows.fit import fit_flow
    from pipeline import run
    from pipeline.config import load_config

    data, _ = demo_data
    outputs = {}
    for way in ("flow", "plain"):
        path = _config(tmp_path, data, tmp_path / way, cluster2.scheduler_address,
                       n_components=[2, 3], covariance_type=["full", "diag"])
        if way == "flow":
            summary = fit_flow(str(path))
        else:
            summary = run.execute(load_config(path), run.FIT)
        assert summary["chosen"].endswith("k3-init0")
        outputs[way] = {name: content for name, content in _tree_bytes(tmp_path / way).items()
                        if name.startswith(("assignments/", "model/params.npz"))}
    assert len(outputs["flow"]) == 7  # six assignment files and the parameters
    assert outputs["flow"] == outputs["plain"]


def test_rerun_is_identical_and_mode_error_refuses(prefect_harness, demo_data, tmp_path,
                                                    cluster2):
    from flows.fit import fit_flow

    data, _ = demo_data
    first, second = tmp_path / "first", tmp_path / "second"
    address = cluster2.scheduler_address
    fit_flow(str(_config(tmp_path, data, first, address)))
    fit_flow(str(_config(tmp_path, data, second, address)))
    for a, b in zip(_assignments(first), _assignments(second)):
        assert a.equals(b)
    assert (first / "model" / "params.npz").read_bytes() == \
        (second / "model" / "params.npz").read_bytes()
    m1 = json.loads((first / "model" / "model.json").read_text())
    m2 = json.loads((second / "model" / "model.json").read_text())
    assert m1["model_id"] == m2["model_id"]

    before = _tree_bytes(first)
    from pipeline.run import OutputExistsError

    config = yaml.safe_load(_config(tmp_path, data, first, address).read_text())
    config["output"]["mode"] = "error"
    refusing = tmp_path / "refusing.yaml"
    refusing.write_text(yaml.safe_dump(config))
    with pytest.raises(OutputExistsError, match="already exists"):
        fit_flow(str(refusing))
    assert _tree_bytes(first) == before


def test_failure_while_writing_leaves_previous_output_intact(prefect_harness, demo_data,
                                                              tmp_path, cluster2, monkeypatch):
    from flows.fit import fit_flow
    from pipeline import store

    data, _ = demo_data
    output = tmp_path / "out"
    config = _config(tmp_path, data, output, cluster2.scheduler_address)
    fit_flow(str(config))
    before = _tree_bytes(output)

    def broken_save(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(store, "save_model", broken_save)
    with pytest.raises(OSError, match="injected"):
        fit_flow(str(config), ["model.covariance_type=spherical"])
    assert _tree_bytes(output) == before
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_score_flow_reproduces_fit_assignments(prefect_harness, demo_data, tmp_path,
                                               cluster2):
    from flows.fit import fit_flow
    from flows.score import score_flow

    data, _ = demo_data
    address = cluster2.scheduler_address
    fitted = tmp_path / "fit"
    fit_flow(str(_config(tmp_path, data, fitted, address)))
    config = yaml.safe_load(_config(tmp_path, data, tmp_path / "scored", address).read_text())
    config["score"] = {"model_path": str(fitted / "model")}
    path = tmp_path / "score.yaml"
    path.write_text(yaml.safe_dump(config))
    summary = score_flow(str(path))
    assert summary["rows_in"] == summary["rows_out"] == 12_000
    for a, b in zip(_assignments(fitted), _assignments(tmp_path / "scored")):
        assert a.equals(b)

    # a model applied to other feature columns is refused
    config["source"]["features"] = ["x0", "x2", "x1"]
    config["output"]["path"] = str(tmp_path / "refused")
    path.write_text(yaml.safe_dump(config))
    from pipeline.storage import DataError

    with pytest.raises(DataError, match="differ from the model"):
        score_flow(str(path))
    assert not (tmp_path / "refused").exists()


def test_skip_if_complete(prefect_harness, demo_data, tmp_path, cluster2):
    from flows.fit import fit_flow

    data, _ = demo_data
    output = tmp_path / "out"
    config = yaml.safe_load(_config(tmp_path, data, output, cluster2.scheduler_address)
                            .read_text())
    config["output"]["mode"] = "skip-if-complete"
    path = tmp_path / "skip.yaml"
    path.write_text(yaml.safe_dump(config))
    assert not fit_flow(str(path)).get("skipped")
    stamp = os.stat(output / "_SUCCESS.json").st_mtime_ns
    assert fit_flow(str(path))["skipped"]
    assert os.stat(output / "_SUCCESS.json").st_mtime_ns == stamp
    # another config hash is not "complete": it runs again
    assert not fit_flow(str(path), ["model.max_iter=50"]).get("skipped")
    assert yaml.safe_load((output / "config.yaml").read_text())["model"]["max_iter"] == 50


def test_reading_is_retried_on_a_transient_error_but_bad_data_is_not(
        prefect_harness, demo_data, tmp_path, cluster2, monkeypatch):
    from flows.fit import fit_flow
    from pipeline import run
    from pipeline.storage import DataError

    data, _ = demo_data
    config = _config(tmp_path, data, tmp_path / "out", cluster2.scheduler_address,
                     n_components=[2], covariance_type=["diag"])
    real = run.inspect_input
    calls = []

    def flaky(config):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("connection reset by peer (injected)")
        return real(config)

    monkeypatch.setattr(run, "inspect_input", flaky)
    assert fit_flow(str(config))["chosen"]
    assert len(calls) == 2  # retried once, then read

    def bad(config):
        calls.append(1)
        raise DataError("part.0.parquet: column 'x' is broken (injected)")

    calls.clear()
    monkeypatch.setattr(run, "inspect_input", bad)
    with pytest.raises(DataError, match="injected"):
        fit_flow(str(config))
    assert len(calls) == 1  # a bad input is not retried


# ------------------------------------------------------------------ deployments


def _scheduled_config(tmp_path, data, **schedule):
    path = _config(tmp_path, data, tmp_path / "out")
    config = yaml.safe_load(path.read_text())
    config["schedule"] = schedule
    path.write_text(yaml.safe_dump(config))
    return path


def test_serve_takes_its_schedule_from_the_config(demo_data, tmp_path, monkeypatch):
    from flows import deploy
    from pipeline.config import ConfigError

    served = []
    monkeypatch.setattr(deploy.fit_flow, "serve", lambda **kwargs: served.append(kwargs))
    path = _scheduled_config(tmp_path, demo_data[0], cron="0 3 * * *",
                             timezone="Europe/Berlin")
    deploy.serve(str(path), ["schedule.cron=30 4 * * mon-fri"])
    (settings,) = served
    (schedule,) = settings["schedules"]
    assert (schedule.cron, schedule.timezone) == ("30 4 * * mon-fri", "Europe/Berlin")
    assert settings["name"] == "test"
    assert settings["parameters"] == {"config_path": str(path.resolve()),
                                      "overrides": ["schedule.cron=30 4 * * mon-fri"]}
    with pytest.raises(ConfigError, match="schedule.cron: missing"):
        deploy.serve(str(_config(tmp_path, demo_data[0], tmp_path / "out")))
    assert len(served) == 1


def test_shipped_scheduled_configs_carry_their_cron():
    from flows.deploy import deployment_settings

    root = Path(__file__).resolve().parents[1]
    for name in ("nightly", "compose"):
        (schedule,) = deployment_settings(root / "configs" / f"{name}.yaml")["schedules"]
        assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "UTC")


def test_deploy_registers_the_config_schedule_on_the_work_pool(prefect_harness, demo_data,
                                                               tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from flows.deploy import deploy

    pool = f"mixlake-test-{tmp_path.name}"
    with get_client(sync_client=True) as client:
        with pytest.raises(ValueError, match="Could not find work pool"):
            deploy(str(_scheduled_config(tmp_path, demo_data[0], cron="0 2 * * *")),
                   work_pool=pool)
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        path = _scheduled_config(tmp_path, demo_data[0], cron="0 3 * * *", timezone="UTC")
        first = deploy(str(path), ["model.max_iter=50"], work_pool=pool)
        deployment = client.read_deployment(first)
        assert deployment.name == "test" and deployment.work_pool_name == pool
        assert deployment.entrypoint == "flows.fit.fit_flow"
        # what a worker does with it: import the flow by module, wherever mixlake is installed
        from prefect.flows import load_flow_from_entrypoint

        assert load_flow_from_entrypoint(deployment.entrypoint).name == "mixlake-fit"
        assert deployment.parameters == {"config_path": str(path.resolve()),
                                         "overrides": ["model.max_iter=50"]}
        assert [(s.schedule.cron, s.schedule.timezone, s.active)
                for s in deployment.schedules] == [("0 3 * * *", "UTC", True)]

        # a new cron in the config replaces the deployment's schedule
        again = deploy(str(path), ["schedule.cron=15 1 * * *"], work_pool=pool)
        assert again == first
        assert [s.schedule.cron for s in client.read_deployment(first).schedules] == \
            ["15 1 * * *"]
