"""What the command shows while a run works: one handler for the library's log records.

The library reports progress through log records (it never prints): a record may carry a
``progress`` dict (``phase``, ``total``, ``advance``, ``status``) besides its message.

- On a terminal, a rich progress display per phase (scan, initialisation, EM with the
  candidates still running and the best so far, final pass, write) with elapsed time and
  an ETA; plain messages print above it.
- Elsewhere (cron, CI, a pipe), plain lines: one per phase and one per EM iteration of the
  leading candidate; every message once.

Levels: ``quiet`` shows errors only, the default INFO, ``verbose`` DEBUG (every
candidate's iterations). The records that only move a display on come from the logger
``pipeline.progress`` at DEBUG; they carry no message and print nothing as lines.
"""

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"


def level_for(quiet, verbose):
    return logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO


class PlainHandler(logging.StreamHandler):
    """One line per record on stderr; progress-only records (no message) are skipped."""

    def __init__(self, stream=None):
        super().__init__(stream or sys.stderr)
        self.setFormatter(logging.Formatter(FORMAT, datefmt=DATE_FORMAT))

    def emit(self, record):
        if record.getMessage():
            super().emit(record)


class RichHandler(logging.Handler):
    """A live progress bar for the current phase, messages printed above it."""

    def __init__(self, stream=None):
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=stream or sys.stderr)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description:<14}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=self.console, transient=False)
        self.task = None
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s",
                                            datefmt=DATE_FORMAT))

    def emit(self, record):
        try:
            info = getattr(record, "progress", None)
            if info:
                self._update(info)
            if record.getMessage() and (not info or record.levelno >= logging.WARNING
                                        or info.get("phase")):
                self.progress.console.print(self.format(record), markup=False,
                                            highlight=False)
        except Exception:  # noqa: BLE001 - a display problem must never fail the run
            self.handleError(record)

    def _update(self, info):
        if "phase" in info:
            if self.task is not None:  # the previous phase is done: its bar full
                done = self.progress.tasks[-1].completed
                self.progress.update(self.task, total=max(done, 1), completed=max(done, 1))
                self.progress.stop_task(self.task)
            self.progress.start()
            self.task = self.progress.add_task(info["phase"], total=info.get("total"),
                                               status=info.get("status", ""))
        elif self.task is not None:
            self.progress.update(self.task, advance=info.get("advance", 0),
                                 status=info.get("status",
                                                 self.progress.tasks[-1].fields["status"]))

    def close(self):
        if self.task is not None:
            self.progress.stop()
        super().close()


def handler_for(stream=None, interactive=None):
    """The rich display on a terminal, plain lines elsewhere."""
    stream = stream or sys.stderr
    if interactive is None:
        interactive = hasattr(stream, "isatty") and stream.isatty()
    return RichHandler(stream) if interactive else PlainHandler(stream)
