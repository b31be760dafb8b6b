"""The EM engine and the scikit-learn-compatible estimator."""

__all__ = ["GaussianMixture"]


def __getattr__(name):
    # Lazy: the per-chunk kernels (pipeline.mixture._kernels) run on workers without
    # importing scikit-learn.
    if name == "GaussianMixture":
        from pipeline.mixture.gaussian import GaussianMixture

        return GaussianMixture
    raise AttributeError(f"module 'pipeline.mixture' has no attribute {name!r}")
