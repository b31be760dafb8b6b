"""The benchmark suite: data sets, alternating contestants, best-of-repeats, RESULTS.md.

Per-iteration time is ``(T(max_iter=m) - T(max_iter=1)) / (m - 1)`` with ``tol=0``: the
set-up, initialisation and the final passes of each library cancel out. Within a data
set every contestant keeps its data loaded in its own process, and the contestants
take turns (rotated each repeat), so a slow moment of the shared machine hits all of
them alike; the estimate takes the fastest run of each kind (see :func:`estimate`), with
the spread of the per-repeat estimates.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

from benchmarks import contestants, data
from benchmarks.procs import Server, run_once

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]

FULL = {
    "mode": "full",
    "shapes": [
        {"name": "1M x 16, K=8", "spec": data.Spec(1_000_000, 16), "k": 8,
         "types": COVARIANCE_TYPES, "spark": True, "float32": True, "repeats": 3,
         "max_iter": 5},
        {"name": "5M x 16, K=8", "spec": data.Spec(5_000_000, 16), "k": 8, "types": ["full"],
         "spark": True, "float32": False, "repeats": 2, "max_iter": 4, "warm_up": False},
        # Spark's slowest fit (measured, see benchmarks/RESULTS.md): one repeat of it, and
        # no end-to-end run
        {"name": "1M x 64, K=16", "spec": data.Spec(1_000_000, 64, n_true=16), "k": 16,
         "types": ["full"], "spark": True, "float32": False, "repeats": 2, "max_iter": 3,
         "spark_repeats": 1, "warm_up": False, "e2e": False},
    ],
    "grid": {"spec": data.Spec(1_000_000, 16), "ks": list(range(1, 11)),
             "types": COVARIANCE_TYPES, "max_iter": 3, "repeats": 1},
    "tiny": {"max_iter": 21, "repeats": 5},
    "e2e_max_iter": 5,
    "matmul_n": 4000,
    "matmul_seconds": 3.0,
    "matmul_at_end": True,
    "profile_rows": 1_000_000,
}

QUICK = {
    "mode": "quick",
    "shapes": [
        {"name": "200k x 16, K=8", "spec": data.Spec(200_000, 16), "k": 8,
         "types": COVARIANCE_TYPES, "spark": True, "float32": True, "repeats": 1,
         "max_iter": 3},
    ],
    "grid": {"spec": data.Spec(200_000, 16), "ks": [2, 8], "types": COVARIANCE_TYPES,
             "max_iter": 2, "repeats": 1},
    "tiny": {"max_iter": 6, "repeats": 2},
    "e2e_max_iter": 3,
    "e2e_grid": False,
    "e2e_spark": False,
    "matmul_n": 2000,
    "matmul_seconds": 0.5,
    "matmul_at_end": False,
    "profile_rows": 200_000,
}

ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS")}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def settle(limit=35.0, timeout=15.0):
    """Wait until the machine is nearly idle (total CPU below ``limit`` percent over a
    short window, or ``timeout`` seconds): a JVM collecting garbage after Spark's fit,
    or another process's burst, should not land on the next contestant."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if psutil.cpu_percent(interval=0.3) < limit:
            return True
    return False


def _median(values):
    return statistics.median(values) if values else None


def estimate(firsts, lasts, max_iter):
    """Per-iteration time from the fastest T(1) and the fastest T(m) of the repeats.

    On a shared machine other work only ever adds time, so the fastest of a few runs is
    the closest to the cost of the work itself (as ``timeit`` reports the best of its
    repeats); the median is kept in the raw results too.
    """
    return (min(lasts) - min(firsts)) / (max_iter - 1)


def _per_iteration(samples, max_iter):
    """The estimate, the median-based one, and the spread of the per-repeat estimates."""
    firsts = [s[1]["seconds"] for s in samples if s[0] == 1]
    lasts = [s[1]["seconds"] for s in samples if s[0] == max_iter]
    if not firsts or not lasts:
        return None
    median = (_median(lasts) - _median(firsts)) / (max_iter - 1)
    each = [(b - a) / (max_iter - 1) for a, b in zip(firsts, lasts)]
    peaks = [s[1] for s in samples if s[0] == max_iter]
    memory = max(peaks, key=lambda p: p.get("peak") or 0)
    return {"seconds": estimate(firsts, lasts, max_iter), "median_based": median,
            "min": min(each), "max": max(each), "t1": firsts, "tm": lasts,
            "max_iter": max_iter, "memory": memory}


# ------------------------------------------------------------------ machine


def machine():
    import numpy
    import threadpoolctl

    def cmd(args):
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    lscpu = {}
    for line in cmd(["lscpu"]).splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            lscpu[key.strip()] = value.strip()
    java = cmd(["java", "-version"]) or subprocess.run(
        ["java", "-version"], capture_output=True, text=True).stderr
    versions = {}
    from importlib import metadata
    for name in ("numpy", "scipy", "scikit-learn", "dask", "distributed", "pyspark", "pyarrow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    blas = threadpoolctl.threadpool_info()
    import psutil
    return {
        "cpu": lscpu.get("Model name"), "cores": os.cpu_count(),
        "l2": lscpu.get("L2 cache"), "l3": lscpu.get("L3 cache"),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "numpy": numpy.__version__,
        "blas": [f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')})"
                 for b in blas],
        "java": (java.splitlines() or [""])[0], "versions": versions,
        "platform": platform.platform(),
    }


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ------------------------------------------------------------------ sections


def matmul_ceiling(n, seconds=3.0):
    """GFLOP/s of an n x n matmul: 1 process x 1 thread, 2 processes x 1 thread at the
    same time (what two single-threaded workers can do), 1 process x 2 threads."""
    out = {}
    for dtype in ("float64", "float32"):
        one = Server(contestants.Matmul)
        two = Server(contestants.Matmul)
        threaded = Server(contestants.Matmul, env={k: "2" for k in ONE_THREAD})
        try:
            single = one.call("gflops", n=n, dtype=dtype, seconds=seconds)["gflops"]
            one.send("gflops", n=n, dtype=dtype, seconds=seconds)
            two.send("gflops", n=n, dtype=dtype, seconds=seconds)
            pair = one.receive()["gflops"] + two.receive()["gflops"]
            result = threaded.call("gflops", n=n, dtype=dtype, seconds=seconds)
        finally:
            for server in (one, two, threaded):
                server.close()
        out[dtype] = {"1 process x 1 thread": single, "2 processes x 1 thread": pair,
                      "1 process x 2 threads": result["gflops"],
                      "threads seen": result["threads"]}
        log(f"matmul {dtype}: {out[dtype]}")
    return out


def _servers(shape, folder, spark):
    spec = asdict(shape["spec"])
    servers = {"mixlake": Server(contestants.Mixlake, folder, spec),
               "sklearn": Server(contestants.Sklearn, folder, spec)}
    if shape.get("float32"):
        # its own cluster, so that each cluster's memory holds one copy of the data
        servers["mixlake-float32"] = Server(contestants.Mixlake, folder, spec,
                                            dtype="float32")
    if spark and shape.get("spark"):
        try:
            servers["spark"] = Server(contestants.Spark, folder, spec,
                                      driver_memory=_spark_memory(shape["spec"]))
        except Exception as exc:  # noqa: BLE001 - reported, the others still run
            log(f"Spark unavailable: {exc}")
    return servers


def _spark_memory(spec):
    return "12g" if spec.nbytes > 2**30 else "8g"


def per_iteration(shape, folder, spark):
    """Alternate the contestants on one data set; return per-iteration estimates."""
    servers = _servers(shape, folder, spark)
    max_iter, repeats, k = shape["max_iter"], shape["repeats"], shape["k"]
    samples = {}
    try:
        order = list(servers)
        # one unrecorded fit each first: Spark's JIT and every library's lazy imports
        # (on the larger data sets the fastest-of-repeats estimate copes without it)
        if shape.get("warm_up", True):
            for server in servers.values():
                server.call("fit", covariance_type="full", n_components=k, max_iter=1)
        for rep in range(repeats):
            turn = order[rep % len(order):] + order[:rep % len(order)]
            for covariance_type in shape["types"]:
                for name in turn:
                    if name == "spark" and (covariance_type != "full" or rep >= shape.get(
                            "spark_repeats", repeats)):
                        continue
                    for m in (1, max_iter):
                        settle()
                        result = servers[name].call("fit", covariance_type=covariance_type,
                                                    n_components=k, max_iter=m)
                        samples.setdefault((name, covariance_type), []).append((m, result))
                        log(f"{shape['name']} {covariance_type} {name} max_iter={m}: "
                            f"{result['seconds']:.3f} s")
    finally:
        for server in servers.values():
            server.close()
    out = {}
    for (name, covariance_type), values in samples.items():
        out.setdefault(covariance_type, {})[name] = _per_iteration(values, max_iter)
    return out


def tiny_overhead(plan):
    server = Server(contestants.MixlakeTiny)
    samples = []
    try:
        for _ in range(plan["repeats"]):
            for m in (1, plan["max_iter"]):
                samples.append((m, server.call("fit", covariance_type="full",
                                               n_components=8, max_iter=m)))
    finally:
        server.close()
    result = _per_iteration(samples, plan["max_iter"])
    log(f"dask overhead per iteration: {result['seconds'] * 1000:.1f} ms")
    return result


def grid_per_iteration(plan, folder):
    spec = asdict(plan["spec"])
    servers = {"mixlake": Server(contestants.Mixlake, folder, spec),
               "sklearn": Server(contestants.Sklearn, folder, spec)}
    samples = {}
    try:
        for _rep in range(plan["repeats"]):
            for name, server in servers.items():
                for m in (1, plan["max_iter"]):
                    settle()
                    result = server.call("grid", component_counts=plan["ks"],
                                         covariance_types=plan["types"], max_iter=m)
                    samples.setdefault(name, []).append((m, result))
                    log(f"grid {name} max_iter={m}: {result['seconds']:.2f} s")
    finally:
        for server in servers.values():
            server.close()
    return {name: _per_iteration(values, plan["max_iter"]) for name, values in samples.items()}


def end_to_end(plan, folders, spark, work_dir):
    rows = []
    m = plan["e2e_max_iter"]
    cases = [(shape["name"], folders[shape["name"]], shape["spec"], [shape["k"]], ["full"])
             for shape in plan["shapes"] if shape.get("e2e", True)]
    if plan.get("e2e_grid", True):
        grid = plan["grid"]
        cases.append((f"grid {len(grid['ks'])} K x {len(grid['types'])} types",
                      folders["grid"], grid["spec"], grid["ks"], grid["types"]))
    for name, folder, spec, ks, types in cases:
        row = {"case": name}
        spec = asdict(spec)
        jobs = [("mixlake", contestants.e2e_mixlake,
                 dict(component_counts=ks, covariance_types=types)),
                ("sklearn", contestants.e2e_sklearn,
                 dict(component_counts=ks, covariance_types=types))]
        if spark and types == ["full"] and plan.get("e2e_spark", True):
            jobs.append(("spark", contestants.e2e_spark,
                         dict(component_counts=ks,
                              driver_memory=_spark_memory(data.Spec(**spec)))))
        for contestant, function, kwargs in jobs:
            out_dir = os.path.join(work_dir, f"e2e-{contestant}-{len(rows)}")
            try:
                row[contestant] = run_once(function, folder=folder, spec=spec, max_iter=m,
                                           out_dir=out_dir, **kwargs)
                log(f"end to end {name} {contestant}: {row[contestant]['seconds']:.1f} s")
            except Exception as exc:  # noqa: BLE001 - recorded in the results
                row[contestant] = {"error": str(exc).strip().splitlines()[-1]}
                log(f"end to end {name} {contestant} failed: {row[contestant]['error']}")
        rows.append(row)
    return rows


def kernel_profile(rows):
    from benchmarks import profile

    return run_once(profile.kernel_stages, n_samples=rows, n_features=16, n_components=8,
                    covariance_types=COVARIANCE_TYPES, dtypes=["float64", "float32"])


# ------------------------------------------------------------------ main


SECTIONS = ("matmul", "per_iteration", "tiny", "grid", "end_to_end", "end_to_end_process",
            "profile")


def run(quick=False, data_dir=None, results_path=None, json_path=None, spark=True,
        only=None, shapes=None, mixlake_command="mixlake"):
    """Run the suite (or the sections in ``only``, merged into the saved results).

    ``mixlake_command`` is the command line the whole-process section times (what a user
    types; e.g. ``python -m flows.cli`` for a checkout that is not installed).
    """
    plan = QUICK if quick else FULL
    data_dir = data_dir or os.path.join(tempfile.gettempdir(), "mixlake-benchmark-data")
    here = os.path.dirname(os.path.abspath(__file__))
    results_path = results_path or os.path.join(here, "RESULTS.md")
    json_path = json_path or os.path.splitext(results_path)[0] + ".json"
    started = time.perf_counter()
    wanted = set(only or SECTIONS)
    results = {}
    if only and os.path.exists(json_path):
        with open(json_path) as f:
            results = json.load(f)
        results.setdefault("rerun", []).append(
            {"sections": sorted(wanted), "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "load_average": load_average()})
    else:
        results.update({"plan": _plan_summary(plan), "machine": machine(),
                        "command": _command(quick), "load_average_start": load_average(),
                        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    elapsed = results.get("seconds", 0.0)

    def save():
        results["load_average_end"] = load_average()
        results["seconds"] = elapsed + time.perf_counter() - started
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1, default=float)
        from benchmarks import report

        report.write(results, results_path)

    log(f"data sets in {data_dir}")
    folders = {}
    if wanted & {"per_iteration", "grid", "end_to_end"}:
        for shape in plan["shapes"]:
            folders[shape["name"]] = data.generate(shape["spec"], data_dir)
        folders["grid"] = data.generate(plan["grid"]["spec"], data_dir)
        log("data ready")
    if "matmul" in wanted:
        results["matmul"] = matmul_ceiling(plan["matmul_n"], plan["matmul_seconds"])
        save()
    if "per_iteration" in wanted:
        results.setdefault("per_iteration", {})
        for shape in plan["shapes"]:
            if shapes and shape["name"] not in shapes:
                continue
            results["per_iteration"][shape["name"]] = per_iteration(
                shape, folders[shape["name"]], spark)
            save()
    if "tiny" in wanted:
        results["tiny"] = tiny_overhead(plan["tiny"])
    if "grid" in wanted:
        results["grid"] = grid_per_iteration(plan["grid"], folders["grid"])
    save()
    if "end_to_end" in wanted:
        with tempfile.TemporaryDirectory(prefix="mixlake-benchmark-") as work_dir:
            results["end_to_end"] = end_to_end(plan, folders, spark, work_dir)
        save()
    if "end_to_end_process" in wanted:
        from benchmarks import endtoend

        with tempfile.TemporaryDirectory(prefix="mixlake-benchmark-") as work_dir:
            results["end_to_end_process"] = endtoend.run(
                endtoend.PLANS[plan["mode"]], data_dir, work_dir, command=mixlake_command,
                cases=shapes, previous=results.get("end_to_end_process"),
                # a whole run lasts long enough to wait a little longer for a quiet machine
                settle=lambda: settle(timeout=20.0))
        save()
    if "profile" in wanted:
        results["profile"] = kernel_profile(plan["profile_rows"])
    if "matmul" in wanted and plan["matmul_at_end"]:
        results["matmul_end"] = matmul_ceiling(plan["matmul_n"], plan["matmul_seconds"])
    save()
    log(f"done in {time.perf_counter() - started:.0f} s: {results_path}")
    return results


def _command(quick):
    return "python -m benchmarks" + (" --quick" if quick else "")


def _plan_summary(plan):
    def shape(s):
        return {**{k: v for k, v in s.items() if k != "spec"}, "spec": asdict(s["spec"])}

    return {"mode": plan["mode"], "shapes": [shape(s) for s in plan["shapes"]],
            "grid": shape(plan["grid"]), "tiny": plan["tiny"],
            "e2e_max_iter": plan["e2e_max_iter"]}
