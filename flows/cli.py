"""The ``mixlake`` command: run, score, update, monitor, demo, validate, serve, deploy.

The application on top of the library: it configures logging, parses the config once,
and runs the steps of :mod:`pipeline.run` as the Prefect flows of this package. It lives
here, not in ``pipeline``, because the library never imports ``flows``.

Errors print as one clear line and exit non-zero; ``--debug`` shows the traceback.
Prefect is imported only by the subcommands that run flows.
"""

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

# Imports of the library are inside the commands: the worker processes of the embedded
# LocalCluster are spawned, and a spawned process imports the main module again (here:
# the `mixlake` script, which imports this module) before it can do anything.


def load_config(path, overrides=()):
    from pipeline.config import load_config as load

    return load(path, overrides)


def _user_errors():
    """Errors that are the input's or the config's: one line, exit 2."""
    from pipeline.cluster import ClusterError
    from pipeline.config import ConfigError
    from pipeline.output import OutputExistsError
    from pipeline.storage import DataError
    from pipeline.store import ModelFileError

    return (ConfigError, DataError, OutputExistsError, ClusterError, ModelFileError,
            ValueError, FileNotFoundError, PermissionError)


class _DropTracebacks(logging.Filter):
    """Without --debug, log records keep their message but lose the traceback."""

    def filter(self, record):
        record.exc_info = None
        record.exc_text = None
        return True


def _setup_logging(args, prefect):
    """Show the library's progress on stderr, each message once (see flows/progress.py).

    Under Prefect, Prefect's own handlers already carry the library's records (to the
    console and to the server: ``PREFECT_LOGGING_EXTRA_LOGGERS``), so a handler of ours
    would print every line twice; without Prefect, ours is the only one.
    """
    from flows import progress

    library = logging.getLogger("pipeline")
    library.setLevel(progress.level_for(args.quiet, args.verbose))
    if not args.quiet and not prefect:  # Prefect's handlers would print them as lines
        logging.getLogger("pipeline.progress").setLevel(logging.DEBUG)
    if not prefect and not any(getattr(h, "_mixlake", False) for h in library.handlers):
        handler = progress.handler_for()
        handler._mixlake = True
        library.addHandler(handler)
    logging.getLogger("distributed").setLevel(logging.ERROR if args.quiet else logging.WARNING)
    if not args.debug:
        for name in ["", *logging.root.manager.loggerDict]:
            for h in logging.getLogger(name).handlers:
                if not any(isinstance(f, _DropTracebacks) for f in h.filters):
                    h.addFilter(_DropTracebacks())


def _close_logging():
    """Stop a live progress display before the summary is printed."""
    library = logging.getLogger("pipeline")
    for handler in [h for h in library.handlers if getattr(h, "_mixlake", False)]:
        handler.close()
        library.removeHandler(handler)


def _process_seconds():
    """Seconds since this process started (interpreter start-up and imports included).

    On Linux from the start time in /proc (clock ticks since boot) and the boot-time
    clock: psutil's create_time adds the boot time, which /proc gives in whole seconds,
    so it may be off by up to a second."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command's name
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil

        return time.time() - psutil.Process().create_time()


def _time_line(summary):
    """The run's phases, preceded by the process's start-up and followed by what the
    phases do not cover: the parts add up to the process's wall time so far."""
    timings = dict(summary["timings"])
    total = _process_seconds()
    startup = summary.get("started_after", 0.0)
    other = total - startup - sum(timings.values())
    parts = {"start-up": startup, **timings, "other": max(other, 0.0)}
    return ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()) + f"; total {total:.1f} s"


def _print_summary(summary, stream=sys.stdout, command="run"):
    if summary.get("skipped"):
        print(f"skipped: {summary['output']} already holds a complete run of this config",
              file=stream)
        return
    chosen = next(c for c in summary["candidates"] if c["name"] == summary["chosen"])
    criterion = summary["criterion"]
    ranked = sorted((c for c in summary["candidates"] if c[criterion] is not None),
                    key=lambda c: c[criterion])
    lines = [
        "",
        f"mixlake {command} {summary['run_id']}  (config {summary['config_hash']})",
        f"  rows          {summary['n_rows']:,} in {len(summary['features'])} features"
        + (f", {summary['rows_dropped']:,} dropped (null cluster)"
           if summary["rows_dropped"] else ""),
        f"  files         {summary['files']['selected']:,} of "
        f"{summary['files']['listed']:,} selected by source.filter"
        if summary['files']['selected'] != summary['files']['listed'] else
        f"  files         {summary['files']['selected']:,}",
        f"  candidates    {len(summary['candidates'])}, {summary['passes']} passes over the data",
        f"  chosen        {chosen['name']}: {chosen['n_components']} components, "
        f"{chosen['covariance_type']} covariance, {criterion.upper()} {chosen[criterion]:,.1f}, "
        f"{chosen['n_iter']} iterations, {'converged' if chosen['converged'] else 'NOT converged'}",
        "  clusters      " + ", ".join(f"{c['cluster']}: {c['size']:,} ({c['weight']:.1%})"
                                       for c in summary["clusters"]),
        *([f"  weighted      {summary['n_weighted']} of {chosen['n_components']} components "
           f"carry weight > {summary['weight_threshold']:g}"]
          if summary.get("kind") == "bayesian" else []),
        *_baseline_line(summary),
        "  best by " + criterion.upper() + ":  "
        + ", ".join(f"{c['name']} {c[criterion]:,.0f}" for c in ranked[:4]),
        "  time          " + _time_line(summary),
        f"  output        {summary['output']}",
        f"  report        {os.path.join(summary['output'], 'report', 'report.md')}",
        "",
    ]
    print("\n".join(lines), file=stream)


def _baseline_line(summary):
    f = (summary.get("monitor") or {}).get("figures")
    if not f:
        return []
    return [f"  baseline      mean log-density {f['mean_log_density']:.2f}; "
            f"{f['outliers']:,} rows ({f['outlier_rate']:.1%}) below the training "
            f"{f['outlier_quantile'] * 100:g}% log-density {f['outlier_threshold']:.2f} are "
            "outliers"
            + (f"; warm start from {summary['warm_start']}" if summary.get("warm_start")
               else "")]


def prefect_configured():
    """Whether a Prefect server is configured: PREFECT_API_URL in the environment or in the
    active Prefect profile. Read without importing Prefect, which costs seconds."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    import tomllib

    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    try:
        profiles = tomllib.loads((home / "profiles.toml").read_text())
    except (OSError, ValueError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    return bool(profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL"))


def _execute(args, config, config_path, job_name):
    """Run the job as a Prefect flow run when Prefect is wanted, else the same steps
    directly: a plain run does not start a Prefect server it would throw away."""
    from pipeline import run

    started_after = _process_seconds()
    if args.prefect or prefect_configured():
        if job_name == "fit":
            from flows.fit import fit_flow as flow
        elif job_name == "update":
            from flows.update import update_flow as flow
        else:
            from flows.score import score_flow as flow
        _setup_logging(args, prefect=True)
        summary = flow(str(Path(config_path).resolve()), list(args.set), config=config)
    else:
        _setup_logging(args, prefect=False)
        try:
            job = {"fit": run.FIT, "score": run.SCORE, "update": run.UPDATE}[job_name]
            summary = run.execute(config, job)
        finally:
            _close_logging()
    return {**summary, "started_after": started_after}


def _cmd_run(args):
    config = load_config(args.config, args.set)  # once, and before anything starts
    _print_summary(_execute(args, config, args.config, "fit"))


def _cmd_score(args):
    from pipeline.run import require_score

    overrides = [*args.set, "output.mode=overwrite"] if args.full else args.set
    config = require_score(load_config(args.config, overrides), args.config)
    summary = _execute(args, config, args.config, "score")
    if summary.get("skipped"):
        print(f"skipped: {summary['output']} already holds a complete run of this config")
        return
    files = summary["files"]
    if summary["manifest"] is None:
        print(f"\nnothing new: {files['unchanged']:,} file(s) already scored by model "
              f"{summary['model_id']}; nothing written\n  output  {summary['output']}\n")
        return
    print(f"\nscored {summary['rows_out']:,} rows (rows in {summary['rows_in']:,}) with "
          f"model {summary['model_id']}\n  files   {files['scored']:,} scored, "
          f"{files['unchanged']:,} unchanged (skipped), {files['removed']:,} removed")
    print("\n".join(monitor_lines(summary, "  ")))
    print(f"  output  {summary['output']}\n")


def monitor_lines(summary, indent):
    """The monitor's figures and verdict of a run, as summary lines."""
    from pipeline.monitor.history import PLOT

    monitored = summary.get("monitor") or {}
    f, verdict = monitored.get("figures"), monitored.get("verdict")
    if not f:
        return []
    k = f["moved_component"]
    lines = [
        f"{indent}monitor {f['rows']:,} rows: mean log-density {f['mean_log_density']:.2f} "
        f"(training {f['training_mean_log_density']:.2f}: {-f['loglik_drop']:+.2f} nats/row, "
        f"{-f['loglik_drop_sd']:+.2f} SDs); outliers {f['outlier_rate']:.1%} "
        f"({f['outliers']:,}); PSI {f['psi']:.3f}; largest feature shift "
        f"{f['max_feature_shift_feature']} {f['max_feature_shift']:+.2f} SDs"
        + (f"; component {k}'s rows moved {f['moved_component_sd']:.1f} SDs"
           if k is not None and verdict["refit_recommended"] else ""),
        f"{indent}verdict " + ("REFIT RECOMMENDED" if verdict["refit_recommended"]
                               else "no refit needed: every figure within its threshold"),
    ]
    lines += [f"{indent}  - {reason}" for reason in verdict["reasons"]]
    lines.append(f"{indent}plot    {os.path.join(summary['output'], PLOT)}")
    return lines


def _cmd_update(args):
    overrides = [*args.set, "output.mode=overwrite"] if args.full else args.set
    config = load_config(args.config, overrides)
    summary = _execute(args, config, args.config, "update")
    if summary.get("skipped"):
        print(f"skipped: {summary['output']} already holds a complete run of this config")
        return
    action = summary["action"]
    if action == "none":
        print(f"\nnothing new: {summary['files']['unchanged']:,} file(s) already scored by "
              f"model {summary['model_id']}; nothing written\n  output  {summary['output']}\n")
        return
    if action == "fit":
        _print_summary(summary, command="update")
        print(f"  update  {summary['why']}; the monitor history starts here\n")
        return
    files = summary["files"]
    lines = ["", f"mixlake update {summary['run_id']}",
             f"  scored  {files['scored']:,} new or changed file(s) with model "
             f"{summary['model_id']}, {files['unchanged']:,} unchanged, "
             f"{files['removed']:,} removed"]
    lines += monitor_lines(summary, "  ")
    if action == "refit":
        new = summary["refit"]
        how = (f"warm start from {new['warm_start']}" if new["warm_start"]
               else "the model grid, cold")
        chosen = next(c for c in new["candidates"] if c["name"] == new["chosen"])
        lines.append(f"  action  REFIT ({summary['why']}): {how}, {new['chosen']}, "
                     f"{chosen['n_iter']} iterations, {new['passes']} passes -> model "
                     f"{new['model_id']}; rescored {summary['rows_out']:,} rows")
    else:
        lines.append(f"  action  model {summary['model_id']} kept: {summary['why']}")
    lines += [f"  output  {summary['output']}", ""]
    print("\n".join(lines))


def _cmd_monitor(args):
    from pipeline.monitor import history
    from pipeline.output import Target

    config = load_config(args.config, args.set)
    published = Target(config.output, "read").published()
    table = history.read_history(published)
    if table is None or table.num_rows == 0:
        print(f"no monitor history in {config.output.path} yet: run mixlake update (or "
              "mixlake score) first")
        return
    print("\n".join(["", *history.table_text(table, args.last), ""]))
    latest = table.to_pylist()[-1]
    entry = json.loads(published.read_text(f"{history.FOLDER}/{latest['run_id']}.json"))
    summary = {"output": config.output.path, "monitor": entry}
    print(f"latest: run {entry['run_id']} ({entry['time'][:19]}), {entry['action']}"
          + (f" ({entry['why']})" if entry["why"] else ""))
    print("\n".join(monitor_lines(summary, "  ")) + "\n")


def _cmd_demo(args):
    from pipeline.demo import write_demo

    directory = Path(args.dir).resolve()
    started = time.perf_counter()
    config_path = write_demo(directory)
    print(f"demo data: 6 Parquet partitions under {directory / 'data'}; config {config_path}")
    config = load_config(config_path, args.set)
    _print_summary(_execute(args, config, config_path, "fit"))
    print(f"demo finished in {time.perf_counter() - started:.1f} s: open "
          f"{directory / 'output' / 'report' / 'report.md'}")


def _cmd_validate(args):
    from pipeline.config import dump_config
    from pipeline.source import inspect

    config = load_config(args.config, args.set)
    print(dump_config(config), end="")
    print(f"# config hash: {config.config_hash()}")
    schema = inspect(config.source)
    print(f"# {len(schema.files)} partition(s), {schema.n_rows:,} rows, features: "
          f"{', '.join(schema.features)}")
    print(f"# candidates: {len(config.model.component_counts())} component counts x "
          f"{len(config.model.covariance_types())} covariance types x {config.model.n_init} "
          "init(s)")


def _cmd_serve(args):
    from flows.deploy import serve

    _setup_logging(args, prefect=True)
    serve(args.config, list(args.set), flow=args.flow)


def _cmd_deploy(args):
    from flows.deploy import deploy

    _setup_logging(args, prefect=True)
    print(deploy(args.config, list(args.set), work_pool=args.pool, flow=args.flow))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mixlake", description="Gaussian-mixture clustering for the data lake, on Dask.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the summary and errors")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also every candidate's iterations and every pass")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_text, config=True):
        p = sub.add_parser(name, help=help_text)
        if config:
            p.add_argument("config", help="YAML run config")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. model.n_components=5")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print only the summary and errors")
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="also every candidate's iterations and every pass")
        p.set_defaults(func=func, prefect=False, full=False)
        return p

    def with_prefect(p):
        p.add_argument("--prefect", action="store_true",
                       help="record the run in Prefect even without a configured server "
                            "(starts a temporary one)")
        return p

    with_prefect(add("run", _cmd_run, "fit the config's model grid and write results"))
    score = with_prefect(add("score", _cmd_score, "apply a saved model (score.model_path) "
                             "to the source files it has not scored yet"))
    score.add_argument("--full", action="store_true",
                       help="rescore every file (output.mode: overwrite)")
    update = with_prefect(add("update", _cmd_update, "the nightly job: score what is new with "
                              "the output's model, monitor it, refit when the data ask"))
    update.add_argument("--full", action="store_true",
                        help="rescore every file with the current model (output.mode: "
                             "overwrite)")
    watch = add("monitor", _cmd_monitor, "print the output's monitor history and the latest "
                "verdict (reads no data)")
    watch.add_argument("--last", type=int, default=20, help="runs to show (default 20)")
    demo = with_prefect(add("demo", _cmd_demo, "write a demo data set and fit it",
                            config=False))
    demo.add_argument("--dir", default="mixlake-demo", help="where to put data and output")
    add("validate", _cmd_validate, "check a config and its input's schema, without fitting")
    serve = add("serve", _cmd_serve, "serve a flow on the config's cron schedule (Prefect)")
    deploy = add("deploy", _cmd_deploy,
                 "create or update a flow's deployment on a Prefect work pool")
    for p in (serve, deploy):
        p.add_argument("--flow", choices=["fit", "update"], default="fit",
                       help="the flow to schedule (default fit; update: the nightly job)")
    deploy.add_argument("--pool", default="mixlake", help="the work pool (default mixlake)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a clear line, the traceback under --debug
        if args.debug:
            raise
        if isinstance(exc, _user_errors()):
            print(f"mixlake: error: {exc}", file=sys.stderr)
            return 2
        print(f"mixlake: error: {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    return 0


def console(argv=None):
    """The `mixlake` command: :func:`main`, then the process's exit without the
    interpreter's teardown of every module, which takes most of a second after a fit
    (scikit-learn, scipy, matplotlib, dask), once the run's atexit handlers have run and
    the output is flushed. Everything the run wrote is closed by then. A Prefect run
    exits the usual way: Prefect may still be shipping its records."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code
    if "prefect" in sys.modules:
        return code
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    sys.exit(console())
