"""The mixlake command: bad configs and bad data fail with one clear line, nothing written."""

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flows.cli import main


def _write(folder, name, **columns):
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / name)


@pytest.fixture
def good_data(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    for i in range(3):
        X = rng.normal(size=(300, 2)) + (i % 2) * 8
        _write(folder, f"part.{i}.parquet", id=np.arange(i * 300, (i + 1) * 300), a=X[:, 0],
               b=X[:, 1])
    return folder


def _config_file(tmp_path, data, address=None, **sections):
    config = {
        "source": {"path": str(data), "passthrough": ["id"]},
        "model": {"n_components": [1, 2], "random_state": 0},
        "output": {"path": str(tmp_path / "out"), "mode": "error"},
    }
    if address:
        config["cluster"] = {"address": address}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fails(capfd, argv, *needles):
    code = main(argv)
    err = capfd.readouterr().err
    last = [line for line in err.splitlines() if line.startswith("mixlake: error")]
    assert code != 0, err
    assert last, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def _cli(api_url, *argv):
    """Run the real command in its own process against the session's Prefect server."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *argv], capture_output=True,
                          text=True, env=env, timeout=300)


def _cli_fails(api_url, argv, *needles):
    done = _cli(api_url, *argv)
    assert done.returncode != 0, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("mixlake: error")]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in errors[0], done.stderr


# ------------------------------------------------------------------ bad configs


def test_unknown_key_names_its_path(tmp_path, good_data, capfd):
    path = _config_file(tmp_path, good_data, model={"covariance_typ": "full"})
    _fails(capfd, ["validate", str(path)], "model.covariance_typ: unknown key")


@pytest.mark.parametrize("override, needle", [
    ("model.n_components=0", "model.n_components"),
    ("model.n_components=2.5", "model.n_components"),
    ("model.covariance_type=round", "model.covariance_type"),
    ("model.tol=-1", "model.tol"),
    ("model.reg_covar=-0.1", "model.reg_covar"),
    ("source.nan_policy=ignore", "source.nan_policy"),
    ("output.mode=replace", "output.mode"),
    ("cluster.n_workers=0", "cluster.n_workers"),
    ("cluster.memory_limit=lots", "cluster.memory_limit"),
    ("schedule.cron=daily", "schedule.cron"),
    ("model.n_components", "expected key.path=value"),
])
def test_bad_values_name_their_setting(tmp_path, good_data, capfd, override, needle):
    path = _config_file(tmp_path, good_data)
    _fails(capfd, ["run", str(path), "--set", override], needle)
    assert not (tmp_path / "out").exists()


def test_missing_config_file(tmp_path, capfd):
    _fails(capfd, ["run", str(tmp_path / "nope.yaml")], "config file not found")


def test_secrets_in_config_are_refused(tmp_path, good_data, capfd):
    path = _config_file(tmp_path, good_data,
                        source={"storage_options": {"secret": "abc", "key": "AKIA"}})
    _fails(capfd, ["validate", str(path)], "credentials must not be written")


def test_validate_prints_the_resolved_config_and_hash(tmp_path, good_data, capfd):
    path = _config_file(tmp_path, good_data)
    assert main(["validate", str(path), "--set", "model.n_components=[2,3]"]) == 0
    out = capfd.readouterr().out
    assert "config hash:" in out and "3 partition(s), 900 rows" in out
    assert "features: a, b" in out


# ------------------------------------------------------------------ bad data


@pytest.fixture
def address(cluster2):
    return cluster2.scheduler_address


def _bad_data_case(tmp_path, name):
    folder = tmp_path / "bad"
    rng = np.random.default_rng(1)
    base = dict(id=np.arange(50), a=rng.normal(size=50), b=rng.normal(size=50))
    if name == "missing-column":
        _write(folder, "part.0.parquet", **base)
        _write(folder, "part.1.parquet", id=np.arange(50), a=rng.normal(size=50))
        return folder, ["'b'", "part.1.parquet"]
    if name == "non-numeric":
        _write(folder, "part.0.parquet", **{**base, "b": np.array(["x"] * 50)})
        return folder, ["source.features", "'b'"]
    if name == "boolean":
        _write(folder, "part.0.parquet", **{**base, "b": np.ones(50, dtype=bool)})
        return folder, ["'b'", "not numeric"]
    if name == "nan":
        b = base["b"].copy()
        b[7] = np.nan
        _write(folder, "part.0.parquet", **{**base, "b": b})
        return folder, ["part.0.parquet", "'b'", "nan_policy"]
    if name == "inf":
        a = base["a"].copy()
        a[3] = np.inf
        _write(folder, "part.0.parquet", **{**base, "a": a})
        return folder, ["part.0.parquet", "'a'", "infinite"]
    if name == "empty-glob":
        folder.mkdir()
        return folder / "*.parquet", ["no Parquet files match"]
    if name == "corrupt":
        _write(folder, "part.0.parquet", **base)
        (folder / "part.1.parquet").write_bytes(b"not parquet at all" * 10)
        return folder, ["part.1.parquet", "not a readable Parquet file"]
    if name == "constant":
        _write(folder, "part.0.parquet", **{**base, "b": np.full(50, 3.5)})
        return folder, ["'b'", "constant", "remove it from source.features"]
    if name == "duplicates-only":
        _write(folder, "part.0.parquet", id=np.arange(50), a=np.ones(50), b=np.ones(50))
        return folder, ["constant"]
    if name == "few-distinct":
        rows = np.tile([[0.0, 1.0], [2.0, 5.0], [7.0, 3.0]], (20, 1))
        _write(folder, "part.0.parquet", id=np.arange(60), a=rows[:, 0], b=rows[:, 1])
        return folder, ["only 3 distinct", "model.n_components"]
    if name == "more-components-than-rows":
        _write(folder, "part.0.parquet", **base)
        return folder, ["model.n_components", "2000 components", "only 50 row(s)"]
    if name == "huge-values":
        a = base["a"].copy()
        a[:3] = 1e308
        _write(folder, "part.0.parquet", **{**base, "a": a})
        return folder, ["every candidate failed", "scale the input data"]
    if name == "no-rows":
        _write(folder, "part.0.parquet", id=np.arange(0), a=np.zeros(0), b=np.zeros(0))
        return folder, ["no rows"]
    raise AssertionError(name)


@pytest.mark.parametrize("case", ["missing-column", "non-numeric", "boolean", "nan", "inf",
                                  "empty-glob", "corrupt", "no-rows", "constant",
                                  "duplicates-only", "few-distinct",
                                  "more-components-than-rows", "huge-values"])
def test_bad_data_fails_with_its_message_and_writes_nothing(prefect_harness, tmp_path,
                                                            address, case):
    data, needles = _bad_data_case(tmp_path, case)
    model = {"few-distinct": {"n_components": [2, 5]},
             "more-components-than-rows": {"n_components": 2000}}.get(case, {})
    path = _config_file(tmp_path, data, address, source={"features": ["a", "b"]}, model=model)
    before = sorted(p.name for p in tmp_path.iterdir())
    _cli_fails(prefect_harness, ["run", str(path)], *needles)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]
    # no checkpoint, staging, previous or lock left: a rerun could not change the outcome
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_score_with_a_damaged_model_fails_naming_the_file(prefect_harness, tmp_path,
                                                          good_data, address):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{not json")
    (model / "params.npz").write_bytes(b"")
    path = _config_file(tmp_path, good_data, address, score={"model_path": str(model)})
    _cli_fails(prefect_harness, ["score", str(path)], "model.json", "not valid JSON")
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path, good_data):
    path = _config_file(tmp_path, good_data, model={"n_components": 0})
    with pytest.raises(ValueError, match="model.n_components"):
        main(["--debug", "validate", str(path)])


def test_run_prints_a_summary(prefect_harness, tmp_path, good_data, address):
    path = _config_file(tmp_path, good_data, address)
    done = _cli(prefect_harness, "run", str(path))
    assert done.returncode == 0, done.stderr
    assert "chosen" in done.stdout and "passes over the data" in done.stdout
    assert "iteration 1: log-likelihood" in done.stderr  # progress: each EM iteration
    assert (tmp_path / "out" / "_SUCCESS.json").is_file()
    # mode: error refuses a second run, and says what to do
    _cli_fails(prefect_harness, ["run", str(path)], "already exists", "output.mode")


@pytest.mark.slow
def test_demo_runs_on_the_embedded_default(prefect_harness, tmp_path):
    done = _cli(prefect_harness, "demo", "--dir", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stderr
    assert "chosen" in done.stdout and "report.md" in done.stdout
    assert (tmp_path / "demo" / "output" / "report" / "bic.png").is_file()


def _plain(*argv):
    """The real command without Prefect (no server configured), output not a terminal."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *argv], capture_output=True,
                          text=True, env=env, timeout=300)


def _messages(stderr):
    """The log lines without their time stamps."""
    return [line.split(" ", 1)[1] for line in stderr.splitlines()
            if line[:2].isdigit() and line[2:3] == ":"]


@pytest.mark.parametrize("way", ["plain", "prefect"])
def test_every_message_is_printed_once(prefect_harness, tmp_path, good_data, address, way):
    path = _config_file(tmp_path, good_data, address, model={"n_components": [1, 2, 3]})
    done = (_plain("run", str(path)) if way == "plain"
            else _cli(prefect_harness, "run", str(path)))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "pipeline." in line]
    assert lines, done.stderr
    bodies = [line.split("pipeline.", 1)[1] for line in lines]
    assert len(bodies) == len(set(bodies)), done.stderr  # no message twice
    assert sum("selected " in body for body in bodies) == 1
    # the summary's time line adds up to the process's wall time
    time_line = next(line for line in done.stdout.splitlines() if line.strip().startswith("time"))
    parts, total = time_line.split(";")
    seconds = [float(p.split()[-2]) for p in parts.split("time", 1)[1].split(",")]
    assert abs(sum(seconds) - float(total.split()[1])) <= 0.1 * len(seconds)


def test_quiet_prints_the_summary_and_nothing_else(tmp_path, good_data, address):
    path = _config_file(tmp_path, good_data, address)
    done = _plain("-q", "run", str(path))
    assert done.returncode == 0, done.stderr
    assert _messages(done.stderr) == []
    assert "chosen" in done.stdout
    verbose = _plain("run", "-v", str(path), "--set", "output.mode=overwrite")
    assert verbose.returncode == 0, verbose.stderr
    assert any("DEBUG" in line for line in verbose.stderr.splitlines()), verbose.stderr


def test_a_run_imports_neither_scikit_learn_nor_pandas(tmp_path, good_data):
    # importing them (scipy.stats behind scikit-learn) took 2 s of a 1,000,000-row run of
    # 6.5 s on this machine: the run's model is a FittedMixture, its k-means numpy's, and
    # Arrow columns become numpy arrays from their buffers (pipeline.source)
    path = _config_file(tmp_path, good_data, output={"path": str(tmp_path / "out"),
                                                     "columns": ["probabilities",
                                                                 "log_density", "outlier"]})
    code = ("import sys; from flows.cli import main; main(sys.argv[1:]); "
            "print(sorted(m for m in ('sklearn', 'pandas', 'scipy.stats') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}

    def command(*argv):
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                              text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1]

    assert command("run", str(path)) == "[]"
    assert (tmp_path / "out" / "_SUCCESS.json").is_file()
    # the nightly scoring of the saved model does not import scikit-learn either
    # (store.load_model(estimator=False)); it does import pandas: the monitoring history's
    # row is built with pa.Table.from_pylist, and any pa.array of Python values imports it
    scoring = tmp_path / "score.yaml"
    scoring.write_text(yaml.safe_dump({
        "source": {"path": str(good_data), "passthrough": ["id"]},
        "output": {"path": str(tmp_path / "scores")},
        "score": {"model_path": str(tmp_path / "out" / "model")}}))
    assert command("score", str(scoring)) == "['pandas']"
    assert (tmp_path / "scores" / "_SUCCESS.json").is_file()


def test_a_memory_limit_below_the_process_never_pauses_the_worker_threads(tmp_path,
                                                                          good_data):
    # the embedded workers are threads: each watches the whole process's memory, which
    # the run's own libraries already hold more than 80 % of here; a paused thread would
    # wait forever for memory only the run can free (it hung a flow test): they spill
    # instead, and the run ends
    path = _config_file(tmp_path, good_data, cluster={"memory_limit": "64MiB"})
    done = _plain("run", str(path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "_SUCCESS.json").is_file()
