"""Whole processes, timed from the shell: ``mixlake run cfg.yaml`` against the plain
scikit-learn script a user writes instead (``python benchmarks/sklearn_script.py``), and a
40-candidate ``mixlake run`` against the scikit-learn selection loop
(``benchmarks/sklearn_grid_script.py``).

Both sides read the same Parquet files (an ``id`` column and 16 float64 features) and write
the same columns per input file (``id``, ``cluster`` int32, ``prob_0..K-1`` float64); the
outputs are compared after each case (schema, rows, ids, agreement of the labels). Each run
is a fresh process started with the command line a user types, into an empty output
folder; the two sides alternate (the order rotates every repeat) and the machine is let
settle before each run.

Measured per run: the wall time of the whole process (start to exit, as ``time`` in a
shell reports it), the CPU seconds of the process and every process it waited for
(``wait4``), and the peak of the resident memory summed over the process tree (the
``mixlake`` run starts dask worker processes), sampled every 50 ms. Summed RSS counts the
pages of shared libraries once per process, so it is an upper bound of what the tree holds.

The time breakdown of a ``mixlake run`` comes from the run's own output: the arrival time
of each stderr line (``started a LocalCluster``, ``loaded ...``, ``... initialised ...``,
``iteration N``, ``selected ...``, ``writing ...``) and of the summary on stdout, whose
``time`` line gives the writing step's own duration. Separate fresh processes measure what
start-up consists of (the interpreter, ``import flows.cli``, ``mixlake --help``, the
embedded LocalCluster starting and closing), and one untimed instrumented run counts the
seconds the command's process spends importing modules, per phase.
"""

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time

from benchmarks import data

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "sklearn_script.py")
GRID_SCRIPT = os.path.join(HERE, "sklearn_grid_script.py")
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
SAMPLE_SECONDS = 0.05
TREE_SECONDS = 0.25  # listing a process's children scans /proc: ~8 ms here

PLANS = {
    "full": {
        "cases": [
            {"name": "1M x 16, K=8", "spec": data.Spec(1_000_000, 16, with_id=True, n_files=8),
             "repeats": 3},
            {"name": "5M x 16, K=8", "spec": data.Spec(5_000_000, 16, with_id=True, n_files=8),
             "repeats": 2},
            {"name": "grid 1-10 x 4 types, 1M x 16",
             "spec": data.Spec(1_000_000, 16, with_id=True, n_files=8), "grid": 10,
             "repeats": 1},
        ],
        "probe_repeats": 3,
    },
    "quick": {
        "cases": [
            {"name": "100k x 16, K=8", "spec": data.Spec(100_000, 16, with_id=True, n_files=8),
             "repeats": 1},
            {"name": "grid 1-3 x 4 types, 100k x 16",
             "spec": data.Spec(100_000, 16, with_id=True, n_files=8), "grid": 3,
             "repeats": 1},
        ],
        "probe_repeats": 1,
    },
}


def _log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ one timed process


class _TreeMemory:
    """Peak of the RSS summed over a process and its descendants, sampled in a thread."""

    def __init__(self, pid):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.peak = 0
        self.peak_largest = 0
        self.most_processes = 1
        # the programs of the descendants seen (a dask worker process is a Python one; a
        # short-lived helper a library runs, e.g. ldconfig, is not)
        self.descendants = set()
        self._procs = {pid: self.root}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _refresh(self):
        try:
            found = [self.root, *self.root.children(recursive=True)]
        except self._psutil.Error:
            return
        # keep the Process objects already known (a pid's identity includes its start time)
        self._procs = {p.pid: self._procs.get(p.pid, p) for p in found}
        self.most_processes = max(self.most_processes, len(self._procs))
        for proc in found[1:]:
            try:
                self.descendants.add(proc.name())
            except self._psutil.Error:
                continue

    def _loop(self):
        listed = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - listed >= TREE_SECONDS:
                self._refresh()
                listed = now
            total = largest = 0
            for proc in list(self._procs.values()):
                try:
                    rss = proc.memory_info().rss
                except self._psutil.Error:
                    continue
                total += rss
                largest = max(largest, rss)
            self.peak = max(self.peak, total)
            self.peak_largest = max(self.peak_largest, largest)
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self):
        self._stop.set()
        self._thread.join()


def _read_lines(stream, start, out):
    for raw in iter(stream.readline, b""):
        out.append((time.perf_counter() - start, raw.decode(errors="replace").rstrip("\n")))
    stream.close()


def timed(argv, cwd=None, env=None, timeout=None):
    """Run ``argv`` once in a fresh process; wall time, CPU, peak memory of the tree, and
    every line it printed with its arrival time (seconds from the start)."""
    env = dict(os.environ if env is None else env)
    # the summary's arrival time marks the end of the run's work, before interpreter exit
    env["PYTHONUNBUFFERED"] = "1"
    stdout, stderr, finished = [], [], {}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    memory = _TreeMemory(proc.pid)
    readers = [threading.Thread(target=_read_lines, args=(s, start, out), daemon=True)
               for s, out in ((proc.stdout, stdout), (proc.stderr, stderr))]
    for reader in readers:
        reader.start()

    def reap():
        # wait4: the exit time and the CPU of the process and of every child it waited for
        _, status, usage = os.wait4(proc.pid, 0)
        finished.update(seconds=time.perf_counter() - start, status=status, usage=usage)

    waiter = threading.Thread(target=reap, daemon=True)
    waiter.start()
    waiter.join(timeout)
    if waiter.is_alive():
        proc.kill()
        waiter.join()
    memory.stop()
    for reader in readers:
        reader.join()
    proc.returncode = os.waitstatus_to_exitcode(finished["status"])
    usage = finished["usage"]
    return {"seconds": finished["seconds"], "returncode": proc.returncode,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss": memory.peak, "peak_rss_largest_process": memory.peak_largest,
            "processes": memory.most_processes,
            "descendants": sorted(memory.descendants), "stdout": stdout, "stderr": stderr}


def _summary(result):
    """The small part of a run kept in RESULTS.json."""
    return {k: result[k] for k in ("seconds", "returncode", "cpu_seconds", "peak_rss",
                                   "peak_rss_largest_process", "processes",
                                   "descendants")}


def _tail(result, n=5):
    return "\n".join(line for _, line in (result["stderr"] + result["stdout"])[-n:])


# ------------------------------------------------------------------ the mixlake log


_MARKERS = {
    "cluster": re.compile(r"started a LocalCluster|connected to the Dask scheduler"),
    "loaded": re.compile(r"\bloaded \d+ rows"),
    "initialised": re.compile(r"candidates? initiali[sz]ed|initiali[sz]ation \("),
    # the leading run's line of each pass; a grid's ends with "(k of n runs go on)"
    "iteration": re.compile(r"\biteration (\d+)\b.*?([\d.]+) s(?: \(.*\))?\s*$"),
    "selected": re.compile(r"\bselected \S+ by\b"),
    "writing": re.compile(r"\bwriting \d+ partition"),
}
_LOG_LIKELIHOOD = re.compile(r"log-likelihood (-?[\d.]+)")
_CHOSEN = re.compile(r"chosen\s+(\S+?):? .*?\bBIC (-?[\d,.]+)")
_SUMMARY_START = re.compile(r"^mixlake run \S+")
_SUMMARY_TIME = re.compile(r"^\s*time\s+(.*)$")
_TIME_PART = re.compile(r"([A-Za-z][\w+-]*(?: [A-Za-z][\w+-]*)*) (\d+(?:\.\d+)?) s\b")
_SUMMARY_PASSES = re.compile(r"(\d+) passes over the data")
_SUMMARY_ITERATIONS = re.compile(r"(\d+) iterations, (converged|NOT converged)")

# (key, what it covers), in the order the run goes through them
PHASES = [
    ("start-up", "process start to the cluster being up: interpreter, imports, config, "
                 "input footers, LocalCluster start"),
    ("load", "reading the Parquet files into the workers"),
    ("init", "the k-means sample (k-means on it, on the client) and the labelling pass"),
    ("EM", "EM iterations (first to last iteration line)"),
    ("final pass", "last iteration line to the selected line (the BIC pass)"),
    ("write", "writing the assignments and the model (the summary's own write time)"),
    ("close + report", "closing the cluster, the report and its plots, publishing"),
    ("exit", "summary printed to process exit (interpreter shutdown)"),
]


def breakdown(result):
    """Where a ``mixlake run``'s wall time went, from the arrival times of its lines.

    Returns a dict: ``phases`` (seconds per key of :data:`PHASES`, None where the marker
    lines were not found), ``first_line`` (the first log line: the cluster is up, the first
    read of the data starts), ``loaded`` (data in the workers), ``iterations`` (their own
    timings), ``summary_time`` (the summary's ``time`` line) and ``passes``.
    """
    marks, iterations = {}, []
    for t, line in result["stderr"]:
        for key, pattern in _MARKERS.items():
            match = pattern.search(line)
            if not match:
                continue
            if key != "iteration":
                marks.setdefault(key, t)
            elif not iterations or int(match.group(1)) != iterations[-1][1]:
                # candidates of a grid advance in lock-step: one pass per iteration number
                iterations.append((t, int(match.group(1)), float(match.group(2))))
            else:
                iterations[-1] = (t, *iterations[-1][1:])
    summary_at, summary_time, passes, n_iter = None, {}, None, None
    for t, line in result["stdout"]:
        if summary_at is None and _SUMMARY_START.search(line):
            summary_at = t
        match = _SUMMARY_TIME.search(line)
        if match:
            for name, value in _TIME_PART.findall(match.group(1)):
                summary_time[name] = float(value)
        match = _SUMMARY_PASSES.search(line)
        if match:
            passes = int(match.group(1))
        match = _SUMMARY_ITERATIONS.search(line)
        if match:
            n_iter = int(match.group(1))

    def span(a, b):
        return None if a is None or b is None else b - a

    first_iteration = iterations[0][0] if iterations else None
    last_iteration = iterations[-1][0] if iterations else None
    # an initialisation line comes before the first iteration; without one, init ends
    # where the first iteration started (its own time before its line)
    init_end = marks.get("initialised")
    if init_end is None and iterations:
        init_end = first_iteration - iterations[0][2]
    write = summary_time.get("write")
    write_end = None if write is None or "writing" not in marks else marks["writing"] + write
    phases = {
        "start-up": marks.get("cluster"),
        "load": span(marks.get("cluster"), marks.get("loaded")),
        "init": span(marks.get("loaded"), init_end),
        "EM": span(init_end, last_iteration),
        "final pass": span(last_iteration, marks.get("selected")),
        "write": write,
        "close + report": span(write_end, summary_at),
        "exit": span(summary_at, result["seconds"]),
    }
    # the selected line to the writing line: the client picks and prepares the model
    gap = span(marks.get("selected"), marks.get("writing"))
    if gap is not None and phases["write"] is not None:
        phases["write"] += gap
    elif gap is not None and write_end is None:
        phases["write"] = span(marks.get("selected"), summary_at)
    known = sum(v for v in phases.values() if v is not None)
    return {
        "phases": phases,
        "unaccounted": result["seconds"] - known,
        "first_line": marks.get("cluster"),
        "loaded": marks.get("loaded"),
        "iterations": [{"iteration": i, "seconds": s} for _, i, s in iterations],
        "summary_time": summary_time,
        "passes": passes,
        "n_iter": n_iter,
        "wall": result["seconds"],
    }


# ------------------------------------------------------------------ outputs agree


def quality(mixlake_result, script_result):
    """What each side ended with: the mean log-likelihood per row of the last EM iteration
    (one model), or the chosen candidate and its BIC (a grid)."""
    out = {}
    for side, result, lines in (("mixlake", mixlake_result, mixlake_result["stderr"]),
                                ("sklearn", script_result, script_result["stdout"])):
        found = {}
        for _, line in lines + (result["stdout"] if side == "mixlake" else []):
            match = _LOG_LIKELIHOOD.search(line)
            if match:
                found["log_likelihood"] = float(match.group(1))
            match = _CHOSEN.search(line)
            if match:
                found["chosen"] = match.group(1).removesuffix("-init0")
                found["bic"] = float(match.group(2).replace(",", ""))
        out[side] = found
    return out


def compare_outputs(ours, theirs):
    """Same files, schema, rows and ids on both sides; how many rows get the same
    cluster up to a renumbering of the components (each of our clusters matched to the
    script's cluster it shares most rows with)."""
    import numpy as np
    import pyarrow.parquet as pq

    names = sorted(f for f in os.listdir(ours) if f.endswith(".parquet"))
    other = sorted(f for f in os.listdir(theirs) if f.endswith(".parquet"))
    out = {"files": len(names), "same_files": names == other}
    if not out["same_files"]:
        return out
    same_schema, same_ids, rows = True, True, 0
    a_labels, b_labels = [], []
    for name in names:
        a, b = pq.read_table(os.path.join(ours, name)), pq.read_table(os.path.join(theirs, name))
        same_schema &= a.schema.remove_metadata().equals(b.schema.remove_metadata())
        same_ids &= a.num_rows == b.num_rows and a["id"].equals(b["id"])
        rows += a.num_rows
        a_labels.append(a["cluster"].to_numpy(zero_copy_only=False))
        b_labels.append(b["cluster"].to_numpy(zero_copy_only=False))
    out.update(same_schema=bool(same_schema), same_ids=bool(same_ids), rows=rows,
               columns=a.column_names)
    if same_ids:
        a_all, b_all = np.concatenate(a_labels), np.concatenate(b_labels)
        width = int(max(a_all.max(), b_all.max())) + 1
        table = np.bincount(a_all * width + b_all, minlength=width * width).reshape(width, -1)
        out["label_agreement"] = float(table.max(axis=1).sum() / rows)
    return out


# ------------------------------------------------------------------ start-up probes


_CLUSTER_PROBE = """\
{preamble}
import json
import time


def main():
    t0 = time.perf_counter()
    from pipeline.cluster import connect
    from pipeline.config import Cluster
    t1 = time.perf_counter()
    with connect(Cluster()):
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    print(json.dumps({{"import": t1 - t0, "start": t2 - t1, "close": t3 - t2}}))


if __name__ == "__main__":
    main()
"""

# Runs a console script's entry point in this process with every import and every log
# record timed; the dask workers it starts are other processes and are not counted.
_IMPORT_PROBE = """\
import builtins, json, logging, sys, threading, time
from importlib import metadata
t0 = time.perf_counter()
out_path, script, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
spans, records, local = [], [], threading.local()
real_import = builtins.__import__
def timed_import(name, globals=None, locals=None, fromlist=(), level=0):
    if getattr(local, "depth", 0):
        return real_import(name, globals, locals, fromlist, level)
    local.depth, start = 1, time.perf_counter()
    try:
        return real_import(name, globals, locals, fromlist, level)
    finally:
        local.depth = 0
        end = time.perf_counter()
        if end - start > 1e-4:
            spans.append((start - t0, end - t0, name))
class Stamp(logging.Handler):
    def emit(self, record):
        records.append((time.perf_counter() - t0, record.getMessage()))
logging.getLogger("pipeline").addHandler(Stamp(logging.INFO))
builtins.__import__ = timed_import
entry = next(iter(metadata.entry_points(group="console_scripts", name=script)))
# the module's main(), not the console wrapper that ends the process when it is done
main = getattr(__import__(entry.module, fromlist=["main"]), "main", None) or entry.load()
sys.argv = [script, *argv]
try:
    main()
except SystemExit:
    pass
finally:
    builtins.__import__ = real_import
    with open(out_path, "w") as f:
        json.dump({"spans": spans, "records": records, "end": time.perf_counter() - t0}, f)
"""


def _fastest_median(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"fastest": None, "median": None, "all": []}
    return {"fastest": min(values), "median": statistics.median(values), "all": values}


def _import_accounting(raw):
    """Seconds of imports in the command's process per phase (phases cut at the log
    records), and the slowest outermost imports."""
    cuts = [("before the cluster is up", _MARKERS["cluster"]),
            ("load", _MARKERS["loaded"]), ("init + EM + final pass", _MARKERS["selected"]),
            ("write", None)]
    bounds = []
    for label, pattern in cuts:
        at = None
        if pattern is not None:
            at = next((t for t, message in raw["records"] if pattern.search(message)), None)
        bounds.append((label, raw["end"] if at is None else at))
    per_phase = {label: 0.0 for label, _ in cuts}
    per_phase["after the writing"] = 0.0
    for start, end, _ in raw["spans"]:
        label = next((lab for lab, at in bounds if start < at), "after the writing")
        per_phase[label] += end - start
    slowest = sorted(raw["spans"], key=lambda s: s[0] - s[1])[:12]
    return {"total": sum(e - s for s, e, _ in raw["spans"]), "per_phase": per_phase,
            "slowest": [{"module": name, "seconds": e - s, "at": s} for s, e, name in slowest],
            "end": raw["end"]}


def _entry_point(script):
    from importlib import metadata

    found = list(metadata.entry_points(group="console_scripts", name=script))
    return found[0] if found else None


def startup_probes(command, config_path, work_dir, env, repeats, settle):
    """What start-up consists of, each in fresh processes (fastest and median).

    The embedded LocalCluster is started twice: from a script that imports nothing else,
    and from one whose main module imports the command's module, as the ``mixlake``
    script does: dask starts its workers with ``spawn``, which imports the parent's main
    module again in every worker.
    """
    python = sys.executable
    script = os.path.basename(command[0]) if len(command) == 1 else "mixlake"
    entry = _entry_point(script)
    module = entry.module if entry else "flows.cli"
    probes = {
        "python -c pass": [python, "-c", "pass"],
        f"python -c 'import {module}'": [python, "-c", f"import {module}"],
        f"{shlex.join(command)} --help": [*command, "--help"],
    }
    clusters = {"plain": "", "main": f"import {module}  # noqa: F401"}
    for name, preamble in clusters.items():
        with open(os.path.join(work_dir, f"cluster_probe_{name}.py"), "w") as f:
            f.write(_CLUSTER_PROBE.format(preamble=preamble))
    out = {name: [] for name in probes}
    cluster = {name: [] for name in clusters}
    for _ in range(repeats):
        for name, argv in probes.items():
            settle()
            result = timed(argv, cwd=work_dir, env=env, timeout=300)
            out[name].append(result["seconds"] if result["returncode"] == 0 else None)
        for name in clusters:
            settle()
            result = timed([python, f"cluster_probe_{name}.py"], cwd=work_dir, env=env,
                           timeout=300)
            line = next((line for _, line in reversed(result["stdout"])
                         if line.startswith("{")), None)
            if result["returncode"] == 0 and line:
                cluster[name].append(json.loads(line))
    probes_out = {name: _fastest_median(values) for name, values in out.items()}
    for name, label in (("plain", "from a script that imports nothing else"),
                        ("main", f"from a script that imports {module}")):
        probes_out[f"LocalCluster start {label}"] = _fastest_median(
            [c["start"] for c in cluster[name]])
    probes_out["LocalCluster close"] = _fastest_median([c["close"] for c in cluster["plain"]])
    result = {"probes": probes_out, "module": module}
    # one untimed, instrumented run of the command's entry point: imports per phase
    raw_path = os.path.join(work_dir, "imports.json")
    settle()
    run = timed([python, "-c", _IMPORT_PROBE, raw_path, script, "run", config_path],
                cwd=work_dir, env=env, timeout=3600)
    if run["returncode"] == 0 and os.path.exists(raw_path):
        with open(raw_path) as f:
            result["imports"] = _import_accounting(json.load(f))
    else:
        result["imports"] = {"error": _tail(run)}
    return result


# ------------------------------------------------------------------ the cases


def write_config(path, folder, out_dir, grid=None):
    import yaml

    model = ({"n_components": {"min": 1, "max": grid}, "covariance_type": COVARIANCE_TYPES}
             if grid else {"n_components": 8, "covariance_type": "full"})
    config = {"source": {"path": folder, "passthrough": ["id"]}, "model": model,
              "output": {"path": out_dir, "mode": "overwrite", "columns": ["probabilities"]}}
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def _warm(folder):
    """Read every file once, so that the first timed run does not pay for the disk."""
    for name in data.files(folder):
        with open(name, "rb") as f:
            while f.read(1 << 24):
                pass


def _empty(folder):
    shutil.rmtree(folder, ignore_errors=True)


def run_case(case, folder, work_dir, command, env, settle, log=_log):
    """Alternate the two sides ``case['repeats']`` times on one data set."""
    name = case["name"]
    tag = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    ours_out = os.path.join(work_dir, f"{tag}-mixlake")
    theirs_out = os.path.join(work_dir, f"{tag}-sklearn")
    config = write_config(os.path.join(work_dir, f"{tag}.yaml"), folder, ours_out,
                          case.get("grid"))
    script = ([sys.executable, GRID_SCRIPT, folder, theirs_out, str(case["grid"])]
              if case.get("grid") else [sys.executable, SCRIPT, folder, theirs_out])
    sides = {"mixlake": ([*command, "run", config], ours_out),
             "sklearn": (script, theirs_out)}
    _warm(folder)
    runs = {side: [] for side in sides}
    order = list(sides)
    for rep in range(case["repeats"]):
        for side in order[rep % 2:] + order[:rep % 2]:
            argv, out_dir = sides[side]
            _empty(out_dir)
            settle()
            result = timed(argv, cwd=work_dir, env=env)
            if result["returncode"] != 0:
                raise RuntimeError(f"{name}: {shlex.join(argv)} failed "
                                   f"({result['returncode']}):\n{_tail(result, 20)}")
            runs[side].append(result)
            log(f"whole process {name} {side}: {result['seconds']:.1f} s, peak "
                f"{result['peak_rss'] / 2**20:,.0f} MiB over {result['processes']} process(es)")
    row = {"case": name, "spec": data.asdict(case["spec"]), "repeats": case["repeats"],
           "grid": case.get("grid"),
           "commands": {side: shlex.join(argv) for side, (argv, _) in sides.items()},
           "outputs": compare_outputs(os.path.join(ours_out, "assignments"), theirs_out),
           "quality": quality(runs["mixlake"][-1], runs["sklearn"][-1])}
    for side, results in runs.items():
        seconds = [r["seconds"] for r in results]
        row[side] = {**_fastest_median(seconds),
                     "peak_rss": max(r["peak_rss"] for r in results),
                     "cpu_seconds": min(r["cpu_seconds"] for r in results),
                     "processes": max(r["processes"] for r in results),
                     "runs": [_summary(r) for r in results]}
    # repeat i of each side ran back to back: their ratio saw the same moment of the machine
    row["pair_ratios"] = [b["seconds"] / a["seconds"]
                          for a, b in zip(runs["mixlake"], runs["sklearn"])]
    pieces = [breakdown(r) for r in runs["mixlake"]]
    fastest = min(range(len(pieces)), key=lambda i: runs["mixlake"][i]["seconds"])
    row["breakdown"] = pieces[fastest]
    row["breakdown_median"] = {key: _fastest_median([p["phases"][key] for p in pieces])["median"]
                               for key, _ in PHASES}
    row["log"] = [[round(t, 3), line] for t, line in runs["mixlake"][fastest]["stderr"]]
    row["summary"] = [line for _, line in runs["mixlake"][fastest]["stdout"] if line.strip()]
    return row


def code_under_test(module, env, cwd=None):
    """Where the command's module is imported from, run from ``cwd`` as the timed runs
    are (from the checkout itself the checkout would shadow an editable install of
    another clone), and that checkout's commit."""
    found = subprocess.run(
        [sys.executable, "-c", f"import {module} as m; print(m.__file__)"], env=env,
        cwd=cwd, capture_output=True, text=True, timeout=300)
    if found.returncode != 0:
        return None
    path = os.path.dirname(os.path.dirname(os.path.abspath(found.stdout.strip())))

    def git(*args):
        done = subprocess.run(["git", "-C", path, *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    # the code a run executes: everything but the benchmarks and the tests
    code = [".", ":(exclude)benchmarks", ":(exclude)tests"]
    status = git("status", "--porcelain", "--untracked-files=no", "--", *code)
    return {"path": path, "commit": git("rev-parse", "--short", "HEAD"),
            "code_commit": git("log", "-1", "--format=%h", "--", *code),
            "dirty": None if status is None else bool(status)}


def resolve_command(command):
    """The command line as a list; a bare name must be on the PATH."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(f"{argv[0]!r} is not on the PATH: install mixlake "
                                "(pip install -e .) or pass --mixlake-command")
    return argv


def run(plan, data_dir, work_dir, command="mixlake", cases=None, probes=True, settle=None,
        previous=None, log=_log):
    """The whole-process section: every case of ``plan`` (or those named in ``cases``)
    and the start-up probes; merged into ``previous`` (the saved section), if given."""
    command = resolve_command(command)
    settle = settle or (lambda: None)
    env = dict(os.environ)
    result = dict(previous or {})
    script = os.path.basename(command[0]) if len(command) == 1 else "mixlake"
    entry = _entry_point(script)
    result.update(command=shlex.join(command), prefect=_prefect_configured(),
                  cores=os.cpu_count(),
                  code=code_under_test(entry.module if entry else "flows.cli", env,
                                       cwd=work_dir),
                  at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  load_average=_load_average())
    rows = {row["case"]: row for row in result.get("cases", [])}
    first_config = first_case = None
    for case in plan["cases"]:
        if cases and case["name"] not in cases:
            continue
        folder = data.generate(case["spec"], data_dir)
        row = run_case(case, folder, work_dir, command, env, settle, log)
        rows[row["case"]] = row
        if not case.get("grid") and first_config is None:
            first_case = case["name"]
            first_config = os.path.join(
                work_dir, re.sub(r"[^A-Za-z0-9]+", "-", case["name"]).strip("-") + ".yaml")
    order = [c["name"] for c in plan["cases"]]
    result["cases"] = sorted(rows.values(), key=lambda r: order.index(r["case"])
                             if r["case"] in order else len(order))
    # the probes (and their instrumented run) go with the first one-model case run
    if probes and first_config:
        log("whole process: start-up probes")
        result["startup"] = {"case": first_case, **startup_probes(
            command, first_config, work_dir, env, plan["probe_repeats"], settle)}
    return result


def _load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _prefect_configured():
    try:
        from flows.cli import prefect_configured
    except ImportError:
        return None
    return prefect_configured()
