"""Monitoring: the training baseline, each run's figures of new data against it, the
verdict, and the history of runs.

A mixture is a density, so it can say how surprising new rows are. Everything here is
sums over rows, accumulated where the rows already are, in passes that happen anyway:

- :mod:`.baseline`: the fit's final pass (the likelihood of every candidate, which BIC
  needs) also gives the chosen model's training baseline, saved in model.json;
- the scoring pass (``pipeline.assign``) adds the same sums per file and marks the rows
  below the training log-density quantile ``monitor.outlier_quantile`` as outliers;
- :mod:`.verdict`: the figures of a run against the baseline, and the refit verdict;
- :mod:`.history`: ``monitor/<run id>.json``, ``history.parquet`` and ``history.png``.
"""

from pipeline.monitor.baseline import (
    QUANTILES,
    Sums,
    Watch,
    baseline,
    baseline_problem,
    final_pass,
    merge,
    threshold,
    upper_bound,
    watch,
    window,
)
from pipeline.monitor.verdict import figures, measure, psi, verdict, watch_of

__all__ = ["QUANTILES", "Sums", "baseline", "baseline_problem", "figures", "final_pass",
           "measure", "merge", "psi", "threshold", "upper_bound", "verdict", "Watch", "watch",
           "watch_of", "window"]
