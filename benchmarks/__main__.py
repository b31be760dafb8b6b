"""``python -m benchmarks [--quick]``: run the suite and write benchmarks/RESULTS.md."""

import os

# One BLAS thread in this process and in every process it starts (before numpy loads):
# dask's nanny does the same for the workers, and two-thread OpenBLAS collapses when
# another process holds one of the cores: a matmul runs many times slower.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
os.environ.setdefault("PYSPARK_PYTHON", __import__("sys").executable)

import argparse  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small data, one repeat: a smoke run of every row (< 2 min)")
    parser.add_argument("--data-dir", help="where the data sets are generated (reused); "
                        "default: <tmp>/mixlake-benchmark-data")
    parser.add_argument("--output", help="the Markdown report (default benchmarks/RESULTS.md; "
                        "the raw numbers go next to it as .json)")
    parser.add_argument("--no-spark", action="store_true", help="leave Spark MLlib out")
    parser.add_argument("--only", nargs="+", metavar="SECTION",
                        help="rerun only these sections (matmul, per_iteration, tiny, grid, "
                        "end_to_end, end_to_end_process, profile) and merge them into the "
                        "saved RESULTS.json")
    parser.add_argument("--shape", action="append", metavar="NAME",
                        help="with --only per_iteration or end_to_end_process: only this "
                        "data set or case (e.g. '1M x 16, K=8')")
    parser.add_argument("--mixlake-command", default="mixlake", metavar="CMD",
                        help="the command the whole-process section times (default: mixlake; "
                        "e.g. 'python -m flows.cli' for a checkout on PYTHONPATH)")
    parser.add_argument("--render", metavar="RESULTS_JSON",
                        help="only rewrite the Markdown report from a saved RESULTS.json")
    args = parser.parse_args(argv)
    if args.render:
        import json

        from benchmarks import report

        with open(args.render) as f:
            results = json.load(f)
        output = args.output or os.path.splitext(args.render)[0] + ".md"
        report.write(results, output)
        print(output)
        return
    from benchmarks import suite

    suite.run(quick=args.quick, data_dir=args.data_dir, results_path=args.output,
              spark=not args.no_spark, only=args.only, shapes=args.shape,
              mixlake_command=args.mixlake_command)


if __name__ == "__main__":
    main()
