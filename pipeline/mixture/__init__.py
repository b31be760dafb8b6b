"""The EM engine and the scikit-learn-compatible estimator."""

__all__ = ["BayesianGaussianMixture", "GaussianMixture"]


def __getattr__(name):
    # Lazy: the per-chunk kernels (pipeline.mixture._kernels) run on workers without
    # importing scikit-learn.
    if name == "GaussianMixture":
        from pipeline.mixture.gaussian import GaussianMixture

        return GaussianMixture
    if name == "BayesianGaussianMixture":
        from pipeline.mixture.bayesian import BayesianGaussianMixture

        return BayesianGaussianMixture
    raise AttributeError(f"module 'pipeline.mixture' has no attribute {name!r}")
