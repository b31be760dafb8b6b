"""The ``mixlake`` command: run, score, demo, validate, serve.

The application on top of the library: it configures logging, parses the config once,
and runs the steps of :mod:`pipeline.run` as the Prefect flows of this package. It lives
here, not in ``pipeline``, because the library never imports ``flows``.

Errors print as one clear line and exit non-zero; ``--debug`` shows the traceback.
Prefect is imported only by the subcommands that run flows.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pipeline.cluster import ClusterError
from pipeline.config import ConfigError, dump_config, load_config
from pipeline.output import OutputExistsError
from pipeline.storage import DataError
from pipeline.store import ModelFileError

USER_ERRORS = (ConfigError, DataError, OutputExistsError, ClusterError, ModelFileError,
               ValueError, FileNotFoundError, PermissionError)


class _DropTracebacks(logging.Filter):
    """Without --debug, log records keep their message but lose the traceback."""

    def filter(self, record):
        record.exc_info = None
        record.exc_text = None
        return True


def _setup_logging(debug):
    """Show the library's progress (each EM iteration) on stderr; Prefect logs its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    library = logging.getLogger("pipeline")
    library.setLevel(logging.INFO)
    if not any(getattr(h, "_mixlake", False) for h in library.handlers):
        handler._mixlake = True
        library.addHandler(handler)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if not debug:
        for name in ["", *logging.root.manager.loggerDict]:
            for h in logging.getLogger(name).handlers:
                if not any(isinstance(f, _DropTracebacks) for f in h.filters):
                    h.addFilter(_DropTracebacks())


def _print_summary(summary, stream=sys.stdout):
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
        f"mixlake run {summary['run_id']}  (config {summary['config_hash']})",
        f"  rows          {summary['n_rows']:,} in {len(summary['features'])} features"
        + (f", {summary['rows_dropped']:,} dropped (null cluster)"
           if summary["rows_dropped"] else ""),
        f"  candidates    {len(summary['candidates'])}, {summary['passes']} passes over the data",
        f"  chosen        {chosen['name']}: {chosen['n_components']} components, "
        f"{chosen['covariance_type']} covariance, {criterion.upper()} {chosen[criterion]:,.1f}, "
        f"{chosen['n_iter']} iterations, {'converged' if chosen['converged'] else 'NOT converged'}",
        "  clusters      " + ", ".join(f"{c['cluster']}: {c['size']:,} ({c['weight']:.1%})"
                                       for c in summary["clusters"]),
        "  best by " + criterion.upper() + ":  "
        + ", ".join(f"{c['name']} {c[criterion]:,.0f}" for c in ranked[:4]),
        "  time          " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings"].items()),
        f"  output        {summary['output']}",
        f"  report        {os.path.join(summary['output'], 'report', 'report.md')}",
        "",
    ]
    print("\n".join(lines), file=stream)


def _cmd_run(args):
    config = load_config(args.config, args.set)  # once, and before Prefect starts
    from flows.fit import fit_flow

    _setup_logging(args.debug)
    summary = fit_flow(str(Path(args.config).resolve()), list(args.set), config=config)
    _print_summary(summary)


def _cmd_score(args):
    from pipeline.run import require_score

    config = require_score(load_config(args.config, args.set), args.config)
    from flows.score import score_flow

    _setup_logging(args.debug)
    summary = score_flow(str(Path(args.config).resolve()), list(args.set), config=config)
    if summary.get("skipped"):
        print(f"skipped: {summary['output']} already holds a complete run of this config")
    else:
        print(f"\nscored {summary['rows_out']:,} rows (rows in {summary['rows_in']:,}) with "
              f"model {summary['model_id']}\n  output  {summary['output']}\n")


def _cmd_demo(args):
    from pipeline.demo import write_demo

    directory = Path(args.dir).resolve()
    started = time.perf_counter()
    config_path = write_demo(directory)
    print(f"demo data: 6 Parquet partitions under {directory / 'data'}; config {config_path}")
    config = load_config(config_path, args.set)
    from flows.fit import fit_flow

    _setup_logging(args.debug)
    summary = fit_flow(str(config_path), list(args.set), config=config)
    _print_summary(summary)
    print(f"demo finished in {time.perf_counter() - started:.1f} s: open "
          f"{directory / 'output' / 'report' / 'report.md'}")


def _cmd_validate(args):
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

    _setup_logging(args.debug)
    serve(args.config, list(args.set))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mixlake", description="Gaussian-mixture clustering for the data lake, on Dask.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_text, config=True):
        p = sub.add_parser(name, help=help_text)
        if config:
            p.add_argument("config", help="YAML run config")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. model.n_components=5")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors")
        p.set_defaults(func=func)
        return p

    add("run", _cmd_run, "fit the config's model grid and write results (Prefect flow)")
    add("score", _cmd_score, "apply a saved model (score.model_path) to the source data")
    demo = add("demo", _cmd_demo, "write a demo data set and run the fit flow on it",
               config=False)
    demo.add_argument("--dir", default="mixlake-demo", help="where to put data and output")
    add("validate", _cmd_validate, "check a config and its input's schema, without fitting")
    add("serve", _cmd_serve, "serve the fit flow on the config's cron schedule")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"mixlake: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a clear line, the traceback under --debug
        if args.debug:
            raise
        print(f"mixlake: error: {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
