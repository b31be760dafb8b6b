"""Monitoring, in the library: the baseline from the final pass (bit for bit the criteria's
likelihood, no pass of its own), the saved baseline, the figures and the verdict on data
drawn from the model, with a moved component and with rows far from every cluster, the
warm start, the history and the config keys."""

import json
from types import SimpleNamespace

import dask.array as da
import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import make_blobs

from pipeline import GaussianMixture, monitor
from pipeline.assign import assignment_table
from pipeline.config import ConfigError, Monitor, parse_config
from pipeline.mixture import _kernels
from pipeline.mixture._chunks import ChunkedData
from pipeline.mixture._em import EMState
from pipeline.mixture._fit import log_likelihoods
from pipeline.monitor import history
from pipeline.selection import select
from pipeline.storage import DataError
from pipeline.store import ModelFileError, load_model, save_model

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
FEATURES = ["x0", "x1", "x2"]


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(n_samples=6000, n_features=3, centers=3, cluster_std=[0.8, 1.2, 1.0],
                      random_state=5)
    return X


@pytest.fixture(scope="module")
def fitted(blobs):
    """A selection on the blobs: the chosen model and its baseline."""
    result = select(blobs, n_components=[3], covariance_types=["full"], random_state=0)
    return result.estimator, result.baseline


# ------------------------------------------------------------------ the final pass


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_final_pass_gives_the_criteria_bit_for_bit(blobs, covariance_type, dtype):
    """The criteria's log-likelihood from the monitoring kernel is the EM pass's own sum."""
    X = blobs.astype(dtype)
    states = []
    for k in (2, 3):
        gm = GaussianMixture(k, covariance_type=covariance_type, random_state=0,
                             max_iter=50).fit(blobs)
        states.append(EMState(covariance_type, 1e-6, 1e-3, 10, gm.weights_, gm.means_,
                              gm.covariances_, gm.precisions_cholesky_))
    for data in (ChunkedData(X), ChunkedData(da.from_array(X, chunks=(777, 3)))):
        got = monitor.final_pass(data, states, np.dtype(dtype)).log_likelihoods
        want = log_likelihoods(data, states, np.dtype(dtype))
        assert got == want  # exactly


def test_monitoring_adds_no_pass(blobs):
    """The fit core makes no final pass; a selection makes exactly the one it always made,
    which now also gives the baseline."""
    X = da.from_array(blobs, chunks=(1000, 3))
    solo = GaussianMixture(3, random_state=0).fit(X)
    result = select(X, n_components=[3], covariance_types=["full"], random_state=0)
    assert result.n_passes == solo.n_passes_ + 1
    assert result.baseline["rows"] == blobs.shape[0]


def test_the_baseline_describes_the_training_rows(blobs, fitted):
    estimator, base = fitted
    density = estimator.score_samples(blobs)
    ld = base["log_density"]
    assert ld["mean"] == pytest.approx(density.mean(), rel=1e-12)
    assert ld["std"] == pytest.approx(density.std(), rel=1e-9)
    assert ld["upper_bound"] >= density.max()
    for q in monitor.QUANTILES:
        exact = np.quantile(density, q)
        bin_width = 0.005 * (1 + ld["upper_bound"] - exact)  # the grid's, at that depth
        assert ld["quantiles"][f"{q:g}"] == pytest.approx(exact, abs=bin_width)
    labels = estimator.predict(blobs)
    np.testing.assert_allclose(base["proportions"], np.bincount(labels) / len(labels))
    np.testing.assert_allclose(base["weights"], estimator.weights_)
    np.testing.assert_allclose(base["features"]["mean"], blobs.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(base["features"]["std"], blobs.std(axis=0), rtol=1e-9)
    for k in range(3):
        np.testing.assert_allclose(base["components"]["mean"][k],
                                   blobs[labels == k].mean(axis=0), rtol=1e-9)
        assert base["components"]["log_density_mean"][k] == pytest.approx(
            density[labels == k].mean(), rel=1e-12)
    # the outlier threshold cuts off its share of the training rows
    assert np.mean(density < monitor.threshold(base, 0.01)) == pytest.approx(0.01, abs=0.001)


# ------------------------------------------------------------------ the saved baseline


def test_the_baseline_is_saved_and_loaded(tmp_path, fitted):
    estimator, base = fitted
    base = dict(base, window={"filter": None, "inputs": 2, "fingerprint": "f",
                              "fitted_at": "2026-12-01T02:00:00+00:00"})
    save_model(estimator, str(tmp_path / "m"), features=FEATURES, baseline=base)
    _, meta = load_model(str(tmp_path / "m"))
    assert meta["baseline"] == json.loads(json.dumps(base))


@pytest.mark.parametrize("damage, needle", [
    (lambda b: b.pop("log_density"), "log_density"),
    (lambda b: b["log_density"].update(std=-1.0), "log_density.std"),
    (lambda b: b["log_density"]["quantiles"].pop("0.01"), "quantiles"),
    (lambda b: b["log_density"]["histogram"][0].__setitem__(1, 10**9), "histogram"),
    (lambda b: b.update(proportions=[0.5, 0.5]), "proportions"),
    (lambda b: b["features"].update(mean=[0.0, "x", 1.0]), "features"),
    (lambda b: b["components"]["mean"].pop(), "components"),
    (lambda b: b.update(rows=0), "rows"),
    (lambda b: b.update(window={"fitted_at": 5}), "window"),
])
def test_a_damaged_baseline_is_named(tmp_path, fitted, damage, needle):
    estimator, base = fitted
    save_model(estimator, str(tmp_path / "m"), features=FEATURES, baseline=base)
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    damage(meta["baseline"])
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="model.json: baseline: ") as error:
        load_model(str(tmp_path / "m"))
    assert needle in str(error.value)


# ------------------------------------------------------------------ figures and verdict


DEFAULTS = Monitor()


def _figures(estimator, base, X, settings=DEFAULTS):
    """Score X as a run does (the outlier column and the sums of one file)."""
    model = _kernels.prepare_model(estimator.weights_, estimator.means_,
                                   estimator.precisions_cholesky_, estimator.covariance_type,
                                   np.dtype("float64"))
    watch = monitor.watch(base, settings.outlier_quantile)
    sums = watch.sums(estimator.n_components)
    table = assignment_table(X, pa.table({"id": np.arange(len(X))}), model,
                             estimator.n_components, ["outlier"], watch=watch, sums=sums)
    figures = history.json_safe(monitor.figures(base, sums.stats(), estimator, FEATURES,
                                                settings.outlier_quantile, watch.threshold))
    assert table.column("outlier").to_numpy().sum() == figures["outliers"]
    return figures, monitor.verdict(figures, settings)


def _drawn(estimator, n, seed):
    model = GaussianMixture(estimator.n_components, covariance_type=estimator.covariance_type,
                            random_state=seed)
    for name in ("weights_", "means_", "covariances_"):
        setattr(model, name, getattr(estimator, name))
    return model.sample(n)


def test_no_alarm_on_data_drawn_from_the_model(fitted):
    estimator, base = fitted
    worst = {"outlier_rate": 0.0, "psi": 0.0, "loglik_drop_sd": 0.0}
    for seed in range(20):
        X, _ = _drawn(estimator, 2000, seed)
        figures, verdict = _figures(estimator, base, X)
        assert not verdict["refit_recommended"], (seed, verdict["reasons"])
        assert verdict["reasons"] == []
        for name in worst:
            worst[name] = max(worst[name], figures[name])
    defaults = Monitor()
    # well inside the defaults: the widest of 20 nights
    assert worst["outlier_rate"] < defaults.max_outlier_rate / 2
    assert worst["psi"] < defaults.max_psi / 10
    assert worst["loglik_drop_sd"] < defaults.max_loglik_drop / 2


@pytest.mark.parametrize("moved", [0, 1, 2])
def test_a_component_moved_by_3_sds_is_named(fitted, moved):
    estimator, base = fitted
    X, y = _drawn(estimator, 2000, 100 + moved)
    away = estimator.means_[moved] - estimator.weights_ @ estimator.means_
    away /= np.linalg.norm(away)
    sd = np.sqrt(away @ estimator.covariances_[moved] @ away)
    X[y == moved] += 3 * sd * away
    figures, verdict = _figures(estimator, base, X)
    assert verdict["refit_recommended"]
    assert figures["moved_component"] == moved
    assert figures["components"][moved]["moved_sd"] > 2.5
    assert any(r.startswith(f"component {moved} moved most") for r in verdict["reasons"])
    assert verdict["reasons"][0].startswith("outlier rate ")
    assert "rows below the training 1% log-density" in verdict["reasons"][0]


def test_rows_far_from_every_cluster_are_outliers_at_their_share(fitted):
    estimator, base = fitted
    X, _ = _drawn(estimator, 2000, 7)
    far = np.random.default_rng(0).normal(size=(200, 3)) + estimator.means_.max(axis=0) + 40
    figures, verdict = _figures(estimator, base, np.vstack([X, far]))
    share = 200 / 2200
    assert share < figures["outlier_rate"] < share + 0.02
    assert verdict["refit_recommended"]
    assert verdict["reasons"][0].startswith(f"outlier rate {figures['outlier_rate']:.1%} > 5.0%:")


def test_psi_and_the_proportion_reason():
    assert monitor.psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert monitor.psi([0.9, 0.1], [0.5, 0.5]) == pytest.approx(
        0.4 * np.log(0.9 / 0.5) - 0.4 * np.log(0.1 / 0.5))
    figures = {"rows": 100, "outliers": 1, "outlier_rate": 0.01, "outlier_quantile": 0.01,
               "outlier_threshold": -5.0, "psi": 0.44, "max_proportion_component": 1,
               "loglik_drop_sd": 0.1, "moved_component": None,
               "components": [{"training_proportion": 0.5, "proportion": 0.9},
                              {"training_proportion": 0.5, "proportion": 0.1}]}
    verdict = monitor.verdict(figures, Monitor())
    assert verdict["reasons"] == ["cluster-proportion PSI 0.440 > 0.2: component 1 went from "
                                  "50.0% to 10.0% of the rows"]


# ------------------------------------------------------------------ warm start


def test_a_warm_start_from_the_generating_model_converges_at_once(fitted):
    estimator, _ = fitted
    X, _ = _drawn(estimator, 20000, 3)
    init = {"weights": estimator.weights_, "means": estimator.means_,
            "precisions": estimator.precisions_}
    result = select(da.from_array(X, chunks=(5000, 3)), n_components=[3],
                    covariance_types=["full"], init=init)
    state = result.best.state
    assert state.converged and state.n_iter <= 3
    np.testing.assert_allclose(state.means, estimator.means_, atol=0.05)
    np.testing.assert_allclose(state.weights, estimator.weights_, atol=0.01)
    # no k-means: describe, the EM passes and the final pass
    assert result.n_passes == 1 + state.n_iter + 1
    with pytest.raises(ValueError, match="one candidate"):
        select(X, n_components=[2, 3], covariance_types=["full"], init=init)


def test_warm_start_errors_name_the_key(tmp_path, fitted):
    from pipeline.refit import warm_start

    estimator, _ = fitted
    save_model(estimator, str(tmp_path / "m"), features=FEATURES)
    dataset = SimpleNamespace(features=FEATURES, scaler_mean=None, scaler_scale=None)

    def config(**model):
        return parse_config({"source": {"path": str(tmp_path)}, "output": {"path": "o"},
                             "model": {"init_from": str(tmp_path / "m"), **model}})

    init = warm_start(config(n_components=3), dataset)
    np.testing.assert_array_equal(init["means"], estimator.means_)
    with pytest.raises(ConfigError, match=r"model.init_from: .* has 3 full components, the "
                                          r"config asks for 4 full"):
        warm_start(config(n_components=4), dataset)
    with pytest.raises(ConfigError, match="model.n_components: 3 and model.covariance_type"):
        warm_start(config(n_components=3, covariance_type="diag"), dataset)
    with pytest.raises(DataError, match="source.features: .* model.init_from"):
        warm_start(config(n_components=3), SimpleNamespace(
            features=["x0", "x2", "x1"], scaler_mean=None, scaler_scale=None))
    # another standardization: the model is moved into the data's space
    scaled = SimpleNamespace(features=FEATURES, scaler_mean=np.ones(3),
                             scaler_scale=np.full(3, 2.0))
    init = warm_start(config(n_components=3), scaled)
    np.testing.assert_allclose(init["means"], (estimator.means_ - 1) / 2)
    np.testing.assert_allclose(np.linalg.inv(init["precisions"]),
                               estimator.covariances_ / 4)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("raw, needle", [
    ({"model": {"n_components": [2, 3], "init_from": "m"}}, "model.init_from: a warm start"),
    ({"model": {"covariance_type": ["full", "diag"], "init_from": "m"}}, "model.init_from"),
    ({"monitor": {"outlier_quantile": 0}}, "monitor.outlier_quantile"),
    ({"monitor": {"max_psi": -1}}, "monitor.max_psi"),
    ({"monitor": {"max_outlier_rat": 0.1}}, "did you mean 'max_outlier_rate'"),
    ({"refit": {"max_age": "a month"}}, "refit.max_age: 'a month' is not an age"),
    ({"refit": {"mode": "sometimes"}}, "refit.mode"),
    ({"source": {"path": "d", "passthrough": ["outlier"]}}, "a column the output writes"),
])
def test_config_errors_name_the_key(raw, needle):
    base = {"source": {"path": "d"}, "output": {"path": "o"}}
    with pytest.raises(ConfigError, match=needle):
        parse_config({**base, **raw})


def test_config_defaults_and_hash():
    base = {"source": {"path": "/d"}, "output": {"path": "/o"}}
    config = parse_config(base)
    assert config.output.columns == ["probabilities", "log_density", "outlier"]
    assert (config.refit.mode, config.refit.max_age_days()) == ("auto", None)
    assert parse_config({**base, "refit": {"max_age": "2w"}}).refit.max_age_days() == 14
    # the thresholds and the refit policy do not change results: the hash stays
    same = parse_config({**base, "monitor": {"max_psi": 0.5}, "refit": {"mode": "always"}})
    assert same.config_hash() == config.config_hash()
    other = parse_config({**base, "monitor": {"outlier_quantile": 0.05}})
    assert other.config_hash() != config.config_hash()  # the outlier column changes


# ------------------------------------------------------------------ history


def test_history_round_trip_and_a_damaged_history(tmp_path, fitted):
    from pipeline.output import Target

    estimator, base = fitted
    X, _ = _drawn(estimator, 500, 1)
    figures, verdict = _figures(estimator, base, X)
    output = SimpleNamespace(path=str(tmp_path / "out"), storage_options={})
    published = None
    for i in range(2):
        target = Target(output, f"run{i}")
        target.begin()
        entry = history.record(f"run{i}", "score", "m1", "scored", figures, verdict, Monitor())
        table = history.write(target, published, entry, Monitor())
        published = target.location
    assert table.column("run_id").to_pylist() == ["run0", "run1"]
    assert sorted(p.name for p in (tmp_path / ".out.staging-run1" / "monitor").iterdir()) == [
        "history.parquet", "history.png", "run0.json", "run1.json"]
    lines = history.table_text(table)
    assert len(lines) == 3 and "ok" in lines[-1]
    (tmp_path / ".out.staging-run1" / "monitor" / "history.parquet").write_bytes(b"nonsense")
    with pytest.raises(DataError, match="history.parquet: not a readable monitor history"):
        history.read_history(published)


# ------------------------------------------------------------------ the refit decision


def test_the_refit_decision():
    import datetime as dt

    from pipeline.config import Refit
    from pipeline.refit import decide

    now = dt.datetime(2026, 12, 31, tzinfo=dt.UTC)
    base = {"window": {"fitted_at": "2026-12-01T00:00:00+00:00"}}
    quiet = {"refit_recommended": False, "reasons": [], "checks": {"psi": {}}}
    alarm = {"refit_recommended": True, "reasons": ["..."], "checks": {"psi": {}}}
    assert not decide(Refit(), quiet, base, now).refit
    assert decide(Refit(), alarm, base, now).why == "the verdict recommends it"
    old = decide(Refit(max_age="4w"), quiet, base, now)
    assert old.refit and old.why == ("the model is 30.0 days old, older than refit.max_age "
                                     "4w")
    assert not decide(Refit(max_age="31d"), quiet, base, now).refit
    assert decide(Refit(mode="always"), quiet, base, now).refit
    never = decide(Refit(mode="never", max_age="1h"), alarm, base, now)
    assert not never.refit and never.why == ("refit.mode is never (the verdict recommends a "
                                             "refit)")
    assert not decide(Refit(max_age="1h"), quiet, {}, now).refit  # a model of unknown age
