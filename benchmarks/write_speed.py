"""Writing the assignments against pyarrow writing the same table from one process.

    python -m benchmarks.write_speed [--quick] [--save] [--repeats 5]

The issue asks that "writing the assignments [be] at least at the speed pyarrow writes the
same table from one process". The data set is the whole-process benchmark's (1,000,000 x
16 float64 in 8 Parquet files with an ``id`` column; ``--quick``: 100,000 rows); the run
is what ``mixlake run`` does on the embedded default (a LocalCluster of 2 worker threads):

- **mixlake**: ``source.load`` (kept in memory), ``select`` of one candidate (8
  components, full; ``keep_scores`` as a run), then ``assign.write_assignments`` with the
  training baseline's watch, ``output.columns: [probabilities]``, into a fresh folder:
  per input file, its ``id``, ``cluster`` and ``prob_0..7`` columns written as Parquet,
  with the monitoring sums and the file statistics of a run. Timed alone.
- **mixlake, scoring again**: the same without the final pass's kept scores (the writer
  scores every row: a run on data not kept in memory, or a grid).
- **pyarrow**: the same 8 tables, already in memory (read back from mixlake's files),
  each written with ``pyarrow.parquet.write_table`` to a fresh folder, one after the
  other, in this process: what pyarrow alone does with the finished table.

The three alternate, ``--repeats`` times; the fastest of each counts (the machine is
shared). The target is met when mixlake's write takes at most pyarrow's time.
``--save`` merges the result into benchmarks/RESULTS.json and re-renders RESULTS.md.
"""

import argparse
import os
import shutil
import tempfile
import time

from benchmarks import data


def _tables(folder):
    import pyarrow.parquet as pq

    names = sorted(os.listdir(os.path.join(folder, "assignments")))
    return [(name, pq.read_table(os.path.join(folder, "assignments", name)))
            for name in names]


def measure(n_samples, repeats, data_dir, work_dir):
    import numpy as np
    import pyarrow.parquet as pq

    from pipeline import assign, monitor, source
    from pipeline.cluster import connect
    from pipeline.config import parse_config
    from pipeline.selection import select

    spec = data.Spec(n_samples, 16, with_id=True, n_files=8)
    folder = data.generate(spec, data_dir)
    config = parse_config({"source": {"path": folder, "passthrough": ["id"]},
                           "model": {"n_components": 8, "covariance_type": "full"},
                           "output": {"path": os.path.join(work_dir, "unused"),
                                      "columns": ["probabilities"]}})
    times = {"mixlake": [], "mixlake, scoring again": [], "pyarrow": []}
    with connect(config.cluster):
        schema = source.inspect(config.source)
        dataset = source.load(config.source, schema=schema)
        result = select(dataset.X, n_components=[8], covariance_types=["full"],
                        random_state=0, keep_scores=assign.can_use_scores(dataset))
        if result.scores is None:
            raise RuntimeError("the fit kept no scores: the benchmark measures a run's write")
        model = result.estimator._model(np.dtype("float64"))
        watch = monitor.watch(result.baseline, config.monitor.outlier_quantile)
        tables = None
        for repeat in range(repeats):
            for name in list(times):
                out = os.path.join(work_dir, f"{name.split(',')[0]}-{repeat}-{len(name)}")
                if name == "pyarrow":
                    os.makedirs(out)
                    started = time.perf_counter()
                    for part, table in tables:
                        pq.write_table(table, os.path.join(out, part))
                else:
                    scores = result.scores if name == "mixlake" else None
                    started = time.perf_counter()
                    assign.write_assignments(dataset, model, 8, ["probabilities"], out,
                                             watch=watch, scores=scores)
                times[name].append(time.perf_counter() - started)
                if tables is None and name == "mixlake":
                    tables = _tables(out)
                shutil.rmtree(out)
    fastest = {name: min(values) for name, values in times.items()}
    return {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "rows": n_samples, "files": 8, "repeats": repeats,
            "table_mib": round(sum(t.nbytes for _, t in tables) / 2**20, 1),
            "columns": tables[0][1].column_names,
            "seconds": times, "fastest": fastest,
            "ratio": fastest["pyarrow"] / fastest["mixlake"],
            "ratio_scoring_again": fastest["pyarrow"] / fastest["mixlake, scoring again"],
            "load_average": list(os.getloadavg())}


def markdown(result):
    """The section of RESULTS.md."""
    fastest = result["fastest"]
    lines = [
        "## Writing the assignments against pyarrow\n",
        f"`python -m benchmarks.write_speed`, {result['measured']}: {result['rows']:,} rows "
        f"x 16 in {result['files']} files, 8 components; each output table "
        f"({', '.join(result['columns'][:3])} … {result['columns'][-1]}; "
        f"{result['table_mib']} MiB in memory for all files) written {result['repeats']} "
        "times, alternating; fastest of each. mixlake = `assign.write_assignments` on the "
        "embedded default cluster (2 worker threads) with the training watch, as in a run; "
        "pyarrow = `pq.write_table` of the finished tables, one after the other, in one "
        "process.\n",
        "| writer | fastest | all |",
        "| --- | ---: | --- |"]
    for name, values in result["seconds"].items():
        lines.append(f"| {name} | {fastest[name]:.3f} s | "
                     + ", ".join(f"{v:.3f}" for v in values) + " |")
    verdict = "met" if result["ratio"] >= 1 else "not met"
    lines.append(f"\npyarrow / mixlake: {result['ratio']:.2f}x (target >= 1: {verdict}); "
                 f"scoring again: {result['ratio_scoring_again']:.2f}x.\n")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2 repeats")
    parser.add_argument("--save", action="store_true",
                        help="merge into benchmarks/RESULTS.json, re-render RESULTS.md")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir",
                        default=os.path.join(tempfile.gettempdir(), "mixlake-benchmark-data"))
    args = parser.parse_args(argv)
    n_samples, repeats = (100_000, 2) if args.quick else (1_000_000, args.repeats)
    with tempfile.TemporaryDirectory() as work_dir:
        result = measure(n_samples, repeats, args.data_dir, work_dir)
    result["quick"] = args.quick
    print(markdown(result))
    if args.save:
        from benchmarks.report import save_section

        save_section("write_speed", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
