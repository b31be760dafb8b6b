"""RESULTS.md from the suite's results (benchmarks/RESULTS.json holds the raw numbers)."""

# What the profile of the kernels showed before this suite's changes (commit 06b50d5,
# one thread, 1M x 16 x 8, float64): kept here so that a regenerated RESULTS.md still
# says why the kernels look the way they do.
PROFILE_BEFORE = """\
Before (commit 06b50d5), one thread, 1,000,000 x 16, K = 8, float64, time of `em_chunk`
over the rows in 125k-row chunks: full 1.83 s, tied 1.48 s, diag 1.02 s, spherical 0.99 s;
float32 was barely faster (full 1.30 s, diag 0.98 s). Split by stage (full; the other types
alike):

| stage | share of the pass | what it was |
| --- | ---: | --- |
| `_differences` | 17 % | a (K, rows, D) array of x - mean_k for every component |
| `_squared_mahalanobis` | 29 % | K small matmuls (rows x D) @ (D x D) on it, then an einsum |
| log-sum-exp, exp | 6 % | fine |
| `_moments` | 48 % | the (K, rows, D) array cast to float64, `einsum` for s, and a \
batched (K, D, rows) @ (K, rows, D) matmul for S (skinny products: ~8 GFLOP/s) |

Every stage streamed a K x rows x D temporary (8 MiB per sub-block) through memory
several times, and the products were per component and skinny. Two things followed:
(1) lay the block out as features x rows and stack the components, so that one product
(K D x (D+1)) @ ((D+1) x rows) gives every whitened difference (the E-step), and one product
(K (D+1) x rows) @ (rows x (D+1)) gives n_k, s_k and S_k for all components (the statistics);
(2) for diag, spherical and tied, where the distance is a quadratic in a few features of the
row, use the expanded form in float64 (guarded, see the kernels' docstring). Sub-blocks are
sized so the temporaries stay at ~2 MiB. float32 then pays: the products and elementwise
passes are twice as fast, and only the per-sub-block sums are added in float64.

Second round (2026-11-28, idle machine, one thread, ns per row of 1M x 16, K = 8 unless
said; the distributed rows are per-iteration times on 2 workers):

| what the profile showed | change | before | after |
| --- | --- | ---: | ---: |
| tied spent 70 % in the full-covariance statistics (K (D+1) x rows products), but its M-step \
needs only their sum over components | the rows' scatter about the center (D x D, independent of\
 the responsibilities) shifted by the per-component first moments (K x rows product) | 460 ns | \
164 ns |
| inside dask workers the kernel ran ~17 % slower (D = 64): the nanny sets \
`MALLOC_TRIM_THRESHOLD_`, so every large temporary (the 540 KB statistics block per sub-block) \
is mapped and zeroed anew | all per-sub-block outputs into reused buffers | 9.35 µs (D = 64, \
with the variable) | 7.9 µs |
| diag/spherical built `[x; x^2; 1]` twice per sub-block (E-step, statistics) and copied the \
centered block into it | built once, with the centered block as its first rows | 108 ns | 95 ns \
|
| a 1,927-row float64 call took 4.7 ms with fresh buffers (~5 MB of page faults and zeroing per \
call; a worker calls the kernel once per chunk and pass) | one workspace per thread for the life\
 of the process, keyed by dtype | 4.7 ms per call | 1.3 ms |
| a pass of 8 empty tasks costs ~35 ms on this VM (one task ~11 ms), and work stealing moved 64 \
MB chunks between workers near the end of a pass (seen in the task stream, D = 64) | one task \
per worker over the chunks it holds (loosely pinned), first-level merges there | diag pass ~125 \
ms | ~105 ms |
"""


def _f(x, digits=3):
    if x is None:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.2f}"


def _ms(seconds):
    return "–" if seconds is None else f"{seconds * 1000:,.0f} ms" if seconds < 10 else \
        f"{seconds:,.1f} s"


def _mib(nbytes):
    return "–" if nbytes is None else f"{nbytes / 2**20:,.0f} MiB"


def _seconds(entry):
    """Per-iteration estimate: best T(m) minus best T(1) over the repeats (see suite)."""
    if not entry:
        return None
    if entry.get("t1") and entry.get("tm"):
        return (min(entry["tm"]) - min(entry["t1"])) / (entry["max_iter"] - 1)
    return entry.get("seconds")


def _spread(entry):
    if not entry:
        return ""
    return f"{_ms(entry['min'])}–{_ms(entry['max'])}"


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _check(ok):
    return "–" if ok is None else ("**met**" if ok else "**not met**")


def _flops(spec, k):
    return 4.0 * spec["n_samples"] * k * spec["n_features"] ** 2


def targets(results):
    """[(target, measured, ok)] for the issue's targets."""
    rows = []
    per = results.get("per_iteration", {})
    shapes = {s["name"]: s for s in results["plan"]["shapes"]}
    first = next(iter(per), None)
    if first:
        cases = per[first]
        for covariance_type, need_sk, need_spark in (("full", 4, 2), ("tied", 4, None),
                                                     ("diag", 3, None),
                                                     ("spherical", 3, None)):
            entry = cases.get(covariance_type, {})
            ours = _seconds(entry.get("mixlake"))
            speed_sk = _ratio(_seconds(entry.get("sklearn")), ours)
            rows.append((f"{first}, {covariance_type}: >= {need_sk}x faster per iteration "
                         "than scikit-learn", None if speed_sk is None else f"{speed_sk:.1f}x",
                         None if speed_sk is None else speed_sk >= need_sk))
            if need_spark:
                speed_spark = _ratio(_seconds(entry.get("spark")), ours)
                rows.append((f"{first}, {covariance_type}: >= {need_spark}x faster than Spark "
                             "MLlib", None if speed_spark is None else f"{speed_spark:.1f}x",
                             None if speed_spark is None else speed_spark >= need_spark))
        f32 = _ratio(_seconds(cases.get("full", {}).get("mixlake")),
                     _seconds(cases.get("full", {}).get("mixlake-float32")))
        label = f"{first}, full: float32 >= 1.7x faster than our float64"
        measured32 = results.get("float32") or {}
        for workers, name in (("embedded default, worker threads", "worker threads "
                               "(embedded default)"), ("worker processes", "worker processes")):
            entry = (measured32.get(name) or {}).get("full")
            if entry:
                rows.append((f"{label} ({workers}: `benchmarks/float32.py`)",
                             f"{entry['ratio']:.2f}x", entry["ratio"] >= 1.7))
        if not (measured32.get("worker processes") or {}).get("full"):
            # the per-iteration section's own float32 fit (worker processes), when the
            # newer float32 benchmark has not measured them
            rows.append((label + " (worker processes, the per-iteration section)",
                         None if f32 is None else f"{f32:.2f}x",
                         None if f32 is None else f32 >= 1.7))
    ceiling = _ceiling(results)
    for name, cases in per.items():
        shape = shapes[name]
        if shape["spec"]["n_features"] >= 64 and "full" in cases:
            ours = _seconds(cases["full"].get("mixlake"))
            if ours and ceiling:
                share = _flops(shape["spec"], shape["k"]) / ours / 1e9 / ceiling
                rows.append((f"{name}, full: >= 40% of the matmul ceiling",
                             f"{share:.0%} ({_flops(shape['spec'], shape['k']) / ours / 1e9:.0f}"
                             f" of {ceiling:.0f} GFLOP/s)", share >= 0.4))
    for name, cases in per.items():
        entry = cases.get("full", {}).get("mixlake")
        if entry and entry.get("memory"):
            worst = _worst_worker(entry["memory"])
            if worst:
                peak, chunk, growth = worst
                rows.append((f"{name}, full: peak memory of a worker < 3x its chunks' bytes "
                             "(what the fit and the data add to an idle worker)",
                             f"{growth / chunk:.2f}x ({_mib(growth)} over idle for {_mib(chunk)}"
                             f" of chunks; counting the idle worker: {peak / chunk:.2f}x)",
                             growth / chunk < 3))
    rows.extend(_process_targets(results.get("end_to_end_process")))
    write_speed = results.get("write_speed")
    if write_speed:
        rows.append((f"{write_speed['rows'] / 1e6:g}M x 16, K=8: writing the assignments at "
                     "least at the speed pyarrow writes the same tables from one process "
                     "(`benchmarks/write_speed.py`)",
                     f"{write_speed['ratio']:.2f}x (mixlake {write_speed['fastest']['mixlake']:.2f}"
                     f" s, pyarrow {write_speed['fastest']['pyarrow']:.2f} s)",
                     write_speed["ratio"] >= 1))
    tiny = results.get("tiny")
    if tiny:
        rows.append(("Dask's overhead per iteration (2,000 rows, 8 chunks) < 50 ms",
                     _ms(tiny["seconds"]), tiny["seconds"] < 0.05))
    return rows


def _process_targets(section):
    """The issue's whole-process targets, from the end_to_end_process section."""
    rows = []
    if not section:
        return rows
    for case in section.get("cases", []):
        ours, theirs = case.get("mixlake") or {}, case.get("sklearn") or {}
        fast = _ratio(theirs.get("fastest"), ours.get("fastest"))
        median = _ratio(theirs.get("median"), ours.get("median"))
        if case.get("grid"):
            need = 5
            what = f"{case['case']}: whole `mixlake run` >= {need}x faster than the sklearn loop"
        else:
            need = 5 if case["spec"]["n_samples"] >= 5_000_000 else 4
            what = (f"{case['case']}: whole `mixlake run` >= {need}x faster than the "
                    "scikit-learn script")
        rows.append((what, None if fast is None else
                     f"{fast:.2f}x (fastest of {case['repeats']}; medians {median:.2f}x)",
                     None if fast is None else fast >= need))
    first = next((c for c in section.get("cases", []) if not c.get("grid")), None)
    if first:
        piece = first["breakdown"]
        at = piece.get("first_line")
        rows.append((f"{first['case']}: command start to the first pass over the data <= 3 s "
                     "(the first log line: cluster up, reading starts)",
                     None if at is None else f"{at:.1f} s", None if at is None else at <= 3))
        init = piece["phases"].get("init")
        its = [i["seconds"] for i in piece.get("iterations", [])]
        if init is not None and its:
            per = sum(its) / len(its)
            rows.append((f"{first['case']}: initialisation <= the time of 3 EM iterations",
                         f"{init:.1f} s = {init / per:.1f} iterations of {per:.2f} s",
                         init <= 3 * per))
    return rows


def _worst_worker(memory):
    """(peak, chunk bytes, peak - idle) of the worker with the highest peak."""
    peaks = memory.get("worker_peaks") or []
    if not peaks or None in peaks:
        return None
    i = max(range(len(peaks)), key=lambda j: peaks[j])
    chunks = memory.get("worker_chunk_bytes") or []
    chunk = max(chunks) if chunks else None
    baseline = (memory.get("worker_baseline") or [None] * len(peaks))[i]
    if not chunk or baseline is None:
        return None
    return peaks[i], chunk, peaks[i] - baseline


def _ceiling(results, dtype="float64"):
    matmul = results.get("matmul", {}).get(dtype)
    if not matmul:
        return None
    values = [matmul["2 processes x 1 thread"]]
    end = results.get("matmul_end", {}).get(dtype)
    if end:
        values.append(end["2 processes x 1 thread"])
    # a busy moment of the shared machine only lowers a measurement: the best is the ceiling
    return max(values)


def render(results):
    out = []
    add = out.append
    m = results["machine"]
    add("# mixlake benchmarks\n")
    add(f"Generated by `{results['command']}` ({results['plan']['mode']} mode) on "
        f"{results['started']}, in {results.get('seconds', 0) / 60:.0f} min. Raw numbers: "
        "`benchmarks/RESULTS.json`. Regenerate with the same command (see the README).\n")
    add("## Machine\n")
    add(f"- {m['cpu']}, {m['cores']} cores, L2 {m['l2']}, L3 {m['l3']}, {m['memory_gib']} GiB; "
        f"{m['platform']}")
    add(f"- Python {m['python']}, numpy {m['numpy']} with {', '.join(m['blas'])}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if k != "numpy"))
    add(f"- {m['java']}")
    add(f"- Load average (1/5/15 min) at start {results.get('load_average_start')}, at end "
        f"{results.get('load_average_end')}: the machine is shared, see *Noise* below.")
    for rerun in results.get("rerun", []):
        add(f"- Sections {', '.join(rerun['sections'])} rerun at {rerun['at']} (load average "
            f"{rerun['load_average']}) with `python -m benchmarks --only ...`.")
    add("")
    add("## How it is measured\n")
    add("- **Per iteration** = (T(max_iter=m) − T(max_iter=1)) / (m − 1), `tol=0`, the fit call "
        "alone with the data already loaded: in the process's memory for scikit-learn, "
        "persisted on the workers for mixlake, a cached DataFrame for Spark. Initialisation, "
        "set-up and final passes cancel out. mixlake and scikit-learn start from the same "
        "parameters (`weights_init`, `means_init`, `precisions_init`; sklearn with "
        "`init_params='random_from_data'` so that it does not run a k-means it would "
        "discard); Spark's `ml` API takes no initial model, so it starts from its own.")
    add("- Contestants take turns on each data set (rotated every repeat); each keeps its data "
        "in its own process. The estimate uses the fastest T(1) and the fastest T(m) of the "
        "repeats (other work on the shared machine only adds time, so the best of a few runs "
        "is the closest to the cost of the work, as `timeit` reports); the spread is the "
        "range of the per-repeat estimates, and RESULTS.json also has the median-based one.")
    add("- **Threads**: one BLAS thread everywhere (`OMP/OPENBLAS/MKL_NUM_THREADS=1`, set "
        "before numpy loads): mixlake runs 2 worker processes x 1 thread on a LocalCluster "
        "(dask's nanny sets the same), scikit-learn runs in one process on one thread, Spark "
        "runs `local[2]` (2 cores, its own Java BLAS). So mixlake and Spark use both cores, "
        "scikit-learn one: that is how each is meant to be run on this machine (two OpenBLAS "
        "threads collapse when another process holds one of the cores).")
    add("- **Peak memory** = the kernel's high-water mark of resident memory (`VmHWM`), reset "
        "before each measured fit: per worker process for mixlake (and the client), the "
        "process for scikit-learn, the JVM for Spark.")
    add("- **GFLOP/s** counts 4·N·K·D² flops per full-covariance iteration (E-step and "
        "second moments); the ceiling is numpy's 4000² matmul in two processes x 1 thread "
        "at once, measured at the start and end of the same run (the higher of the two).\n")

    add("## Targets\n")
    add("| target | measured | |")
    add("| --- | --- | --- |")
    for target, measured, ok in targets(results):
        add(f"| {target} | {measured or '–'} | {_check(ok)} |")
    add("")

    per = results.get("per_iteration", {})
    shapes = {s["name"]: s for s in results["plan"]["shapes"]}
    if per:
        add("## Time per EM iteration (float64)\n")
        add("| data | covariance | mixlake | scikit-learn | Spark MLlib | ours / sklearn | "
            "ours / Spark | mixlake spread | sklearn spread | Spark spread |")
        add("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
        for name, cases in per.items():
            for covariance_type, entry in cases.items():
                ours = _seconds(entry.get("mixlake"))
                sk = _seconds(entry.get("sklearn"))
                sp = _seconds(entry.get("spark"))
                r_sk, r_sp = _ratio(ours, sk), _ratio(ours, sp)
                add(f"| {name} | {covariance_type} | {_ms(ours)} | {_ms(sk)} | {_ms(sp)} | "
                    f"{_f(r_sk)} ({_f(_ratio(sk, ours))}x faster) | "
                    + (f"{_f(r_sp)} ({_f(_ratio(sp, ours))}x faster)" if r_sp else "–")
                    + f" | {_spread(entry.get('mixlake'))} | {_spread(entry.get('sklearn'))} | "
                    f"{_spread(entry.get('spark'))} |")
        add("")
        add("Spark MLlib fits full covariances only. Repeats and max_iter per data set: "
            + "; ".join(f"{s['name']}: {s['repeats']} x, m = {s['max_iter']}"
                        for s in results["plan"]["shapes"]) + ".\n")

        add("## float32\n")
        add("| data | covariance | mixlake float64 | mixlake float32 | float32 speed-up |")
        add("| --- | --- | ---: | ---: | ---: |")
        for name, cases in per.items():
            for covariance_type, entry in cases.items():
                if "mixlake-float32" in entry:
                    a, b = _seconds(entry.get("mixlake")), _seconds(entry["mixlake-float32"])
                    add(f"| {name} | {covariance_type} | {_ms(a)} | {_ms(b)} | "
                        f"{_f(_ratio(a, b))}x |")
        add("")

        ceiling = _ceiling(results)
        add("## Achieved GFLOP/s (full covariance, 4·N·K·D² per iteration)\n")
        add(f"Ceiling: {_f(ceiling)} GFLOP/s (float64 matmul, 2 processes x 1 thread).\n")
        add("| data | mixlake | scikit-learn | Spark MLlib | mixlake, share of the ceiling |")
        add("| --- | ---: | ---: | ---: | ---: |")
        for name, cases in per.items():
            if "full" not in cases:
                continue
            flops = _flops(shapes[name]["spec"], shapes[name]["k"]) / 1e9
            rates = {c: (flops / _seconds(e) if _seconds(e) else None)
                     for c, e in cases["full"].items()}
            share = _ratio(rates.get("mixlake"), ceiling)
            add(f"| {name} ({flops:.1f} GFLOP) | {_f(rates.get('mixlake'))} | "
                f"{_f(rates.get('sklearn'))} | {_f(rates.get('spark'))} | "
                f"{'–' if share is None else f'{share:.0%}'} |")
        add("")

        add("## Peak memory (during the max_iter=m fit)\n")
        add("| data | covariance | data bytes | mixlake worker peak (max of 2) | its chunks | "
            "worker peak / chunks | worker growth over idle / chunks | mixlake client peak | "
            "scikit-learn peak | sklearn peak / data | Spark JVM peak |")
        add("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, cases in per.items():
            nbytes = shapes[name]["spec"]["n_samples"] * shapes[name]["spec"]["n_features"] * 8
            for covariance_type, entry in cases.items():
                ours = (entry.get("mixlake") or {}).get("memory") or {}
                sk = (entry.get("sklearn") or {}).get("memory") or {}
                sp = (entry.get("spark") or {}).get("memory") or {}
                peaks = ours.get("worker_peaks") or [None]
                worst = max(range(len(peaks)), key=lambda i: peaks[i] or 0)
                chunk = (ours.get("worker_chunk_bytes") or [None])[-1]
                baseline = (ours.get("worker_baseline") or [None] * len(peaks))[worst]
                growth = (None if None in (peaks[worst], baseline)
                          else peaks[worst] - baseline)
                add(f"| {name} | {covariance_type} | {_mib(nbytes)} | {_mib(peaks[worst])} | "
                    f"{_mib(chunk)} | {_f(_ratio(peaks[worst], chunk))}x | "
                    f"{_f(_ratio(growth, chunk))}x | {_mib(ours.get('client_peak'))} | "
                    f"{_mib(sk.get('peak'))} | {_f(_ratio(sk.get('peak'), nbytes))}x | "
                    f"{_mib(sp.get('peak'))} |")
        add("")
        add("A worker's idle footprint (Python, numpy, dask) is ~100–150 MiB: *growth over "
            "idle* is what the fit and its persisted chunks add to it. The workers' chunks are "
            "the data persisted on them (about half of the data each).\n")

    tiny = results.get("tiny")
    if tiny:
        add("## Dask's per-iteration overhead\n")
        add(f"The same engine on 2,000 x 16 rows in 8 chunks, K = 8, full, persisted on 2 "
            f"workers: **{_ms(tiny['seconds'])} per iteration** (spread {_spread(tiny)}, "
            f"m = {tiny['max_iter']}). Here the arithmetic is negligible: this is the "
            "scheduling round trip of one pass (client -> scheduler -> workers -> client) plus "
            "the client's M-step.\n")

    grid = results.get("grid")
    if grid:
        g = results["plan"]["grid"]
        add("## Grid of component counts x covariance types\n")
        add(f"{len(g['ks'])} component counts ({g['ks'][0]}..{g['ks'][-1]}) x "
            f"{len(g['types'])} covariance types = {len(g['ks']) * len(g['types'])} candidates "
            f"on {g['spec']['n_samples']:,} x {g['spec']['n_features']}. mixlake runs the "
            "pipeline's `select` (all candidates share each pass over the data); scikit-learn "
            "fits each candidate in turn, so its time per iteration is the sum over "
            f"candidates. m = {g['max_iter']}.\n")
        ours, sk = _seconds(grid.get("mixlake")), _seconds(grid.get("sklearn"))
        add("| | mixlake | scikit-learn | ours / sklearn |")
        add("| --- | ---: | ---: | ---: |")
        add(f"| one iteration of every candidate | {_ms(ours)} | {_ms(sk)} | "
            f"{_f(_ratio(ours, sk))} ({_f(_ratio(sk, ours))}x faster) |\n")

    e2e = results.get("end_to_end")
    if e2e:
        add("## End to end (load, initialise, fit, write)\n")
        add(f"Each run in a fresh process, `tol=0`, max_iter = {results['plan']['e2e_max_iter']}"
            ", default initialisation of each library (mixlake k-means|| + Lloyd, scikit-learn "
            "k-means, Spark random), writing cluster, probabilities (and log-density) per row "
            "as Parquet. mixlake is the pipeline's fit job (`pipeline.run.fit`, without "
            "Prefect): it starts its own 2-worker LocalCluster, scans the data for NaN, picks "
            "by BIC, writes assignments, model and report; Spark's time includes starting its "
            "session (JVM).\n")
        add("| case | mixlake | scikit-learn | Spark MLlib | mixlake: load / fit / write |")
        add("| --- | ---: | ---: | ---: | --- |")
        for row in e2e:
            def cell(name, row=row):
                entry = row.get(name)
                if not entry:
                    return "–"
                if "error" in entry:
                    return f"failed: {entry['error'][:80]}"
                return _ms(entry["seconds"])
            ours = row.get("mixlake") or {}
            parts = " / ".join(_ms(ours.get(k)) for k in ("load", "fit", "write")) \
                if "seconds" in ours else "–"
            add(f"| {row['case']} | {cell('mixlake')} | {cell('sklearn')} | {cell('spark')} | "
                f"{parts} |")
        add("")

    process = results.get("end_to_end_process")
    if process:
        out.extend(render_process(process))

    matmul = results.get("matmul")
    if matmul:
        add("## Matmul ceiling (numpy, OpenBLAS)\n")
        add("| dtype | 1 process x 1 thread | 2 processes x 1 thread (sum) | "
            "1 process x 2 threads |")
        add("| --- | ---: | ---: | ---: |")
        for when, block in (("start", matmul), ("end", results.get("matmul_end") or {})):
            for dtype, v in block.items():
                add(f"| {dtype} ({when}) | {_f(v['1 process x 1 thread'])} | "
                    f"{_f(v['2 processes x 1 thread'])} | {_f(v['1 process x 2 threads'])} |")
        add("")

    add("## Profile\n")
    add(PROFILE_BEFORE)
    profile = results.get("profile")
    if profile:
        add("Now, the same kernel stage by stage (one thread, "
            f"{results['plan']['shapes'][0]['spec']['n_samples']:,} rows x 16, K = 8; "
            "ns per row; regenerated by the command):\n")
        add("| dtype | covariance | E-step form | rows per sub-block | center + transpose | "
            "E-step distances | log-sum-exp + resp | statistics | total ns/row |")
        add("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in profile:
            ns = row["ns_per_row"]
            add(f"| {row['dtype']} | {row['covariance_type']} | {row['form']} | "
                f"{row['block_rows']} | " + " | ".join(f"{v:.0f}" for v in ns.values())
                + f" | {sum(ns.values()):.0f} |")
        add("")
    from benchmarks import float32, write_speed

    # the sections of the scripts run by hand (``python -m benchmarks.<script> --save``)
    for name, markdown in (("incremental", incremental_markdown),
                           ("init_quality", init_quality_markdown),
                           ("float32", float32.markdown), ("write_speed", write_speed.markdown)):
        if results.get(name):
            add(markdown(results[name]))
    add(NOTES)
    return "\n".join(out) + "\n"


def incremental_markdown(result):
    """The incremental-scoring section (``python -m benchmarks.incremental --save``)."""
    rows = ["## Incremental scoring\n",
            f"`python -m benchmarks.incremental`, {result['measured']}: {result['days']} daily "
            f"partitions of {result['rows']:,} rows x {result['features']} features scored, "
            f"then day {result['new_day']} added ({result['day_mib']:.1f} MiB of Parquet; "
            f"ledger {result['ledger_kib']:.1f} KiB); {result['repeats']} alternating "
            "repeats on one 2-worker LocalCluster; bytes = what the client and the workers "
            "read (rchar) during the run.\n",
            "| run | fastest | median | bytes read | read / (day + ledger) |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for row in result["runs"]:
        rows.append(f"| {row['label']} | {row['fastest']:.2f} s | {row['median']:.2f} s | "
                    f"{row['mib']:.1f} MiB | {row['read_ratio']:.2f} |")
    rows.append(f"\nincremental / the day alone: time {result['time_ratio']:.2f}x (target "
                f"<= 1.5x: {'met' if result['time_ratio'] <= 1.5 else 'not met'}), bytes "
                f"{result['bytes_ratio']:.2f}x; bytes read within 10% of the day's files plus "
                f"the ledger: {'met' if result['runs'][0]['read_ratio'] <= 1.1 else 'not met'}.\n")
    return "\n".join(rows)


# what clustered the sample in init_quality results saved without a "kmeans" entry
SKLEARN_KMEANS = "scikit-learn's `KMeans`"


def init_quality_markdown(result):
    """The section of RESULTS.md (``python -m benchmarks.init_quality --save``)."""
    default = result["default"]
    lines = [
        "## Initialisation quality (k-means on a sample against scikit-learn's k-means)\n",
        f"`python -m benchmarks.init_quality{' --quick' if result['quick'] else ''}`, "
        f"{result['measured']}"
        + (" (**quick**: 100,000-row versions of the cases)" if result["quick"] else "")
        + f", in {result['seconds'] / 60:.0f} min, load average at the start "
        f"{', '.join(f'{x:.2f}' for x in result['load_average'])}, code at commit "
        f"{result['code']['commit']} (`_init.py` last changed in "
        f"{result['code']['init_commit']}). For each case and each of {result['seeds']} "
        f"seeds (`random_state` 0..{result['seeds'] - 1}): `GaussianMixture(K, "
        "covariance_type='full', random_state=seed).fit(X)` of mixlake and of "
        "scikit-learn, defaults otherwise, on the same numpy array; the final mean "
        "log-likelihood per row (`score(X)`, higher is better). Ours: k-means "
        f"({result.get('kmeans', SKLEARN_KMEANS)}, `n_init={default['n_init']}`) "
        "on a uniform sample of "
        f"max({default['sample_rows']:,}, {default['rows_per_cluster']:,} K) rows, then "
        "one pass labelling every row; scikit-learn: `KMeans` on every row. *Not worse* "
        f"counts the seeds where ours >= sklearn − {result['tolerance']:g}; *other "
        f"optimum* the seeds where the two differ by more than {result['optimum_gap']:g} "
        "(ours better / worse): below that, both reached the same optimum and stopped at "
        "different points of it (EM stops when an iteration gains less than `tol` = "
        "1e-3). Iterations are means, times each fit's median, one BLAS thread, on a "
        "shared machine.\n",
        "| case | sample | ours mean | ours min | sklearn mean | sklearn min | ours − sklearn "
        "(mean) | not worse | other optimum: better / worse | iterations ours / sklearn | "
        "fit ours / sklearn | target: mean >= sklearn's |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for case in result["cases"]:
        s = case["summary"]
        lines.append(
            f"| {case['case']} | {case['sample_rows']:,} | {s['ours_mean']:.5f} | "
            f"{s['ours_min']:.5f} | {s['sklearn_mean']:.5f} | {s['sklearn_min']:.5f} | "
            f"{s['mean_difference']:+.2e} | {s['seeds_not_worse']} / {s['seeds']} | "
            f"{s['seeds_better_optimum']} / {s['seeds_worse_optimum']} | "
            f"{s['ours_n_iter']:.1f} / {s['sklearn_n_iter']:.1f} | "
            f"{s['ours_seconds']:.1f} s / {s['sklearn_seconds']:.1f} s | "
            + ("**met**" if s["mean_difference"] >= -result["tolerance"] else "**not met**")
            + " |")
    names = [case["case"] for case in result["cases"]]
    tie = result["optimum_gap"]
    lines += ["", "Other settings of ours (`KMEANS_SAMPLE_ROWS` x `KMEANS_N_INIT`, "
              "monkeypatched; the same scikit-learn fits). Per case: ours − sklearn of the "
              "means (the seeds in a better / worse optimum). *k-means* is the median time of "
              "our k-means on the sample (drawing it, clustering it) per fit, *fit* ours' "
              "median "
              f"fit, per case. *Up to tol*: the means compared up to {tie:g} (EM's `tol`: "
              "fits in the same optimum stop up to ~3e-4 apart, and one seed of 10 in "
              "another optimum moves a mean by 3e-3 or more on these cases).\n",
              "| sample rows | k-means restarts | " + " | ".join(names)
              + " | k-means | fit | mean >= sklearn's on every case | up to tol |",
              "| ---: | ---: | " + " | ".join("---:" for _ in names) + " | ---: | ---: | --- "
              "| --- |"]
    for variant in result["variants"]:
        summaries = [variant["cases"][name] for name in names]
        is_default = (variant["sample_rows"], variant["n_init"]) == (default["sample_rows"],
                                                                     default["n_init"])
        lines.append(
            f"| {variant['sample_rows']:,}{' (default)' if is_default else ''} | "
            f"{variant['n_init']} | "
            + " | ".join(f"{s['mean_difference']:+.1e} ({s['seeds_better_optimum']} / "
                         f"{s['seeds_worse_optimum']})" for s in summaries)
            + " | " + " / ".join(f"{s['ours_kmeans_seconds']:.2f} s" for s in summaries)
            + " | " + " / ".join(f"{s['ours_seconds']:.1f} s" for s in summaries)
            + " | " + ("yes" if all(s["mean_difference"] >= -result["tolerance"]
                                    for s in summaries) else "no")
            + " | " + ("yes" if all(s["mean_difference"] >= -tie for s in summaries)
                       else "no") + " |")

    def setting(best):
        if best is None:
            return "none of those measured"
        return (f"{best['sample_rows']:,} rows x {best['n_init']} restart(s)"
                + (" (the default)" if (best["sample_rows"], best["n_init"])
                   == (default["sample_rows"], default["n_init"]) else ""))
    lines.append("\nThe cheapest setting (fewest rows clustered on the client: sample rows x "
                 "restarts) whose mean is at least scikit-learn's on every case: "
                 f"{setting(result.get('recommended'))}; up to EM's tol: "
                 f"{setting(result.get('recommended_up_to_tol'))}.\n")
    return "\n".join(lines)


def _s(seconds):
    return "–" if seconds is None else f"{seconds:,.1f} s"


def _outputs(check):
    if not check:
        return "–"
    if not check.get("same_files"):
        return "**different files**"
    parts = ["same schema" if check.get("same_schema") else "**other schema**",
             "same ids" if check.get("same_ids") else "**other ids**"]
    if check.get("label_agreement") is not None:
        parts.append(f"labels agree on {check['label_agreement']:.2%}")
    return ", ".join(parts)


def render_process(section):
    """The ``end_to_end_process`` section: the whole command against the user's script."""
    from benchmarks.endtoend import PHASES

    lines = []
    add = lines.append
    cases = section.get("cases", [])
    add("## Whole process, timed from the shell\n")
    add(f"`{section['command']} run cfg.yaml` against the plain scikit-learn script a user "
        "writes instead (`benchmarks/sklearn_script.py`: read the files with pyarrow, "
        "`GaussianMixture(8, random_state=0).fit(X)`, `predict_proba`, write `id`, `cluster`, "
        "`prob_*` per file), and a 40-candidate grid (`n_components` 1–10 x 4 covariance "
        "types) against the loop a user writes (`benchmarks/sklearn_grid_script.py`: fit "
        "each, keep the lowest BIC, write the same columns). The config names the source "
        "with `passthrough: [id]`, the model (`n_components: 8, covariance_type: full`, or "
        "the grid), `output.columns: [probabilities]` and `mode: overwrite`; everything else "
        "is the default (embedded LocalCluster of 2 workers x 1 thread, kmeans init, "
        "`tol` 1e-3). Both sides: a fresh process per run, started as a user types it, into "
        "an empty output folder, one BLAS thread, the two sides alternating (order rotated "
        "each repeat). Time = start to exit of the whole process; CPU = user + system "
        "seconds of the process and every process it waited for; peak memory = the highest "
        "sum of resident memory over the process tree, sampled every 50 ms (shared "
        "libraries counted once per process, so an upper bound). Data: "
        "`benchmarks.data` mixtures of 8 well-separated Gaussians with an `id` column, in "
        "8 Parquet files. Prefect "
        + ("configured: the runs were Prefect flow runs" if section.get("prefect")
           else "not configured: plain runs, no Prefect server")
        + f". Measured {section.get('at')} (load average at the start "
        f"{section.get('load_average')}) on the code at " + _code(section.get("code")) + ".\n")
    add("| case | mixlake fastest (median) | script fastest (median) | script / mixlake "
        "fastest (medians; back-to-back pairs) | peak memory mixlake (processes) | "
        "peak memory script | CPU s mixlake / script | outputs | result: mixlake / script |")
    add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for case in cases:
        ours, theirs = case.get("mixlake") or {}, case.get("sklearn") or {}
        add(f"| {case['case']} ({case['repeats']} x) | {_s(ours.get('fastest'))} "
            f"({_s(ours.get('median'))}) | {_s(theirs.get('fastest'))} "
            f"({_s(theirs.get('median'))}) | "
            f"{_f(_ratio(theirs.get('fastest'), ours.get('fastest')))}x "
            f"({_f(_ratio(theirs.get('median'), ours.get('median')))}x{_pairs(case)}) | "
            f"{_mib(ours.get('peak_rss'))} ({ours.get('processes', '–')}) | "
            f"{_mib(theirs.get('peak_rss'))} | {_f(ours.get('cpu_seconds'))} / "
            f"{_f(theirs.get('cpu_seconds'))} | {_outputs(case.get('outputs'))} | "
            f"{_quality(case)} |")
    add("")
    add("*result*: the mean log-likelihood per row at the last EM iteration (higher is "
        "better), or for a grid the chosen candidate and its BIC (lower is better); "
        "*labels agree* counts the rows whose cluster matches after renumbering, so "
        "anything below 100 % on well-separated clusters means one side settled in a "
        "worse local optimum.\n")
    cores = section.get("cores") or 2
    for case in cases:
        ours, theirs = case.get("mixlake") or {}, case.get("sklearn") or {}
        if ours.get("cpu_seconds") and theirs.get("cpu_seconds"):
            floor = ours["cpu_seconds"] / cores
            add(f"- {case['case']}: the run used {ours['cpu_seconds']:.1f} CPU seconds, the "
                f"script {theirs['cpu_seconds']:.1f} (fewest of the repeats; CPU seconds "
                "change far less with other load than wall time). On "
                f"{cores} cores the run cannot take less than {floor:.1f} s, and the script, "
                "one thread, takes about its CPU seconds on an idle machine: as the work "
                f"stands, mixlake can be at most {theirs['cpu_seconds'] / floor:.1f}x faster.")
    add("")
    if cases:
        add("### Where a `mixlake run`'s seconds go\n")
        add("From the arrival time of each line the run prints (its fastest repeat): the "
            "first log line (the cluster is up), `loaded ...`, `... initialised ...`, each "
            "`iteration N`, `selected ...`, `writing ...`, and the summary on stdout, whose "
            "`time` line gives the writing step's own duration. Medians over the repeats in "
            "RESULTS.json.\n")
        add("| phase | what it covers | " + " | ".join(c["case"] for c in cases) + " |")
        add("| --- | --- | " + " | ".join("---:" for _ in cases) + " |")
        for key, what in PHASES:
            cells = []
            for case in cases:
                piece = case["breakdown"]
                value = piece["phases"].get(key)
                share = _ratio(value, piece["wall"])
                cells.append("–" if value is None else f"{value:,.1f} s ({share:.0%})")
            add(f"| {key} | {what} | " + " | ".join(cells) + " |")
        add("| **whole process** | | " + " | ".join(
            f"**{_s(c['breakdown']['wall'])}**" for c in cases) + " |")
        add("| not accounted | markers missing from the log | " + " | ".join(
            _s(c["breakdown"]["unaccounted"]) for c in cases) + " |")
        add("| passes over the data | from the summary | " + " | ".join(
            str(c["breakdown"].get("passes") or "–") for c in cases) + " |")
        add("| initialisation passes | passes − EM iterations − the final pass; init "
            "seconds per pass | " + " | ".join(_init_passes(c["breakdown"]) for c in cases)
            + " |")
        add("| EM iterations | each one's own time, mean | " + " | ".join(
            _iterations(c["breakdown"]) for c in cases) + " |")
        add("| the summary's `time` line | what the command reports | " + " | ".join(
            ", ".join(f"{k} {v:g}" for k, v in c["breakdown"]["summary_time"].items()) or "–"
            for c in cases) + " |")
        add("")
        for case in cases:
            phases = {k: v for k, v in case["breakdown"]["phases"].items() if v is not None}
            ranked = sorted(phases.items(), key=lambda kv: -kv[1])
            add(f"- {case['case']}, largest first: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in ranked) + ".")
        add("")
    startup = section.get("startup")
    if startup:
        add("### Start-up, in separate fresh processes\n")
        add("| what | fastest | median |")
        add("| --- | ---: | ---: |")
        for name, value in startup["probes"].items():
            add(f"| `{name}` | {_ms(value['fastest'])} | {_ms(value['median'])} |")
        add("")
        imports = startup.get("imports") or {}
        if "per_phase" in imports:
            add(f"One instrumented run of the command's entry point on {startup.get('case')} "
                f"in its own process (untimed; {_s(imports['end'])} in all) spent "
                f"**{_s(imports['total'])} importing modules** in the command's process (the "
                "dask workers import in their own): "
                + ", ".join(f"{k} {v:.1f} s" for k, v in imports["per_phase"].items())
                + ". The slowest imports (outermost, cumulative): "
                + ", ".join(f"`{i['module']}` {i['seconds']:.2f} s at {i['at']:.1f} s"
                            for i in imports["slowest"][:8]) + ".\n")
        elif imports.get("error"):
            add(f"The instrumented run failed: `{imports['error'].splitlines()[-1]}`.\n")
    return lines


def _pairs(case):
    pairs = case.get("pair_ratios") or []
    if len(pairs) < 2:
        return ""
    return f"; pairs {min(pairs):.2f}–{max(pairs):.2f}x"


def _code(code):
    if not code:
        return "–"
    return (f"`{code['path']}` commit {code['commit']} (its last change outside benchmarks/ "
            f"and tests/: {code.get('code_commit')})"
            + (" with uncommitted changes" if code.get("dirty") else ""))


def _quality(case):
    found = case.get("quality") or {}
    ours, theirs = found.get("mixlake") or {}, found.get("sklearn") or {}
    if case.get("grid"):
        def one(q):
            return f"{q['chosen']} ({q['bic']:,.0f})" if "chosen" in q else "–"
    else:
        def one(q):
            return f"{q['log_likelihood']:.4f}" if "log_likelihood" in q else "–"
    return f"{one(ours)} / {one(theirs)}"


def _init_passes(piece):
    passes, its, init = piece.get("passes"), piece.get("iterations"), piece["phases"].get("init")
    if not passes or not its or init is None:
        return "–"
    n = passes - len(its) - 1
    return f"{n}, {init / n:.2f} s" if n > 0 else str(n)


def _iterations(piece):
    its = [i["seconds"] for i in piece.get("iterations", [])]
    return f"{len(its)}, {sum(its) / len(its):.2f} s" if its else "–"


NOTES = """\
## What limits each number

- **full**: half of a pass is the statistics product (K (D+1) x rows) @ (rows x (D+1)).
  Its reduction runs over the rows, so OpenBLAS packs both operands for few flops per
  element and reaches ~30 GFLOP/s on one core (the E-step product ~40); building
  r_k (x − mean_k) costs another fifth. Accumulating about the common center instead would
  save the subtraction (~10 %) but costs float32 digits in proportion to the squared
  distance between components; a symmetric (syrk) product would halve the flops of the
  statistics but is K small products per sub-block. Neither was worth it at 6x sklearn.
- **1M x 64, K = 16**: the kernel alone runs ~8 µs per row on one core (~33 GFLOP/s, two
  thirds of the matmul's 49); inside a dask worker it is 10–20 % slower (threads, the
  event loop), which is the gap between that and the share of the ceiling above.
- **tied, diag, spherical**: ~100–170 ns per row on one core, spread evenly over centering,
  the (K, F) x (F, rows) product, the log-sum-exp (8 exp per row) and the statistics; a
  pass over 1M rows is ~50 ms of arithmetic per worker, and Dask's round trip and the
  client's M-step add ~30–50 ms to it.
- **Dask overhead**: one pass is one task per worker thread plus a `who_has` query; on this
  2-vCPU VM a single `client.submit(...).result()` takes ~10 ms, and a pass needs the
  client, the scheduler and both workers to wake up in turn. The client's stream to the
  scheduler sends a message at once only if its last one left 10 ms ago
  (`distributed.batched.BatchedSend`): with a task submitted at a time, the second task of
  every pass waited those 10 ms, and the first one too behind the release of the last
  pass's tasks. A pass now submits its tasks as one graph per worker (`Client.map`) and
  releases the previous pass's tasks after it: a pass over 8 tiny chunks on the embedded
  default went from 20.5 to 14.5 ms (median of 280; 2026-12-03), each EM iteration of a
  1M run from 11-13 ms of waiting before the first kernel call to 4-7.
- **float32**: the products and the elementwise passes are twice as fast; the expanded
  forms (tied, diag, spherical) compute in float64 whatever the input, so float32 gains
  there only the memory; per-sub-block float64 accumulation and the client's M-step do not
  shrink. On worker threads (the embedded default) the cheap forms did not use the second
  core: a diag fit took as long on 2 worker threads as on 1 (1.9 s and 1.9 s). Why
  (2026-12-02, the kernel on plain Python threads, no Dask, 1M x 16, K = 8, one BLAS
  thread): `py-spy record --gil` (which thread holds the GIL, and where) put 35 % of
  the diag kernel's GIL time on one line, `resp @ features.T` of the expanded statistics:
  `np.matmul` with a transposed operand kept the GIL for the whole BLAS call, where
  `np.dot` gives it up (two threads of that product alone: matmul 0.9-1.1x, dot
  1.3-1.6x one thread's speed). The rest of the GIL time was the Python around ~25
  numpy calls per sub-block of ~1,900 rows (buffer lookups, per-model constants, the
  wrappers of `np.max` / `np.sum`). Changed (commit 7a45155): every product in the
  kernels and the monitoring sums is `np.dot`; a sub-block's buffers and constants are
  looked up once per chunk (`_kernels._EStep`); the expanded forms' sub-blocks are sized
  on their own row width (33 float64 for diag at D = 16: 7,943 rows instead of 1,927).
  Plain threads, per pass, before -> after: diag 1 thread 0.13 -> 0.11 s, 2 threads
  0.14 -> 0.07 s; tied 2 threads 0.165 -> 0.075 s; spherical float32 0.12 -> 0.05 s;
  full unchanged (1 thread 0.52 s, 2 threads 0.30-0.33 s: its products are large and
  gave the GIL up already). On the embedded cluster (`benchmarks/float32.py`, the table
  above) diag float32 went from 150 to 83 ms per iteration (worker processes: 60 ms)
  and tied from 215 to 102 ms. Full float32 on threads was then 1.49x float64 (processes
  1.80x; earlier runs 1.41-1.96x); on plain threads its 2-thread speed-up was 1.3-1.5x
  against 1.6-1.9x for float64, with no single line holding the GIL in the py-spy
  profile: the Python around the calls was a larger share of float32's halved
  arithmetic. So (2026-12-03) float32's whitening sub-blocks take 2**20 elements, four
  times float64's 2**18 (at most 8,192 rows summed in float32, whose sums then differ
  from float64's by ~6e-8 relative): per pass of 1M x 16 x 8 on two plain threads,
  float32 took 108 ms at 2**18, 100 at 2**19, 89 at 2**20 and 112 at 2**21 elements,
  float64 199 / 204 / 218 / 252 ms (so float64 keeps 2**18). On one thread the float32
  kernel is then 2.07x float64's (25 against 52 ms per 125,000-row chunk: the E-step
  product 9.6 against 18.3 ms, the statistics product 8.5 against 17.4, the stacked
  differences 3.6 against 10.7). With the pass's shorter wait (Dask overhead above),
  `benchmarks/float32.py` gave full float32 on threads 1.68x, 1.73x, 1.95x, 1.99x, 2.02x
  and 2.47x (the table above) in six runs that day, on worker processes 1.64x to 1.98x
  (1.72x above). tied/diag/spherical stay at ~1.0-1.2x: their expanded forms compute in
  float64.
- **Whole process** (the breakdown above): the initialisation was the largest phase (15
  passes of k-means|| + Lloyd at 1M, the time of a dozen EM iterations) until it became
  k-means on a uniform sample of 50,000 rows on the client plus one labelling pass
  (`_init.kmeans_centers`); the embedded workers were processes, each importing the
  command's module again on start and receiving every chunk and task by copy, until they
  became threads of the command's process (`cluster.processes: false`); each file was read
  twice (a scan, then the fit's persist) and a third time by the writer, now once; the
  interpreter's teardown of scikit-learn, scipy and matplotlib took ~0.8 s after the
  summary, now skipped (`flows.cli.console`). Then (this session's rerun): the final pass
  keeps the chosen candidate's row scores in the workers' memory and the writer writes
  them instead of scoring every row again; the report's figures are drawn in a child
  process (in a thread they held the GIL ~1 s and slowed the writer threads by as much);
  the labelling pass, the scan, the describe pass and the writer's monitoring sums work
  in row blocks instead of chunk-sized temporaries (the run touched ~9 GB of fresh pages
  at 5M: 2.25M page faults of 4 KiB, ~6 s of kernel CPU; now ~0.65M, 2.5–4.5 s); the float
  columns of the assignment files are written without dictionary encoding (pyarrow builds
  and drops a dictionary per column of distinct doubles, half the write's time). Then the
  run's path stopped importing scikit-learn and pandas (1.5-2 s of start-up here: the
  selection's pick is a `FittedMixture`, not an estimator; the k-means on the sample is
  numpy's, scikit-learn's algorithm; Arrow columns become numpy arrays from their buffers,
  since pyarrow's `to_numpy`, `pa.array` and `read_table` import pandas): the imports of a
  1M run went from 2.06 s to 1.04 s (`python -X importtime`), of which dask.array is 0.35 s
  (scipy.sparse and dask.array.fft) and distributed 0.26 s. What is left at 1M: start-up
  and imports ~1 s, the load ~0.8 s, and two EM iterations, a labelling pass and the final
  pass of ~0.3-0.4 s each; the run's CPU time is 6.2-7.2 s against the script's
  16.8-17.9 (two runs of 2026-12-02), about 1.5 s of the run is one thread's
  (interpreter and imports, the k-means on the sample, the M-steps, the report), and a
  full-covariance pass on the two worker threads is 1.6-1.9x one thread's (float32
  above). The 1M 4x and 5M 5x rows flipped between runs on this VM: 3.56x and 5.32x at
  17:18 UTC, 4.36x and 4.18x at 17:47 UTC (2026-12-02), with the script's own 5M time at
  72 and 53 s. Then (2026-12-03) the load's scan became the fit's describe pass (the
  scan already computed each file's column means and squared deviations, the same
  numbers: one pass fewer, 4 instead of 5 for one candidate), a pass stopped waiting
  on the client's batched stream (Dask overhead above), and the scan itself got cheaper:
  numpy's `min(axis=0)` / `max(axis=0)` on a row-major 625,000 x 16 block loop over 16
  elements per row (72 ms for both), folded block by block with elementwise
  minimum/maximum they take 9 ms, and the row test for NaN/inf runs only when a column
  mean is not finite (a file's scan 136 -> 37 ms; the 5M load 2.0 -> 1.1 s). Runs that
  day: 4.53x / 4.70x / 8.96x (06:42 UTC, before the describe change), 4.04x / 5.90x /
  8.81x (06:57), 3.95x / 6.15x / 10.8x (07:22, the same pipeline code), and the saved
  run (07:31, all of it) 4.17x / 5.75x / 11.3x. Load, the
  passes and the write grow with the data, so the ratio to the script grows with it. The
  grid's time is
  its EM and final pass: 40 candidates per pass, as many passes as its slowest candidate
  needs.
- **Memory**: a worker holds its chunks plus a few MiB of sub-block buffers (the largest
  temporary is 2**18 elements, 2**20 for float32's whitening form). scikit-learn's full fit allocates N x D temporaries per
  component and N x K arrays for the responsibilities.

## Noise

The machine is shared (other test runs may be running: see the load averages above).
Contestants alternate so that a busy moment hits all of them; the spreads above are the
range of the per-repeat estimates. Ratios are measured within one run.
"""


def save_section(name, result):
    """Put one section's result into benchmarks/RESULTS.json and re-render RESULTS.md
    (the scripts run by hand: ``--save``)."""
    import json
    from pathlib import Path

    path = Path(__file__).with_name("RESULTS.json")
    saved = json.loads(path.read_text())
    saved[name] = result
    path.write_text(json.dumps(saved, indent=1))
    write(saved, str(path.with_suffix(".md")))


def write(results, path):
    with open(path, "w") as f:
        f.write(render(results))
