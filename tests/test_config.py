"""Run configs: validation messages name the key, overrides, hash, secrets, paths, safe YAML."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import config as config_module
from pipeline.config import (
    ConfigError,
    apply_overrides,
    dump_config,
    load_config,
    parse_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.glob("*.yaml"))

MINIMAL = {"source": {"path": "/lake/data"}, "output": {"path": "/lake/out"}}


def raw_with(section=None, **values):
    """MINIMAL with ``values`` set in ``section`` (or at the top level)."""
    raw = copy.deepcopy(MINIMAL)
    target = raw.setdefault(section, {}) if section else raw
    target.update(values)
    return raw


def config_error(raw, **kwargs):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, **kwargs)
    return str(info.value)


def write_yaml(folder, text, name="run.yaml"):
    path = Path(folder) / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ the shipped configs


def test_configs_folder_has_configs():
    assert CONFIG_FILES, f"no *.yaml in {CONFIG_DIR}"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    config = load_config(path)
    assert config.model.component_counts()
    assert config.model.covariance_types()
    assert os.path.isabs(config.source.path) or "://" in config.source.path
    # the saved copy of a run's config reads back as the same config
    again = parse_config(yaml.safe_load(dump_config(config)), origin="dump")
    assert again == config
    assert again.config_hash() == config.config_hash()


# ------------------------------------------------------------------ unknown keys


@pytest.mark.parametrize("section, key", [
    ("model", "covariance_typ"),
    ("source", "featurs"),
    ("output", "paht"),
    ("cluster", "n_worker"),
    ("schedule", "crn"),
    (None, "modle"),
])
def test_unknown_key_is_named_with_its_path(section, key):
    message = config_error(raw_with(section, **{key: 1}), origin="run.yaml")
    path = f"{section}.{key}" if section else key
    assert message.startswith("run.yaml: invalid config")
    assert f"{path}: unknown key" in message


def test_unknown_key_suggests_the_close_name():
    message = config_error(raw_with("model", covariance_typ="full"))
    assert "did you mean 'covariance_type'" in message


def test_unknown_key_in_component_range_is_named():
    message = config_error(raw_with("model", n_components={"min": 1, "max": 3, "stepp": 2}))
    assert "model.n_components.stepp: unknown key" in message


def test_missing_required_sections_are_named():
    message = config_error({"source": {"path": "/d"}})
    assert "output: missing required key" in message
    message = config_error({"source": {}, "output": {"path": "/o"}})
    assert "source.path: missing required key" in message


def test_top_level_must_be_a_mapping():
    assert "top level must be a mapping" in config_error(["source", "output"], origin="x.yaml")


# ------------------------------------------------------------------ wrong values


@pytest.mark.parametrize("value", [0, -1, 2.5, "x", "3", [], [2, 0], [2, "x"], True,
                                   {"min": 5, "max": 2}, {"min": 0, "max": 3},
                                   {"min": "2", "max": 3}, {"min": 1, "max": 3, "step": 0}])
def test_bad_n_components_names_the_key(value):
    message = config_error(raw_with("model", n_components=value))
    assert "model.n_components" in message


def test_reversed_range_says_why():
    message = config_error(raw_with("model", n_components={"min": 5, "max": 2}))
    assert "max (2) must be >= min (5)" in message


@pytest.mark.parametrize("value", ["ful", ["full", "banana"], [], 3])
def test_bad_covariance_type_names_the_key(value):
    message = config_error(raw_with("model", covariance_type=value))
    assert "model.covariance_type" in message
    assert "full, tied, diag, spherical" in message


@pytest.mark.parametrize("section, key, value", [
    ("model", "tol", -1e-3),
    ("model", "reg_covar", -1e-6),
    ("model", "tol", float("nan")),
    ("model", "n_init", 0),
    ("model", "max_iter", -1),
    ("model", "init_params", "kmeans++"),
    ("model", "dtype", "float16"),
    ("model", "criterion", "bicc"),
    ("source", "nan_policy", "ignore"),
    ("source", "features", []),
    ("source", "features", ["a", "a"]),
    ("source", "passthrough", ["id", "id"]),
    ("output", "mode", "append"),
    ("output", "columns", ["probability"]),
    ("cluster", "n_workers", 0),
])
def test_bad_value_names_the_key(section, key, value):
    message = config_error(raw_with(section, **{key: value}))
    assert f"\n  {section}.{key}" in message


def test_passthrough_also_in_features_is_refused():
    message = config_error(raw_with("source", features=["a", "id"], passthrough=["id"]))
    assert "source.passthrough" in message and "'id'" in message


def test_weight_also_in_features_is_refused():
    message = config_error(raw_with("source", features=["a", "w"], weight="w"))
    assert "source.weight" in message and "'w'" in message and "never a feature" in message


def test_config_hash_without_weight_is_as_before_the_key_and_a_weight_changes_it():
    base = parse_config(raw_with("source"))
    assert base.source.weight is None
    dumped = base.model_dump(mode="json")
    del dumped["source"]["weight"]
    assert base.config_hash() == parse_config(dumped).config_hash()
    assert parse_config(raw_with("source", weight="w")).config_hash() != base.config_hash()


@pytest.mark.parametrize("column", ["cluster", "log_density", "prob_0", "prob_12"])
def test_passthrough_named_like_an_output_column_is_refused(column):
    message = config_error(raw_with("source", passthrough=[column]))
    assert "source.passthrough" in message and repr(column) in message


@pytest.mark.parametrize("cron", ["0 2 * *", "every night", "61 2 * * *", "0 24 * * *",
                                  "0 2 0 * *", "0 2 * 13 *", "0 2 * * 8", "0 2 * * mon-fry",
                                  "*/0 * * * *", "0 2 * * * * *", ""])
def test_bad_cron_names_the_key(cron):
    message = config_error(raw_with("schedule", cron=cron))
    assert "schedule.cron" in message


@pytest.mark.parametrize("cron, words", [
    ("0 24 * * *", "hour field '24'"),
    ("0 2 * * mon-fry", "day of week field 'mon-fry'"),
    ("0 2 * * 5L", "day of week field '5L'"),  # croniter (so Prefect) refuses it
    ("R 2 * * *", "random (R) and hashed (H)"),  # croniter takes it, Prefect refuses it
    ("0 2 * * * * *", "has 7 field(s), expected 5"),
])
def test_bad_cron_message_says_why(cron, words):
    message = config_error(raw_with("schedule", cron=cron))
    assert f"schedule.cron: {cron!r} is not a cron expression: " in message
    assert words in message


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/15 * * * *", "0 0 1,15 * mon-fri",
                                  "30 6 * jan-mar 1-5", "0 12 * * sun", "@daily"])
def test_good_cron_is_accepted(cron):
    assert parse_config(raw_with("schedule", cron=cron)).schedule.cron == cron


def test_bad_timezone_names_the_key():
    message = config_error(raw_with("schedule", cron="0 2 * * *", timezone="Mars/Olympus"))
    assert "schedule.timezone" in message


# ------------------------------------------------------------------ component grid


@pytest.mark.parametrize("value, counts", [
    (3, [3]),
    ([4, 2, 4, 1], [1, 2, 4]),
    ({"min": 2, "max": 5}, [2, 3, 4, 5]),
    ({"max": 3}, [1, 2, 3]),
    ({"min": 2, "max": 10, "step": 4}, [2, 6, 10]),
    ({"min": 1, "max": 6, "step": 2}, [1, 3, 5]),
    ({"min": 4, "max": 4}, [4]),
])
def test_component_counts(value, counts):
    assert parse_config(raw_with("model", n_components=value)).model.component_counts() == counts


@pytest.mark.parametrize("value, types", [
    ("diag", ["diag"]),
    (["full", "diag", "full"], ["full", "diag"]),
    (["spherical", "tied"], ["spherical", "tied"]),
])
def test_covariance_types(value, types):
    assert parse_config(raw_with("model", covariance_type=value)).model.covariance_types() == types


# ------------------------------------------------------------------ overrides


def test_overrides_set_values(tmp_path):
    path = write_yaml(tmp_path, yaml.safe_dump(MINIMAL))
    config = load_config(path, ["model.n_components=5", "model.covariance_type=[full,diag]",
                                "source.nan_policy=drop", "output.mode=overwrite",
                                "model.tol=1e-4", "cluster.address=tcp://scheduler:8786"])
    assert config.model.component_counts() == [5]
    assert config.model.covariance_types() == ["full", "diag"]
    assert config.source.nan_policy == "drop"
    assert config.output.mode == "overwrite"
    assert config.model.tol == 1e-4
    assert config.cluster.address == "tcp://scheduler:8786"


def test_override_range_and_new_section(tmp_path):
    path = write_yaml(tmp_path, yaml.safe_dump(MINIMAL))
    config = load_config(path, ["model.n_components={min: 2, max: 4}",
                                "schedule.cron=0 3 * * *"])
    assert config.model.component_counts() == [2, 3, 4]
    assert config.schedule.cron == "0 3 * * *"


def test_override_value_keeps_equals_signs():
    raw = apply_overrides(MINIMAL, ["name=a=b", "source.path='s3://b/d?v=1'"])
    assert raw["name"] == "a=b"
    assert raw["source"]["path"] == "s3://b/d?v=1"


def test_overrides_do_not_change_the_input():
    raw = copy.deepcopy(MINIMAL)
    apply_overrides(raw, ["model.n_components=5", "source.path=/elsewhere"])
    assert raw == MINIMAL


def test_overrides_keep_yaml_values_that_are_not_json(tmp_path):
    # YAML reads unquoted dates as datetime.date: an override must not crash on them,
    # and the validation names the key
    path = write_yaml(tmp_path, yaml.safe_dump(MINIMAL) + "name: 2024-01-01\n")
    with pytest.raises(ConfigError, match="name:"):
        load_config(path, ["model.n_components=2"])


@pytest.mark.parametrize("override, words", [
    ("model.n_components", ["model.n_components", "key.path=value"]),
    ("=5", ["empty key"]),
    ("model.covariance_type=[full", ["model.covariance_type", "not valid YAML"]),
    ("model.n_components.min=2", ["n_components is not a section"]),
    ("model..tol=1", ["empty key"]),
])
def test_bad_override_fails_clearly(override, words):
    with pytest.raises(ConfigError) as info:
        apply_overrides(raw_with("model", n_components=3), [override])
    for word in words:
        assert word in str(info.value)


def test_override_on_a_list_top_level_fails_clearly(tmp_path):
    path = write_yaml(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path, ["model.n_components=2"])


@pytest.mark.parametrize("override, path", [
    ("model.covariance_typ=full", "model.covariance_typ"),
    ("source.featurs=[a]", "source.featurs"),
    ("modle.n_components=3", "modle"),
])
def test_override_with_unknown_key_names_the_path(tmp_path, override, path):
    config_path = write_yaml(tmp_path, yaml.safe_dump(MINIMAL))
    with pytest.raises(ConfigError) as info:
        load_config(config_path, [override])
    assert f"{path}: unknown key" in str(info.value)
    assert str(config_path) in str(info.value)


# ------------------------------------------------------------------ hash


HASH_CONFIG = {
    "name": "nightly",
    "source": {"path": "/lake/data", "features": ["a", "b"], "passthrough": ["id"]},
    "model": {"n_components": {"min": 1, "max": 4}, "covariance_type": ["full", "diag"]},
    "output": {"path": "/lake/out", "mode": "overwrite"},
}


def test_config_hash_ignores_key_order():
    reordered = {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v)
                 for k, v in reversed(list(HASH_CONFIG.items()))}
    assert list(reordered) != list(HASH_CONFIG)
    first = parse_config(HASH_CONFIG).config_hash()
    assert parse_config(reordered).config_hash() == first
    assert len(first) == 16 and int(first, 16) >= 0


def test_config_hash_is_the_same_in_another_process():
    # config.py loaded alone (the package import pulls in dask and sklearn: slow to start)
    code = ("import importlib.util, json, sys; "
            "spec = importlib.util.spec_from_file_location('config', sys.argv[1]); "
            "config = importlib.util.module_from_spec(spec); spec.loader.exec_module(config); "
            "print(config.parse_config(json.loads(sys.argv[2])).config_hash())")
    hashes = set()
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code, config_module.__file__, json.dumps(HASH_CONFIG)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed})
        hashes.add(result.stdout.strip())
    assert hashes == {parse_config(HASH_CONFIG).config_hash()}


@pytest.mark.parametrize("section, key, value", [
    ("model", "n_components", 3),
    ("model", "covariance_type", "full"),
    ("model", "tol", 1e-4),
    ("model", "random_state", 1),
    ("source", "path", "/lake/other"),
    ("source", "nan_policy", "drop"),
    ("source", "standardize", True),
    ("output", "path", "/lake/out2"),
    ("output", "format", "delta"),
    ("source", "format", "delta"),
])
def test_config_hash_changes_with_a_value(section, key, value):
    changed = copy.deepcopy(HASH_CONFIG)
    changed[section][key] = value
    assert parse_config(changed).config_hash() != parse_config(HASH_CONFIG).config_hash()


@pytest.mark.parametrize("section, key, value", [
    ("cluster", "n_workers", 8),
    ("cluster", "address", "tcp://scheduler:8786"),
    ("schedule", "cron", "0 3 * * *"),
    ("output", "mode", "error"),
    ("name", None, "renamed"),
])
def test_config_hash_ignores_what_does_not_change_results(section, key, value):
    changed = copy.deepcopy(HASH_CONFIG)
    if key is None:
        changed[section] = value
    else:
        changed.setdefault(section, {})[key] = value
    assert parse_config(changed).config_hash() == parse_config(HASH_CONFIG).config_hash()


def test_config_hash_of_delta_settings_and_lineage():
    base = parse_config(HASH_CONFIG).config_hash()
    # the defaults written out keep the hash of configs that predate them
    explicit = copy.deepcopy(HASH_CONFIG)
    explicit["source"]["format"] = explicit["output"]["format"] = "parquet"
    assert parse_config(explicit).config_hash() == base
    # where the run's events go changes no result
    traced = dict(HASH_CONFIG, lineage={"transport": "file", "path": "/lake/lineage.jsonl"})
    assert parse_config(traced).config_hash() == base
    # a Delta version read is part of what the results depend on
    delta = copy.deepcopy(HASH_CONFIG)
    delta["source"]["format"] = "delta"
    versions = {parse_config(dict(delta, source={**delta["source"], "version": v}))
                .config_hash() for v in (None, 0, 1)}
    assert len(versions) == 3 and base not in versions


@pytest.mark.parametrize("section, values, words", [
    ("source", {"version": 3}, "source.version: only a Delta table has versions"),
    ("source", {"format": "delta", "partitioning": "none"},
     "source.partitioning: a Delta table's partitions come from its log"),
    ("source", {"format": "delta", "version": -1}, "source.version: Input should be greater"),
    ("source", {"format": "orc"}, "source.format: Input should be 'parquet' or 'delta'"),
    ("output", {"format": "csv"}, "output.format: Input should be 'parquet' or 'delta'"),
    ("lineage", {"transport": "file"}, "lineage.path: the file transport needs the path"),
    ("lineage", {"transport": "http"}, "lineage.url: the http transport needs an http(s)://"),
    ("lineage", {"transport": "http", "url": "marquez:5000"}, "lineage.url: the http"),
    ("lineage", {"transport": "http", "url": "https://user:pw@marquez"},
     "lineage.url: credentials must not be written in the config"),
    ("lineage", {"transport": "file", "path": "/x", "url": "http://m"},
     "lineage.url: only for transport: http"),
    ("lineage", {"transport": "kafka"}, "lineage.transport: Input should be 'file' or 'http'"),
    ("lineage", {"transport": "file", "path": "/x", "namespace": "n"},
     "lineage.namespace: unknown key"),
])
def test_delta_and_lineage_settings_are_checked(section, values, words):
    raw = copy.deepcopy(MINIMAL)
    raw[section] = {**raw.get(section, {}), **values}
    assert words in config_error(raw)


def test_delta_and_lineage_settings_are_accepted(tmp_path):
    path = write_yaml(tmp_path, yaml.safe_dump({
        "source": {"path": "s3://lake/events", "format": "delta", "version": 12},
        "output": {"path": "out", "format": "delta"},
        "lineage": {"transport": "file", "path": "lineage/events.jsonl"}}))
    config = load_config(path)
    assert (config.source.format, config.source.version, config.output.format) == (
        "delta", 12, "delta")
    assert config.lineage.path == str(tmp_path / "lineage" / "events.jsonl")
    http = parse_config(dict(MINIMAL, lineage={"transport": "http",
                                               "url": "http://marquez:5000"}))
    assert (http.lineage.url, http.lineage.endpoint) == ("http://marquez:5000",
                                                         "api/v1/lineage")


def test_config_hash_normalises_the_grid():
    one = copy.deepcopy(HASH_CONFIG)
    one["model"].update(n_components=5, covariance_type="full")
    listed = copy.deepcopy(HASH_CONFIG)
    listed["model"].update(n_components=[5], covariance_type=["full"])
    assert parse_config(one).config_hash() == parse_config(listed).config_hash()


# ------------------------------------------------------------------ secrets


@pytest.mark.parametrize("section", ["source", "output"])
@pytest.mark.parametrize("name", ["key", "secret", "token", "password", "aws_secret_access_key",
                                  "session_token", "client_credentials"])
def test_secrets_in_storage_options_are_refused(section, name):
    message = config_error(raw_with(section, path="/p", storage_options={name: "x"}))
    assert f"{section}.storage_options" in message
    assert name in message
    assert "environment" in message


def test_nested_secrets_are_refused():
    options = {"client_kwargs": {"region_name": "eu-west-1", "aws_secret_access_key": "x"}}
    message = config_error(raw_with("source", path="/p", storage_options=options))
    assert "client_kwargs.aws_secret_access_key" in message


def test_endpoint_url_and_other_options_are_allowed():
    options = {"endpoint_url": "http://minio:9000", "anon": False,
               "client_kwargs": {"region_name": "eu-west-1"}}
    config = parse_config(raw_with("source", path="s3://b/d", storage_options=options))
    assert config.source.storage_options == options


# ------------------------------------------------------------------ paths


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "jobs"
    folder.mkdir()
    path = write_yaml(folder, yaml.safe_dump({
        "source": {"path": "../lake/data"},
        "output": {"path": "out/run"},
        "score": {"model_path": "models/m1"},
    }))
    monkeypatch.chdir(tmp_path)  # resolution must not depend on the working directory
    config = load_config(Path("jobs") / "run.yaml")
    assert config.source.path == str(tmp_path / "lake" / "data")
    assert config.output.path == str(folder / "out" / "run")
    assert config.score.model_path == str(folder / "models" / "m1")
    assert load_config(path) == config


def test_absolute_and_url_paths_are_kept(tmp_path):
    path = write_yaml(tmp_path, yaml.safe_dump({
        "source": {"path": "s3://bucket/data/*.parquet"},
        "output": {"path": "/abs/out"},
    }))
    config = load_config(path)
    assert config.source.path == "s3://bucket/data/*.parquet"
    assert config.output.path == "/abs/out"


def test_relative_glob_resolves(tmp_path):
    path = write_yaml(tmp_path, yaml.safe_dump({
        "source": {"path": "data/*/part.*.parquet"}, "output": {"path": "out"}}))
    assert load_config(path).source.path == str(tmp_path / "data" / "*" / "part.*.parquet")


# ------------------------------------------------------------------ files


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "executed"
    path = write_yaml(tmp_path, yaml.safe_dump(MINIMAL)
                      + f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_missing_empty_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="empty"):
        load_config(write_yaml(tmp_path, "", name="empty.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write_yaml(tmp_path, "source: [a\n", name="bad.yaml"))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)
