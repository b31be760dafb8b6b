"""Incremental scoring: 30 daily partitions scored, one new day added, the nightly run.

    python -m benchmarks.incremental [--days 30] [--rows 200000] [--repeats 3]

Measures, alternating, on the same data and the same 2-worker LocalCluster of processes:

- the incremental run (`mixlake score` semantics through ``pipeline.run.execute``) on an
  output that holds the 30 scored days, after day 31 arrived;
- scoring day 31 alone (the same table filtered to that day, a fresh output).

Time is wall time of the run; bytes are what the client and the workers read from storage
during the run (``rchar`` of /proc/<pid>/io, so page-cache hits count too), over the data
files' sizes. Prints a Markdown table.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _rchar(pid):
    with open(f"/proc/{pid}/io") as handle:
        for line in handle:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def _bytes_read(pids):
    return sum(_rchar(pid) for pid in pids)


def _config(data, out, model, address, features, day=None):
    from pipeline.config import parse_config

    return parse_config({
        "source": {"path": str(data), "passthrough": ["id", "day"], "features": features,
                   **({"filter": [["day", "=", day]]} if day else {})},
        "output": {"path": str(out), "columns": ["probabilities"]},
        "score": {"model_path": str(model)},
        "cluster": {"address": address},
    })


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.incremental")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=200_000, help="rows per day")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--save", action="store_true",
                        help="merge the result into benchmarks/RESULTS.json and re-render "
                             "RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")

    from distributed import Client, LocalCluster

    from pipeline import run
    from pipeline.config import parse_config
    from pipeline.demo import make_lake_data

    work = Path(args.dir or tempfile.mkdtemp(prefix="mixlake-incremental-"))
    lake = work / "lake" / "events"
    features = [f"x{j}" for j in range(args.features)]
    make_lake_data(lake, args.days, rows_per_day=args.rows, n_features=args.features)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        address = cluster.scheduler_address
        pids = [os.getpid(), *client.run(os.getpid).values()]
        model = work / "model"
        if not (model / "_SUCCESS.json").exists():
            run.execute(parse_config({
                "source": {"path": str(lake), "features": features,
                           "filter": [["day", "<=", "2026-11-05"]]},
                "model": {"n_components": 8, "covariance_type": "diag"},
                "output": {"path": str(model), "mode": "overwrite"},
                "cluster": {"address": address}}), run.FIT)
        scored = work / "scored-30"
        if not (scored / "_SUCCESS.json").exists():
            run.execute(_config(lake, scored, model, address, features), run.SCORE)
        make_lake_data(lake, args.days + 1, rows_per_day=args.rows, n_features=args.features)
        new_day = sorted(p.name.split("=", 1)[1] for p in lake.iterdir())[-1]
        day_folder = lake / f"day={new_day}"
        day_bytes = sum(p.stat().st_size for p in day_folder.rglob("*.parquet"))
        ledger_bytes = (scored / "_ledger.json").stat().st_size
        rows = {"incremental": [], "alone": []}
        for repeat in range(args.repeats):
            for way in ("incremental", "alone"):
                out = work / f"{way}-{repeat}"
                shutil.rmtree(out, ignore_errors=True)
                if way == "incremental":  # the 30-day output, as the night before
                    shutil.copytree(scored, out, copy_function=os.link)
                    config = _config(lake, out, model, address, features)
                else:
                    config = _config(lake, out, model, address, features, day=new_day)
                before, started = _bytes_read(pids), time.perf_counter()
                summary = run.execute(config, run.SCORE)
                seconds = time.perf_counter() - started
                read = _bytes_read(pids) - before
                assert summary["files"]["scored"] == 1, summary["files"]
                rows[way].append((seconds, read))
                shutil.rmtree(out, ignore_errors=True)
    best = {way: min(r[0] for r in values) for way, values in rows.items()}
    median = {way: statistics.median(r[0] for r in values) for way, values in rows.items()}
    read = {way: min(r[1] for r in values) for way, values in rows.items()}
    print(f"\n{args.days} days x {args.rows:,} rows x {args.features} features; day "
          f"{new_day}: {day_bytes / 2**20:.1f} MiB of Parquet; ledger "
          f"{ledger_bytes / 2**10:.1f} KiB; {args.repeats} alternating repeats\n")
    print("| run | fastest | median | bytes read | read / (day + ledger) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for way, label in (("incremental", f"incremental, {args.days} scored + 1 new day"),
                       ("alone", "the new day alone")):
        print(f"| {label} | {best[way]:.2f} s | {median[way]:.2f} s | "
              f"{read[way] / 2**20:.1f} MiB | {read[way] / (day_bytes + ledger_bytes):.2f} |")
    print(f"\nincremental / alone: time {best['incremental'] / best['alone']:.2f}x "
          f"(target <= 1.5x), bytes {read['incremental'] / read['alone']:.2f}x")
    if args.save:
        import datetime as dt

        from benchmarks import report

        labels = {"incremental": f"incremental, {args.days} scored + 1 new day",
                  "alone": "the new day alone"}
        result = {
            "measured": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "days": args.days, "rows": args.rows, "features": args.features,
            "repeats": args.repeats, "new_day": new_day, "day_mib": day_bytes / 2**20,
            "ledger_kib": ledger_bytes / 2**10,
            "runs": [{"label": labels[way], "fastest": best[way], "median": median[way],
                      "mib": read[way] / 2**20,
                      "read_ratio": read[way] / (day_bytes + ledger_bytes)}
                     for way in ("incremental", "alone")],
            "time_ratio": best["incremental"] / best["alone"],
            "bytes_ratio": read["incremental"] / read["alone"]}
        report.save_section("incremental", result)


if __name__ == "__main__":
    main()
