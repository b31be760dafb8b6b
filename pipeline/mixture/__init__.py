"""The EM engine and the scikit-learn-compatible estimator."""

from pipeline.mixture.gaussian import GaussianMixture

__all__ = ["GaussianMixture"]
