"""mixlake: Gaussian-mixture clustering for the data lake, on Dask."""

from pipeline.mixture import GaussianMixture

__version__ = "0.1.0"
__all__ = ["GaussianMixture", "__version__"]
