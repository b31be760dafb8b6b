"""Warm against cold refit after a small drift: what `mixlake update` saves by starting EM
from the current model (``model.init_from``) instead of k-means.

    python -m benchmarks.warm_refit [--days 10] [--rows 50000] [--features 8]
                                    [--components 6] [--drift 0.5] [--repeats 3]

A Hive-partitioned table of overlapping clusters; a model is fitted (cold) on the first
``--days`` days; then two more days arrive in which one component has moved by
``--drift`` of its standard deviation. Both refits fit the whole table (every day) with
the same component count, covariance type and tolerance, through ``pipeline.run.execute``
on the same 2-worker LocalCluster of processes, alternating, ``--repeats`` times:

- warm: EM starts from the current model's weights, means and precisions;
- cold: k-means|| + Lloyd, then EM (the default initialisation).

Reports iterations, passes over the data, the time of the model selection step and of
the whole run, and the final log-likelihood per row of each (they must agree within
1e-4). Prints a Markdown table.
"""

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path


def _write_day(folder, day, X, first_id):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    partition = Path(folder) / f"day={day}"
    partition.mkdir(parents=True, exist_ok=True)
    columns = {"id": pa.array(np.arange(first_id, first_id + len(X), dtype=np.int64)),
               **{f"x{j}": pa.array(X[:, j]) for j in range(X.shape[1])}}
    pq.write_table(pa.table(columns), partition / "part-0.parquet")


def make_tables(lake, days, rows, n_features, n_components, drift, seed=0):
    """``days`` ordinary days and two drifted ones (component 0 moved ``drift`` SDs along
    x0); returns the last ordinary day."""
    import datetime as dt

    import numpy as np

    clusters = np.random.default_rng([seed, 0])
    # overlapping clusters: EM has work to do after k-means
    centers = clusters.uniform(-3, 3, size=(n_components, n_features))
    scales = clusters.uniform(0.8, 1.5, size=n_components)
    start = dt.date(2026, 11, 1)
    for offset in range(days + 2):
        rng = np.random.default_rng([seed, offset + 1])
        truth = rng.integers(n_components, size=rows)
        X = centers[truth] + rng.standard_normal((rows, n_features)) * scales[truth, None]
        if offset >= days:
            X[truth == 0, 0] += drift * scales[0]
        _write_day(lake, (start + dt.timedelta(days=offset)).isoformat(), X, offset * rows)
    return (start + dt.timedelta(days=days - 1)).isoformat()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warm_refit")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rows", type=int, default=50_000, help="rows per day")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--components", type=int, default=6)
    parser.add_argument("--covariance-type", default="full")
    parser.add_argument("--drift", type=float, default=0.5,
                        help="how far component 0 moves, in its standard deviations")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

    from distributed import Client, LocalCluster

    from pipeline import run
    from pipeline.config import parse_config

    work = Path(args.dir or tempfile.mkdtemp(prefix="mixlake-warm-refit-"))
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    last_day = make_tables(lake, args.days, args.rows, args.features, args.components,
                           args.drift)
    features = [f"x{j}" for j in range(args.features)]

    def config(out, **model):
        return parse_config({
            "source": {"path": str(lake), "passthrough": ["id", "day"], "features": features,
                       **model.pop("source", {})},
            "model": {"n_components": args.components,
                      "covariance_type": args.covariance_type, "tol": args.tol,
                      "max_iter": 1000, "random_state": 0, **model},
            "output": {"path": str(out), "mode": "overwrite", "columns": ["log_density"]},
            "cluster": {"address": address}})

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster):
        address = cluster.scheduler_address
        current = work / "current"
        run.execute(config(current, source={"filter": [["day", "<=", last_day]]}), run.FIT)
        rows = {"warm": [], "cold": []}
        for _ in range(args.repeats):
            for way in ("warm", "cold"):
                out = work / way
                extra = {"init_from": str(current)} if way == "warm" else {}
                summary = run.execute(config(out, **extra), run.FIT)
                (chosen,) = summary["candidates"]
                rows[way].append({"iterations": chosen["n_iter"], "passes": summary["passes"],
                                  "select": summary["timings"]["select"],
                                  "run": sum(summary["timings"].values()),
                                  "loglik": chosen["log_likelihood"],
                                  "converged": chosen["converged"]})
                shutil.rmtree(out, ignore_errors=True)
    n_rows = (args.days + 2) * args.rows
    print(f"\n{args.days} + 2 days x {args.rows:,} rows = {n_rows:,} rows x {args.features} "
          f"features, {args.components} {args.covariance_type} components, tol {args.tol:g}; "
          f"drift: component 0 moved {args.drift:g} SD in the last 2 days; "
          f"{args.repeats} alternating repeats\n")
    print("| refit | iterations | passes | select, fastest | select, median | whole run, "
          "fastest | log-likelihood per row |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for way, label in (("warm", "warm (model.init_from)"), ("cold", "cold (k-means)")):
        r = rows[way]
        assert all(x["converged"] for x in r), f"{way} did not converge"
        print(f"| {label} | {r[0]['iterations']} | {r[0]['passes']} | "
              f"{min(x['select'] for x in r):.2f} s | "
              f"{statistics.median(x['select'] for x in r):.2f} s | "
              f"{min(x['run'] for x in r):.2f} s | {r[0]['loglik']:.6f} |")
    difference = rows["warm"][0]["loglik"] - rows["cold"][0]["loglik"]
    speedup = min(x["select"] for x in rows["cold"]) / min(x["select"] for x in rows["warm"])
    print(f"\nwarm - cold log-likelihood per row: {difference:+.2e} (target within 1e-4); "
          f"select {speedup:.1f}x faster warm, "
          f"{rows['cold'][0]['iterations'] / max(rows['warm'][0]['iterations'], 1):.1f}x "
          "fewer iterations")


if __name__ == "__main__":
    main()
