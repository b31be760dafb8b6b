"""The report's figures drawn in a child process: the same PNG bytes as in the run's
process, a real child started with the run's interpreter, and what a failure does."""

import logging

import numpy as np
import pytest
from test_report import blob_sample, covariances_as, make_report

from pipeline import drawing
from pipeline.report import render_figures


def bayesian_report():
    return dict(make_report(), kind="bayesian", weight_threshold=0.01, n_weighted=2)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_the_child_draws_the_same_bytes_as_this_process(covariance_type):
    X, labels, means, covariances = blob_sample(4)
    covariances = covariances_as(covariance_type, covariances)
    report = make_report()
    arguments = (report, X, labels, means, covariances, covariance_type)
    painter = drawing.FigureProcess()
    drawn = painter.draw(*arguments).result(timeout=120)
    painter.close()
    here = render_figures(*arguments)
    assert list(drawn) == ["bic.png", "clusters.png"]
    assert drawn == here


def test_a_bayesian_report_and_no_sample():
    painter = drawing.FigureProcess()
    drawn = painter.draw(bayesian_report()).result(timeout=120)
    assert list(drawn) == ["weights.png"]
    assert drawn == render_figures(bayesian_report())


def test_the_child_runs_below_the_run_s_priority():
    import os
    import time

    painter = drawing.FigureProcess()
    pid, ours = painter._process.pid, os.getpriority(os.PRIO_PROCESS, 0)
    deadline = time.monotonic() + 30
    while os.getpriority(os.PRIO_PROCESS, pid) == ours and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(ours + drawing.NICENESS, 19)
    painter.close()


def test_an_unused_child_ends_when_closed():
    painter = drawing.FigureProcess()
    painter.close()
    assert painter._process.returncode is not None


def test_a_child_that_does_not_answer_is_killed_and_drawn_here(monkeypatch):
    # a child that reads nothing and never answers: killed after DRAW_TIMEOUT
    import subprocess

    monkeypatch.setattr(drawing, "DRAW_TIMEOUT", 0.5)
    painter = drawing.FigureProcess()
    painter._process.kill()
    painter._process.wait()
    painter._process = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=painter._stderr)
    drawn = painter.draw(bayesian_report()).result(timeout=30)
    assert drawn == render_figures(bayesian_report())
    assert painter._process.returncode == -9


def test_a_failed_child_is_drawn_again_here_and_its_error_raised(caplog):
    # covariances of the wrong shape: the child exits with the error, the figures are
    # drawn again in this process, which raises the drawing's own error
    X, labels, means, _ = blob_sample(2)
    painter = drawing.FigureProcess()
    with caplog.at_level(logging.WARNING, logger="pipeline.drawing"):
        future = painter.draw(make_report(), X, labels, means, np.ones((3, 5)), "diag")
        with pytest.raises(ValueError, match="must have shape"):
            future.result(timeout=120)
    assert "the figure process failed (exit code 1: ValueError: covariances" in caplog.text


def test_a_run_with_the_figure_process_writes_what_a_run_without_writes(tmp_path, cluster2,
                                                                        monkeypatch):
    # the same run id twice, the figures drawn by a child process, then in a thread: the
    # same report figures and assignment files, byte for byte
    from pathlib import Path

    from pipeline import run
    from pipeline.config import load_config
    from pipeline.demo import write_demo

    config_path = write_demo(tmp_path / "demo")
    outputs, started = {}, []
    original = drawing.FigureProcess.__init__

    def counted(self):
        started.append(1)
        original(self)

    monkeypatch.setattr(drawing.FigureProcess, "__init__", counted)
    for name, min_rows in (("child", 0), ("thread", 10**12)):
        monkeypatch.setattr(drawing, "MIN_ROWS", min_rows)
        started.clear()
        config = load_config(config_path, [f"cluster.address={cluster2.scheduler_address}",
                                           f"output.path={tmp_path / name}"])
        run.fit(config, run_id="20261202T000000Z-same")
        assert len(started) == (name == "child")
        outputs[name] = Path(config.output.path)
    for relative in ("report/bic.png", "report/clusters.png", "assignments/part.0.parquet"):
        assert (outputs["child"] / relative).read_bytes() == \
            (outputs["thread"] / relative).read_bytes(), relative


@pytest.mark.parametrize("fails_in", ["load", "output check"])
def test_a_failed_run_leaves_no_figure_process_behind(tmp_path, cluster2, monkeypatch,
                                                      fails_in):
    # a long-lived process (`mixlake serve`) must not collect a waiting child per failed run
    from pipeline import run
    from pipeline.config import load_config
    from pipeline.demo import write_demo
    from pipeline.storage import DataError

    painters = []
    original = drawing.FigureProcess.__init__

    def tracked(self):
        painters.append(self)
        original(self)

    monkeypatch.setattr(drawing.FigureProcess, "__init__", tracked)
    monkeypatch.setattr(drawing, "MIN_ROWS", 0)
    overrides = [f"cluster.address={cluster2.scheduler_address}",
                 f"output.path={tmp_path / 'out'}"]
    if fails_in == "load":
        overrides.append("model.n_components=100000")
    else:
        def refuse(*_):
            raise DataError("the Delta table is partitioned by other keys")

        overrides.append("output.format=delta")
        monkeypatch.setattr(run.delta, "check_partitioning", refuse)
    config = load_config(write_demo(tmp_path / "demo"), overrides)
    with pytest.raises(DataError):
        run.fit(config)
    assert all(painter._process.poll() is not None for painter in painters)
    assert len(painters) == (fails_in == "load")
