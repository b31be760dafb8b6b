"""mixlake: Gaussian-mixture clustering for the data lake, on Dask."""

__version__ = "0.1.0"
__all__ = ["BayesianGaussianMixture", "GaussianMixture", "__version__"]


def __getattr__(name):
    # Lazy, so that dask workers running a kernel or a Parquet read import numpy and
    # pyarrow only, not scikit-learn and scipy (~110 MB per worker process).
    if name == "GaussianMixture":
        from pipeline.mixture.gaussian import GaussianMixture

        return GaussianMixture
    if name == "BayesianGaussianMixture":
        from pipeline.mixture.bayesian import BayesianGaussianMixture

        return BayesianGaussianMixture
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
