"""The report's figures drawn in a child process while the run writes its assignments.

Matplotlib holds the GIL while it imports (~0.5 s) and draws (~0.5 s for bic.png and
clusters.png): in a thread of the run's process it slowed the worker threads that write
the assignments by more than its own time (1M rows: writing took 1.6 s beside it, 0.66 s
alone). A child process started when the run starts imports matplotlib and loads its
fonts on the core the run's own imports leave idle, waits for the selection's result on
its stdin, and sends the PNG files back on its stdout: the same bytes
:func:`pipeline.report.render_figures` gives in the run's process.

The exchange, both ends here (no pickle): the run writes one JSON line (the report
dict, the covariance type and the names of the arrays that follow), then each array in
``.npy`` format; the child answers with one JSON line (``{file name: size}``, in order)
followed by the files' bytes, or exits non-zero with the error on stderr. A child whose
stdin closes before anything came (the run ended first) exits at once.
"""

import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# below this many input rows a run draws in a thread (the child's start costs more CPU
# than the contention it saves on small data)
MIN_ROWS = 200_000
# seconds the child may take to answer (two figures take ~1 s)
DRAW_TIMEOUT = 300.0
NICENESS = 10


class FigureProcess:
    """A child process that draws the report's figures: start it early, :meth:`draw`
    once, then ``.result()`` the returned future; :meth:`close` ends an unused one."""

    def __init__(self):
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["MPLBACKEND"] = "Agg"
        # a file, not a pipe: nobody reads stderr until the end, a full pipe would block
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.drawing"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, env=env)

    def draw(self, report, sample_X=None, sample_labels=None, means=None, covariances=None,
             covariance_type=None):
        """A future of :func:`pipeline.report.render_figures` of these arguments. Should
        the child fail, the figures are drawn in this process instead (and its error,
        if the drawing's own, raised from there)."""
        arrays = {"sample_X": sample_X, "sample_labels": sample_labels, "means": means,
                  "covariances": covariances}
        future = Future()

        def exchange():
            try:
                future.set_result(self._exchange(report, arrays, covariance_type))
            except Exception as error:  # noqa: BLE001 - the child's, drawn again here
                logger.warning("the figure process failed (%s); drawing in this process",
                               error)
                from pipeline.report import render_figures

                try:
                    future.set_result(render_figures(report, covariance_type=covariance_type,
                                                     **arrays))
                except BaseException as again:
                    future.set_exception(again)

        threading.Thread(target=exchange, name="mixlake-figures", daemon=True).start()
        return future

    def _exchange(self, report, arrays, covariance_type):
        process = self._process
        given = {name: np.asarray(value) for name, value in arrays.items() if value is not None}
        header = {"report": report, "covariance_type": covariance_type, "arrays": list(given)}
        # a child that hangs is killed: its stdout ends, and the figures are drawn here
        timer = threading.Timer(DRAW_TIMEOUT, process.kill)
        timer.start()
        try:
            body = io.BytesIO()
            for value in given.values():
                np.lib.format.write_array(body, value, allow_pickle=False)
            process.stdin.write(json.dumps(header, default=_plain).encode() + b"\n")
            process.stdin.write(body.getbuffer())
            process.stdin.close()
            sizes = json.loads(process.stdout.readline() or b"null")
            figures = {name: process.stdout.read(size) for name, size in (sizes or {}).items()}
        except (OSError, ValueError) as error:
            sizes, figures = None, str(error)
        returncode = process.wait()
        timer.cancel()
        process.stdout.close()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace").strip().splitlines()
        self._stderr.close()
        if returncode or sizes is None or any(len(figures[n]) != s for n, s in sizes.items()):
            raise RuntimeError(f"exit code {returncode}: {stderr[-1] if stderr else figures}")
        return figures

    def close(self):
        """End the child if :meth:`draw` was never called (it has nothing to finish)."""
        process = self._process
        if process.stdin and not process.stdin.closed:
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout, self._stderr):
                try:
                    stream.close()
                except OSError:  # a pipe to a killed child
                    pass


def _plain(value):
    """JSON for the numpy scalars and arrays a report dict may hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _warm_up():
    """Load what the first figure of a process would (fonts, the Agg canvas)."""
    from matplotlib.figure import Figure

    from pipeline import report

    figure = Figure(figsize=(1, 1))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], marker="o")
    axes.set_title("warm")
    report._png_bytes(figure)


def main():
    """The child: import and warm up, then draw what arrives on stdin. At a lower
    priority than the run: it takes the cores the run leaves idle, never the run's."""
    os.nice(NICENESS)
    from pipeline import report

    _warm_up()
    stdin = sys.stdin.buffer
    line = stdin.readline()
    if not line:
        return 0
    header = json.loads(line)
    body = io.BytesIO(stdin.read())  # read_array wants a file it can tell() in
    arrays = {name: np.lib.format.read_array(body, allow_pickle=False)
              for name in header["arrays"]}
    figures = report.render_figures(header["report"],
                                    covariance_type=header["covariance_type"], **arrays)
    out = sys.stdout.buffer
    out.write(json.dumps({name: len(data) for name, data in figures.items()}).encode() + b"\n")
    for data in figures.values():
        out.write(data)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
