"""``model.kind: bayesian`` in the pipeline: config, selection, report, saved model, demo run."""

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.exceptions import ConvergenceWarning

from pipeline import BayesianGaussianMixture, run
from pipeline.config import ConfigError, load_config, parse_config
from pipeline.demo import write_demo
from pipeline.report import write_report
from pipeline.selection import select
from pipeline.store import ModelFileError, load_model, save_model

BASE = {"source": {"path": "data"}, "output": {"path": "out"}}


def _blobs(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    return centers[rng.integers(3, size=n)] + rng.normal(size=(n, 2))


# ------------------------------------------------------------------ config


def test_kind_defaults_to_gaussian_and_bayesian_takes_one_covariance_type():
    assert parse_config(BASE).model.kind == "gaussian"
    config = parse_config({**BASE, "model": {"kind": "bayesian", "n_components": 10}})
    assert (config.model.kind, config.model.weight_threshold) == ("bayesian", 0.01)
    with pytest.raises(ConfigError, match="model: covariance_type: kind bayesian fits one"):
        parse_config({**BASE, "model": {"kind": "bayesian",
                                        "covariance_type": ["full", "diag"]}})
    for threshold in (0, 1, -0.1):
        with pytest.raises(ConfigError, match="model.weight_threshold"):
            parse_config({**BASE, "model": {"weight_threshold": threshold}})


def test_the_hash_of_a_gaussian_config_ignores_the_bayesian_settings():
    plain = parse_config(BASE).config_hash()
    assert parse_config({**BASE, "model": {"kind": "gaussian",
                                           "weight_threshold": 0.2}}).config_hash() == plain
    bayesian = parse_config({**BASE, "model": {"kind": "bayesian"}}).config_hash()
    assert bayesian != plain
    assert parse_config({**BASE, "model": {"kind": "bayesian", "weight_threshold": 0.2}}
                        ).config_hash() != bayesian


# --------------------------------------------------------------- selection


def test_select_bayesian_fits_one_mixture_of_the_largest_n_components():
    result = select(_blobs(), n_components=[2, 6], covariance_types=["full"], random_state=0,
                    init_params="random", max_iter=300, kind="bayesian", weight_threshold=0.05)
    assert isinstance(result.estimator, BayesianGaussianMixture)
    assert result.estimator.n_components == 6 and result.criterion == "lower_bound"
    (candidate,) = result.candidates
    row = candidate.row()
    assert row["name"] == "bayesian-full-k6" and row["n_weighted"] == 3
    assert row["lower_bound"] == result.estimator.lower_bound_ and row["bic"] is None
    assert result.n_passes == result.estimator.n_passes_


# ------------------------------------------------------------------ report


def _summary(weights):
    return {"run_id": "r1", "config_hash": "h", "kind": "bayesian", "criterion": "lower_bound",
            "weight_threshold": 0.01, "n_weighted": int(np.sum(np.asarray(weights) > 0.01)),
            "n_rows": 100, "n_features": 2, "features": ["a", "b"], "passes": 12,
            "rows_dropped": 0, "timings": {"select": 1.0}, "chosen": "bayesian-full-k4",
            "candidates": [{"name": "bayesian-full-k4", "n_components": 4,
                            "covariance_type": "full", "bic": None, "aic": None,
                            "lower_bound": -123.4, "n_iter": 9, "converged": True,
                            "n_weighted": 2}],
            "clusters": [{"cluster": k, "weight": w, "size": int(100 * w)}
                         for k, w in enumerate(weights)]}


def test_the_report_counts_and_plots_the_weighted_components(tmp_path):
    paths = write_report(_summary([0.6, 0.395, 0.004, 0.001]), tmp_path)
    assert set(paths) == {"report.json", "report.md", "weights.png"}
    assert Path(paths["weights.png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = Path(paths["report.md"]).read_text()
    assert "**2** of 4 components have a weight above 0.01" in markdown
    assert "![weights](weights.png)" in markdown and "bic.png" not in markdown
    assert json.loads(Path(paths["report.json"]).read_text())["n_weighted"] == 2


# ------------------------------------------------------------- saved model


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BayesianGaussianMixture(n_components=4, covariance_type="tied", max_iter=20,
                                       random_state=0).fit(_blobs())


@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
def test_a_saved_bayesian_model_predicts_as_the_fitted_one(tmp_path, prior_type):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BayesianGaussianMixture(n_components=4, max_iter=10, random_state=0,
                                        weight_concentration_prior_type=prior_type
                                        ).fit(_blobs())
    model_id = save_model(model, str(tmp_path / "model"), features=["a", "b"])
    loaded, meta = load_model(str(tmp_path / "model"))
    assert isinstance(loaded, BayesianGaussianMixture) and meta["model_id"] == model_id
    X = _blobs(seed=1)
    for method in ("predict", "predict_proba", "score_samples"):
        assert np.array_equal(getattr(loaded, method)(X), getattr(model, method)(X)), method
    for name in ("weight_concentration_", "degrees_of_freedom_", "mean_prior_",
                 "covariance_prior_", "weight_concentration_prior_", "lower_bound_"):
        assert np.array_equal(np.asarray(getattr(loaded, name)),
                              np.asarray(getattr(model, name))), name


def test_a_damaged_bayesian_model_names_the_file(tmp_path, fitted):
    folder = tmp_path / "model"
    save_model(fitted, str(folder), features=["a", "b"])
    with np.load(folder / "params.npz") as npz:
        arrays = dict(npz)
    arrays["mean_precision"] = arrays["mean_precision"][:2]
    np.savez(folder / "params.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"params\.npz: array 'mean_precision'"):
        load_model(str(folder))


# ---------------------------------------------------------------- demo run


@pytest.mark.slow
def test_the_demo_data_with_kind_bayesian_finds_its_4_clusters(tmp_path, cluster2):
    """10 components at most: the 4 of the demo data carry weight. Random responsibilities
    to start: from k-means (the default, as in sklearn) every component starts on a piece
    of a cluster, and the split clusters keep their weight for hundreds of iterations."""
    config_path = write_demo(tmp_path / "demo")
    config = load_config(config_path, [
        "model.kind=bayesian", "model.n_components=10", "model.covariance_type=full",
        "model.init_params=random", "model.max_iter=300",
        f"cluster.address={cluster2.scheduler_address}"])
    summary = run.fit(config)
    assert summary["n_weighted"] == 4 and summary["kind"] == "bayesian"
    assert summary["candidates"][0]["converged"]
    weights = sorted((c["weight"] for c in summary["clusters"]), reverse=True)
    np.testing.assert_allclose(weights[:4], 0.25, atol=0.01)
    output = Path(config.output.path)
    for name in ("report/weights.png", "report/report.md", "model/model.json",
                 "_SUCCESS.json"):
        assert (output / name).is_file(), name
    assert not (output / "report" / "bic.png").exists()
    # the saved model is the Bayesian one: it assigns the rows as the fit run did
    model, _ = load_model(str(output / "model"))
    assert isinstance(model, BayesianGaussianMixture)
    table = pq.read_table(output / "assignments" / "part.0.parquet")
    X = np.column_stack([pq.read_table(tmp_path / "demo" / "data" / "part.0.parquet")
                         .column(f"x{j}").to_numpy() for j in range(4)])
    assert np.array_equal(model.predict(X), table.column("cluster").to_numpy())
