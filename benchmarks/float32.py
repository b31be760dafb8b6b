"""float32 against float64 per EM iteration, on the embedded default and on processes.

    python -m benchmarks.float32 [--quick] [--save] [--repeats 3]

The issue asks for "float32 mode at least 1.7x faster than float64 per iteration". The
suite's per-iteration section measures mixlake on a LocalCluster of 2 worker processes
(its memory rows need a process per worker); a run's embedded default is now 2 worker
threads in the run's process (``cluster.processes: false``). This script measures both:
the benchmark data set (1,000,000 x 16, 8 files; ``--quick``: 100,000 rows), persisted
once per dtype, ``pipeline.GaussianMixture(8, covariance_type=..., tol=0,
random_state=0)`` with ``max_iter`` 1 and ``m``, per iteration = (T(m) - T(1)) / (m - 1)
from the fastest of the repeats; float64 and float32 alternate within each repeat. One
BLAS thread per worker, as a run (``pipeline.cluster.connect``). ``--save`` merges the
result into benchmarks/RESULTS.json and re-renders RESULTS.md.
"""

import argparse
import os
import tempfile
import time
import warnings

from benchmarks import data

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _per_iteration(seconds, m):
    return (min(seconds[m]) - min(seconds[1])) / (m - 1)


def measure_cluster(processes, folder, spec, repeats, m, types, log=print):
    from distributed import wait
    from sklearn.exceptions import ConvergenceWarning

    from pipeline import source as input_source
    from pipeline.cluster import connect
    from pipeline.config import Cluster, Source
    from pipeline.mixture import GaussianMixture

    out = {}
    with connect(Cluster(processes=processes)):
        arrays = {}
        for dtype in ("float64", "float32"):
            X = input_source.load(Source(path=folder, features=data.features(spec)),
                                  dtype=dtype).X.persist()
            wait(X)
            arrays[dtype] = X
        for covariance_type in types:
            seconds = {}
            for repeat in range(repeats):
                for dtype in ("float64", "float32") if repeat % 2 == 0 else ("float32",
                                                                               "float64"):
                    for max_iter in (1, m):
                        estimator = GaussianMixture(
                            8, covariance_type=covariance_type, tol=0, max_iter=max_iter,
                            random_state=0, dtype=None if dtype == "float64" else "float32")
                        started = time.perf_counter()
                        with warnings.catch_warnings():  # max_iter stops it on purpose
                            warnings.simplefilter("ignore", ConvergenceWarning)
                            estimator.fit(arrays[dtype])
                        elapsed = time.perf_counter() - started
                        seconds.setdefault(dtype, {}).setdefault(max_iter, []).append(elapsed)
            entry = {dtype: _per_iteration(seconds[dtype], m) for dtype in seconds}
            entry["ratio"] = entry["float64"] / entry["float32"]
            entry["seconds"] = {d: {str(k): v for k, v in s.items()} for d, s in seconds.items()}
            out[covariance_type] = entry
            log(f"{'processes' if processes else 'threads'} {covariance_type}: float64 "
                f"{entry['float64']:.3f} s, float32 {entry['float32']:.3f} s, "
                f"{entry['ratio']:.2f}x")
    return out


def measure(n_samples, repeats, m, data_dir, types=COVARIANCE_TYPES, log=print):
    spec = data.Spec(n_samples, 16, with_id=True, n_files=8)
    folder = data.generate(spec, data_dir)
    result = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "rows": n_samples, "repeats": repeats, "max_iter": m,
              "load_average": list(os.getloadavg())}
    for name, processes in (("worker threads (embedded default)", False),
                            ("worker processes", True)):
        result[name] = measure_cluster(processes, folder, spec, repeats, m, types, log)
    return result


def markdown(result):
    """The section of RESULTS.md."""
    lines = [
        "## float32 per iteration, embedded default (worker threads) and worker processes\n",
        f"`python -m benchmarks.float32`, {result['measured']}: {result['rows']:,} x 16, "
        f"K = 8, 2 workers x 1 thread; per iteration = (T({result['max_iter']}) - T(1)) / "
        f"{result['max_iter'] - 1}, fastest of {result['repeats']} alternating repeats.\n",
        "| workers | covariance | float64 | float32 | float32 speed-up |",
        "| --- | --- | ---: | ---: | ---: |"]
    for name in ("worker threads (embedded default)", "worker processes"):
        for covariance_type, entry in result[name].items():
            lines.append(f"| {name} | {covariance_type} | {1000 * entry['float64']:.0f} ms | "
                         f"{1000 * entry['float32']:.0f} ms | {entry['ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 1 repeat")
    parser.add_argument("--save", action="store_true",
                        help="merge into benchmarks/RESULTS.json, re-render RESULTS.md")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--types", nargs="+", default=list(COVARIANCE_TYPES),
                        choices=COVARIANCE_TYPES, help="covariance types (default: all)")
    parser.add_argument("--data-dir",
                        default=os.path.join(tempfile.gettempdir(), "mixlake-benchmark-data"))
    args = parser.parse_args(argv)
    n_samples, repeats = (100_000, 1) if args.quick else (1_000_000, args.repeats)
    result = measure(n_samples, repeats, 6, args.data_dir, types=tuple(args.types))
    result["quick"] = args.quick
    print(markdown(result))
    if args.save:
        from benchmarks.report import save_section

        save_section("float32", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
