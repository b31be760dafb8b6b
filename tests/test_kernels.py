"""The per-chunk numpy kernels and the client-side M-step, without dask.

Reference values come from scikit-learn's own estimators (private functions of
``sklearn.mixture._gaussian_mixture``, which is fine in a test: they are the spec).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.mixture import _gaussian_mixture as skgm

from pipeline.mixture import _covariance, _kernels

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _data(n=500, n_features=3, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_features)) @ rng.normal(size=(n_features, n_features)) + offset


def _params(covariance_type, n_components=3, n_features=3, seed=1, offset=0.0):
    """Random but well-conditioned weights, means and precision Cholesky factors."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, n_components)
    weights /= weights.sum()
    means = rng.normal(scale=2.0, size=(n_components, n_features)) + offset
    if covariance_type == "full":
        a = rng.normal(size=(n_components, n_features, n_features))
        covariances = a @ a.transpose(0, 2, 1) + np.eye(n_features)
    elif covariance_type == "tied":
        a = rng.normal(size=(n_features, n_features))
        covariances = a @ a.T + np.eye(n_features)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.5, 2.0, (n_components, n_features))
    else:
        covariances = rng.uniform(0.5, 2.0, n_components)
    return weights, means, covariances, _covariance.precision_cholesky(covariances,
                                                                        covariance_type)


def _model(covariance_type, dtype=np.float64, **kwargs):
    weights, means, _, precisions_cholesky = _params(covariance_type, **kwargs)
    return _kernels.prepare_model(weights, means, precisions_cholesky, covariance_type, dtype)


def _random_resp(n, n_components, seed=2):
    resp = np.random.default_rng(seed).uniform(size=(n, n_components))
    return resp / resp.sum(axis=1, keepdims=True)


def _assert_stats_close(actual, desired, rtol):
    assert actual.keys() == desired.keys()
    for key in desired:
        assert_allclose(actual[key], desired[key], rtol=rtol, atol=0, err_msg=key)


# ------------------------------------------------------------- additivity


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("cut", [1, 123, 250, 499])
def test_em_chunk_statistics_are_additive_over_a_split(covariance_type, cut):
    X = _data()
    models = [_model(covariance_type), _model(covariance_type, n_components=2, seed=5)]
    whole = _kernels.em_chunk(X, models)
    halves = _kernels.combine_sums([_kernels.em_chunk(X[:cut], models),
                                    _kernels.em_chunk(X[cut:], models)])
    assert len(whole) == len(halves) == 2
    for w, h in zip(whole, halves):
        assert w["n"] == h["n"] == len(X)
        _assert_stats_close(h, w, rtol=1e-12)


def test_em_chunk_of_an_empty_block_is_the_neutral_element():
    X = _data()
    models = [_model("full")]
    whole = _kernels.em_chunk(X, models)
    with_empty = _kernels.combine_sums([_kernels.em_chunk(X[:0], models),
                                        _kernels.em_chunk(X, models)])
    _assert_stats_close(with_empty[0], whole[0], rtol=0)


def test_combine_sums_does_not_modify_its_inputs():
    X = _data()
    parts = [_kernels.em_chunk(X[:100], [_model("diag")]),
             _kernels.em_chunk(X[100:], [_model("diag")])]
    before = [{k: np.copy(v) for k, v in p[0].items()} for p in parts]
    _kernels.combine_sums(parts)
    for p, b in zip(parts, before):
        _assert_stats_close(p[0], b, rtol=0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_resp_chunk_statistics_are_additive_over_a_split(covariance_type):
    X = _data()
    resp = _random_resp(len(X), 3)
    shift = np.random.default_rng(3).normal(size=(3, 3))
    whole = _kernels.resp_chunk(X, resp, shift, covariance_type)
    halves = _kernels.combine_sums([[_kernels.resp_chunk(X[:77], resp[:77], shift,
                                                         covariance_type)],
                                    [_kernels.resp_chunk(X[77:], resp[77:], shift,
                                                         covariance_type)]])[0]
    _assert_stats_close(halves, whole, rtol=1e-12)


# ------------------------------------------------------ M-step vs sklearn


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("shift_offset", [0.0, 50.0])
def test_resp_chunk_and_m_step_reproduce_sklearn_estimate_gaussian_parameters(
        covariance_type, shift_offset):
    X = _data()
    resp = _random_resp(len(X), 3)
    reg_covar = 1e-6
    # the statistics are taken about an arbitrary shift; the M-step must not depend on it
    shift = np.random.default_rng(4).normal(size=(3, 3)) + shift_offset
    stats = _kernels.resp_chunk(X, resp, shift, covariance_type)
    nk, means, covariances = _covariance.m_step(stats, shift, covariance_type, reg_covar,
                                                float(np.finfo(np.float64).eps))
    nk_ref, means_ref, covariances_ref = skgm._estimate_gaussian_parameters(
        X, resp, reg_covar, covariance_type)
    assert_allclose(nk, nk_ref, rtol=1e-12)
    assert_allclose(means, means_ref, rtol=1e-10)
    assert_allclose(covariances, covariances_ref, rtol=1e-10)
    assert_allclose(_covariance.precision_cholesky(covariances, covariance_type),
                    skgm._compute_precision_cholesky(covariances_ref, covariance_type),
                    rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_em_pass_reproduces_one_sklearn_em_step(covariance_type):
    X = _data(n=400)
    weights, means, covariances, precisions_cholesky = _params(covariance_type)
    model = _kernels.prepare_model(weights, means, precisions_cholesky, covariance_type,
                                   np.float64)
    stats = _kernels.em_chunk(X, [model])[0]
    nk, new_means, new_covariances = _covariance.m_step(
        stats, model["shift"], covariance_type, 1e-6, float(np.finfo(np.float64).eps))

    reference = skgm.GaussianMixture(3, covariance_type=covariance_type)
    reference.weights_, reference.means_ = weights, means
    reference.covariances_, reference.precisions_cholesky_ = covariances, precisions_cholesky
    log_prob_norm, log_resp = reference._e_step(X)
    reference._m_step(X, log_resp)

    assert_allclose(stats["loglik"] / stats["n"], log_prob_norm, rtol=1e-12)
    assert_allclose(nk / nk.sum(), reference.weights_, rtol=1e-10)
    assert_allclose(new_means, reference.means_, rtol=1e-10)
    assert_allclose(new_covariances, reference.covariances_, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_several_sub_blocks_and_a_short_last_one_reproduce_sklearn(covariance_type):
    """Rows over 2.5 sub-blocks: the E-step's buffers, looked up once per length
    (``_kernels._EStep``: the full sub-blocks, then the short last one), give sklearn's
    EM step, log-densities and responsibilities on every row."""
    weights, means, covariances, precisions_cholesky = _params(covariance_type)
    model = _kernels.prepare_model(weights, means, precisions_cholesky, covariance_type,
                                   np.float64)
    rows = _kernels.block_rows(model, 3)
    X = _data(n=rows * 5 // 2, seed=3)
    assert len(_kernels.sub_blocks(len(X), model, 3)) == 3
    stats = _kernels.em_chunk(X, [model])[0]
    log_prob_norm, resp, labels = _kernels.score_rows(X, model)

    reference = skgm.GaussianMixture(3, covariance_type=covariance_type)
    reference.weights_, reference.means_ = weights, means
    reference.covariances_, reference.precisions_cholesky_ = covariances, precisions_cholesky
    assert_allclose(log_prob_norm, reference.score_samples(X), rtol=1e-12)
    assert_allclose(resp.T, reference.predict_proba(X), rtol=1e-9, atol=1e-12)
    assert_allclose(stats["loglik"], reference.score_samples(X).sum(), rtol=1e-12)
    np.testing.assert_array_equal(labels, reference.predict(X))
    nk, new_means, _ = _covariance.m_step(
        stats, model["shift"], covariance_type, 1e-6, float(np.finfo(np.float64).eps))
    _, log_resp = reference._e_step(X)
    reference._m_step(X, log_resp)
    assert_allclose(nk / nk.sum(), reference.weights_, rtol=1e-10)
    assert_allclose(new_means, reference.means_, rtol=1e-10)


def test_expanded_forms_take_longer_sub_blocks_than_the_whitening_form():
    """The expanded forms' rows are narrow (their features, float64), the whitening
    form's K D wide: each is sized on its own width, so the Python around a sub-block's
    numpy calls is a small share of its arithmetic for the cheap forms too."""
    full = _model("full", n_components=8, n_features=16)
    diag = _model("diag", n_components=8, n_features=16)
    assert diag["expanded"] is not None and full["expanded"] is None
    assert _kernels.block_rows(full, 16) == 2**18 // (8 * 17)
    assert _kernels.block_rows(diag, 16) == 2**18 // 33
    # float32 whitening: 4 times the elements (its numpy calls do half the arithmetic)
    full32 = _model("full", np.float32, n_components=8, n_features=16)
    assert _kernels.block_rows(full32, 16) == 2**20 // (8 * 17)
    # ... and at most _MAX_BLOCK_ROWS rows summed in float32
    small32 = _model("full", np.float32, n_components=1, n_features=2)
    assert _kernels.block_rows(small32, 2) == _kernels._MAX_BLOCK_ROWS == 8192
    assert _kernels.block_rows(_model("diag", n_components=3, n_features=1), 1) == (
        _kernels._MAX_EXPANDED_ROWS)


# ------------------------------------------------------------- float32


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_float32_statistics_are_accumulated_in_float64(covariance_type):
    # one sub-block of 2**20 / (K * D) = 262144 rows at an offset of 1e4: summing it
    # in float32 loses ~4e-5 relative (measured), float64 accumulation ~1e-8
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(2**18, 2)) + 1e4).astype(np.float32)
    weights, means, _, precisions_cholesky = _params(covariance_type, n_components=2,
                                                     n_features=2, offset=1e4)
    model32 = _kernels.prepare_model(weights, means, precisions_cholesky, covariance_type,
                                     np.float32)
    # the float64 reference uses the very same (float32-rounded) center and offsets
    model64 = {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v
               for k, v in model32.items()}
    stats32 = _kernels.em_chunk(X, [model32])[0]
    stats64 = _kernels.em_chunk(X.astype(np.float64), [model64])[0]
    for key in ("nk", "s", "S"):
        assert stats32[key].dtype == np.float64
        error = np.max(np.abs(stats32[key] - stats64[key])) / np.max(np.abs(stats64[key]))
        assert error < 1e-6, (key, error)


# ------------------------------------------------------------- prediction


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_log_prob_resp_matches_sklearn(covariance_type, offset):
    X = _data(n=300, offset=offset)
    weights, means, covariances, precisions_cholesky = _params(covariance_type, offset=offset)
    model = _kernels.prepare_model(weights, means, precisions_cholesky, covariance_type,
                                   np.float64)
    log_prob_norm, log_resp = _kernels.log_prob_resp(X, model)

    # sklearn expands |x - m|^2 for diag/spherical and loses digits at an offset:
    # the reference is computed on the centered data (the density is translation-invariant)
    reference = skgm.GaussianMixture(3, covariance_type=covariance_type)
    reference.weights_, reference.means_ = weights, means - offset
    reference.precisions_cholesky_ = precisions_cholesky
    ref_norm, ref_resp = reference._estimate_log_prob_resp(X - offset)
    assert_allclose(log_prob_norm, ref_norm, rtol=1e-9)
    assert_allclose(log_resp, ref_resp, rtol=1e-7, atol=1e-7)
    proba = _kernels.predict_proba_chunk(X, model)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.array_equal(_kernels.predict_chunk(X, model), ref_resp.argmax(axis=1))
    assert_allclose(_kernels.score_samples_chunk(X, model), ref_norm, rtol=1e-9)


# ------------------------------------------------------------- sample weights


def _integer_weights(n, seed=4):
    return np.random.default_rng(seed).integers(0, 4, size=n).astype(np.float64)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("spread", [1.0, 1e4])
def test_weighted_em_chunk_is_the_em_chunk_of_the_repeated_rows(covariance_type, spread):
    # spread 1e4: components far apart, so tied/diag/spherical take the whitening form
    X = _data()
    weights = _integer_weights(len(X))
    w, means, _, prec_chol = _params(covariance_type)
    model = _kernels.prepare_model(w, means * spread, prec_chol, covariance_type, np.float64)
    assert (model["expanded"] is None) == (covariance_type == "full" or spread > 1)
    weighted = _kernels.em_chunk(X, [model], sample_weight=weights)[0]
    repeated = _kernels.em_chunk(np.repeat(X, weights.astype(int), axis=0), [model])[0]
    assert weighted["n"] == weights.sum()
    _assert_stats_close(weighted, repeated, rtol=1e-10)


def test_a_row_of_weight_0_adds_nothing_even_at_log_likelihood_minus_inf():
    X = _data()
    model = _model("diag")
    weights = np.ones(len(X))
    weights[7] = 0.0
    far = X.copy()
    far[7] = 1e300  # its log-likelihood is -inf: 0 * -inf must not make the sum NaN
    _assert_stats_close(_kernels.em_chunk(far, [model], sample_weight=weights)[0],
                        _kernels.em_chunk(np.delete(X, 7, axis=0), [model])[0], rtol=1e-12)


def test_weighted_describe_and_labels_pass_are_those_of_the_repeated_rows():
    from pipeline.mixture import _init

    X = _data(offset=1e3)
    weights = _integer_weights(len(X))
    repeated = np.repeat(X, weights.astype(int), axis=0)
    weighted = _kernels.combine_describe([_kernels.describe_chunk(X[:200], weights[:200]),
                                          _kernels.describe_chunk(X[200:], weights[200:])])
    reference = _kernels.describe_chunk(repeated)
    assert (weighted["weight"], weighted["n_positive"]) == (len(repeated),
                                                            np.count_nonzero(weights))
    assert_allclose(weighted["mean"], reference["mean"], rtol=1e-14)
    assert_allclose(weighted["m2"], reference["m2"], rtol=1e-9)
    centers = X[:3] + 0.1
    specs = [("labels", centers, centers, "full")]  # k-means' step from its centers
    ours = _init._init_resp_chunk(X, 0, specs, sample_weight=weights)[0]
    expected = _init._init_resp_chunk(repeated, 0, specs)[0]
    assert (ours["n"], expected["n"]) == (len(X), len(repeated))  # rows seen
    for key in set(expected) - {"n"}:
        assert_allclose(ours[key], expected[key], rtol=1e-10, atol=1e-9, err_msg=key)


# ------------------------------------------------------------- describe


def test_describe_merges_chunks_like_numpy():
    X = _data(n=1000, offset=1e4)
    X[:, 1] *= 1e-3
    sizes = [0, 1, 333, 0, 500, 166]
    bounds = np.cumsum([0] + sizes)
    parts = [_kernels.describe_chunk(X[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    merged = _kernels.combine_describe(parts)
    assert merged["n"] == len(X)
    assert merged["n_nan"] == merged["n_inf"] == 0
    assert_allclose(merged["mean"], X.mean(axis=0), rtol=1e-14)
    assert_allclose(merged["m2"] / len(X), X.var(axis=0), rtol=1e-9)


def test_describe_counts_nan_and_inf():
    X = _data(n=50)
    X[3, 0] = np.nan
    X[7, 1] = np.inf
    X[8, 2] = -np.inf
    merged = _kernels.combine_describe([_kernels.describe_chunk(X[:5]),
                                        _kernels.describe_chunk(X[5:])])
    assert (merged["n_nan"], merged["n_inf"]) == (1, 2)


# ------------------------------------------------------------- covariance helpers


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precision_helpers_match_sklearn(covariance_type):
    _, _, covariances, precisions_cholesky = _params(covariance_type)
    precisions = _covariance.precisions_from_cholesky(precisions_cholesky, covariance_type)
    # the upper-triangular factor with a positive diagonal is unique: the one we started from
    assert_allclose(_covariance.precision_cholesky_from_precisions(precisions, covariance_type),
                    precisions_cholesky, rtol=1e-10, atol=1e-14)
    assert_allclose(_covariance.covariances_from_cholesky(precisions_cholesky, covariance_type),
                    covariances, rtol=1e-10)
    assert_allclose(_covariance.log_det_cholesky(precisions_cholesky, covariance_type, 3),
                    skgm._compute_log_det_cholesky(precisions_cholesky, covariance_type, 3),
                    rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_n_parameters_matches_sklearn(covariance_type):
    reference = skgm.GaussianMixture(4, covariance_type=covariance_type)
    reference.means_ = np.zeros((4, 5))
    assert _covariance.n_parameters(covariance_type, 4, 5) == reference._n_parameters()


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
@pytest.mark.parametrize("at_origin", [False, True])
def test_a_component_collapsed_onto_one_row_gets_sklearns_variance(covariance_type, at_origin):
    """reg_covar=0 and a component on one row: sklearn's E[x^2] - m^2 with nk + 10 eps
    leaves ~10 eps |m|^2 (it fits on), or exactly 0 at the origin (it fails); the
    statistics about the mean alone would give round-off about 0 either way."""
    X = _data(n=40) + (0.0 if at_origin else 0.7)
    X[0] = 0.0 if at_origin else X[0]
    resp = np.zeros((len(X), 2))
    resp[0, 0] = 1.0
    resp[1:, 1] = 1.0
    shift = np.repeat(X.mean(axis=0)[None], 2, axis=0)
    stats = _kernels.resp_chunk(X, resp, shift, covariance_type)
    eps = np.finfo(np.float64).eps
    _, _, ours = _covariance.m_step(stats, shift, covariance_type, 0.0, eps)
    _, _, reference = skgm._estimate_gaussian_parameters(X, resp, 0.0, covariance_type)
    if at_origin:
        assert np.all(ours[0] == 0) and np.all(reference[0] == 0)
        with pytest.raises(ValueError, match="increase reg_covar"):
            _covariance.precision_cholesky(ours, covariance_type)
    else:
        # sklearn's own value carries its round-off (~eps |x|^2): agreement to ~10%
        assert np.all(ours[0] > 0) and np.all(reference[0] > 0)
        assert_allclose(ours[0], reference[0], rtol=0.3)
        assert_allclose(ours[1], reference[1], rtol=1e-12)
        _covariance.precision_cholesky(ours, covariance_type)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("float32", [False, True])
def test_singular_covariance_error_names_reg_covar(covariance_type, float32):
    singular = {
        "full": np.zeros((2, 3, 3)),
        "tied": np.zeros((3, 3)),
        "diag": np.zeros((2, 3)),
        "spherical": np.zeros(2),
    }[covariance_type]
    with pytest.raises(ValueError, match="increase reg_covar") as info:
        _covariance.precision_cholesky(singular, covariance_type, float32)
    assert ("passing float64" in str(info.value)) == float32


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("weighted", [False, True])
def test_label_stats_are_those_of_one_hot_responsibilities(covariance_type, weighted):
    # k-means' step of the kmeans initialisation: each component's own rows instead of
    # the general accumulator over one-hot responsibilities
    from pipeline.mixture import _init

    X = _data(offset=1e3)
    centers = X[:3] + 0.1
    weights = _integer_weights(len(X)) if weighted else None
    ours = _init.label_stats(X, centers, covariance_type, weights)
    labels = _init.nearest_center(X, centers, centers.mean(axis=0))
    resp = np.zeros((len(X), 3))
    resp[np.arange(len(X)), labels] = 1.0
    expected = _kernels.resp_chunk(X, resp, centers, covariance_type, weights)
    assert ours["n"] == expected["n"] == len(X)
    for key in ("nk", "s", "S"):
        assert np.shape(ours[key]) == np.shape(expected[key]), key
        assert_allclose(ours[key], expected[key], rtol=1e-10, atol=1e-8, err_msg=key)


def test_one_labelling_serves_every_covariance_type_of_the_same_centers():
    # a grid's candidates of one size share their k-means centers: the labelling pass
    # assigns the rows once and gives each type its statistics
    from pipeline.mixture import _init

    X = _data(offset=1e3)
    centers = X[:3] + 0.1
    types = ["full", "tied", "diag", "spherical"]
    shared = _init._init_resp_chunk(X, 0, [("labels", centers, centers, t) for t in types])
    for covariance_type, stats in zip(types, shared):
        alone = _init.label_stats(X, centers, covariance_type)
        for key in ("n", "nk", "s", "S"):
            assert_allclose(stats[key], alone[key], rtol=1e-12, atol=1e-9,
                            err_msg=f"{covariance_type} {key}")


def test_describe_counts_nan_and_inf_and_only_them():
    """Finite column sums skip the counts: a NaN or an inf still shows (its column's sum
    is not finite), and finite values whose sum overflows are not counted."""
    X = np.ones((50, 3))
    X[4, 0], X[9, 1], X[11, 1], X[20, 2] = np.nan, np.inf, -np.inf, np.nan
    described = _kernels.describe_chunk(X)
    assert (described["n_nan"], described["n_inf"]) == (2, 2)
    with np.errstate(over="ignore"):  # the mean of such data overflows anyway
        huge = _kernels.describe_chunk(np.full((4, 2), 1e308))
    assert (huge["n_nan"], huge["n_inf"]) == (0, 0)
    assert _kernels.describe_chunk(np.ones((0, 2)))["n_nan"] == 0
