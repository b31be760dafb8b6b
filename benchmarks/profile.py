"""Where the time of one EM pass goes, stage by stage, in the per-chunk kernel.

Runs the pieces of :func:`pipeline.mixture._kernels.em_chunk` one after the other on
one thread and adds up their times over the sub-blocks of n rows.
"""

import time

import numpy as np

STAGES = ("center + transpose", "E-step distances", "log-sum-exp + resp", "statistics")


def kernel_stages(n_samples, n_features, n_components, covariance_types, dtypes, repeats=3):
    from pipeline.mixture import _covariance
    from pipeline.mixture import _kernels as K

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_samples, n_features))
    rows = []
    for dtype in dtypes:
        Xd = X.astype(dtype)
        for covariance_type in covariance_types:
            D, k = n_features, n_components
            a = rng.normal(size=(k, D, D))
            covariances = {"full": a @ a.transpose(0, 2, 1) / D + np.eye(D),
                           "tied": np.eye(D) * 2.0, "diag": np.ones((k, D)),
                           "spherical": np.ones(k)}[covariance_type]
            model = K.prepare_model(np.full(k, 1.0 / k), rng.normal(scale=2.0, size=(k, D)),
                                    _covariance.precision_cholesky(covariances,
                                                                   covariance_type),
                                    covariance_type, dtype)
            best = None
            for _ in range(repeats):
                work, statistics = K._Workspace(), K._accumulator(model)
                spent = dict.fromkeys(STAGES, 0.0)
                for start, stop, step in K._e_steps(Xd, model, work):
                    t0 = time.perf_counter()
                    xt, features = step.center(Xd[start:stop])
                    t1 = time.perf_counter()
                    weighted = step.weighted_log_prob(features)
                    t2 = time.perf_counter()
                    log_prob_norm, resp = step.normalise(weighted)
                    t3 = time.perf_counter()
                    statistics.add(xt, features, resp, log_prob_norm, work)
                    t4 = time.perf_counter()
                    for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                        spent[stage] += seconds
                if best is None or sum(spent.values()) < sum(best.values()):
                    best = spent
            rows.append({"dtype": np.dtype(dtype).name, "covariance_type": covariance_type,
                         "form": "expanded" if model["expanded"] is not None else "whitening",
                         "block_rows": K.block_rows(model, D),
                         "ns_per_row": {s: v / n_samples * 1e9 for s, v in best.items()}})
    return rows
