"""The commit protocol on real folders: staging, the atomic exchange, repair, the lock,
overlap checks on resolved paths."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pipeline import output
from pipeline.config import parse_config
from pipeline.output import OutputExistsError, Target


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _stage(config_output, run_id, files):
    target = Target(config_output, run_id)
    target.begin()
    for name, text in files.items():
        target.write_text(name, text)
    return target


@pytest.fixture
def out_config(tmp_path):
    return parse_config({"source": {"path": str(tmp_path / "data")},
                         "output": {"path": str(tmp_path / "out")}}).output


def test_exchange_swaps_two_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("b")
    output.exchange(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "a" / "x").read_text() == "b"
    assert (tmp_path / "b" / "x").read_text() == "a"
    with pytest.raises(OSError):
        output.exchange(str(tmp_path / "a"), str(tmp_path / "missing"))


def test_first_publish_renames_and_the_second_exchanges(tmp_path, out_config):
    first = _stage(out_config, "r1", {"part": "one"})
    first.publish({"run_id": "r1"})
    assert _tree(tmp_path / "out") == {"part": b"one", "_SUCCESS.json": b'{\n  "run_id": "r1"\n}'}
    second = _stage(out_config, "r2", {"part": "two"})
    second.publish({"run_id": "r2"})
    assert (tmp_path / "out" / "part").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left next to it


def test_without_exchange_publish_moves_the_previous_aside(tmp_path, out_config, monkeypatch):
    _stage(out_config, "r1", {"part": "one"}).publish({"run_id": "r1"})

    def unavailable(a, b):
        raise NotImplementedError("no renameat2 here")

    monkeypatch.setattr(output, "exchange", unavailable)
    _stage(out_config, "r2", {"part": "two"}).publish({"run_id": "r2"})
    assert (tmp_path / "out" / "part").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_repair_restores_a_previous_output_when_the_output_is_missing(tmp_path):
    previous = tmp_path / ".out.previous-r2"
    previous.mkdir()
    (previous / "_SUCCESS.json").write_text("{}")
    done = output.repair(str(tmp_path / "out"))
    assert done and "rolled back the interrupted run r2" in done[0]
    assert (tmp_path / "out" / "_SUCCESS.json").read_text() == "{}"
    assert not previous.exists()


def test_repair_finishes_a_publish_and_removes_staging_leftovers(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "new").write_text("new")
    for name in [".out.previous-r2", ".out.staging-r3", ".out.work-abc"]:
        (tmp_path / name).mkdir()
    done = output.repair(str(tmp_path / "out"))
    assert len(done) == 2
    # the checkpoint of a killed fit stays: it is how the rerun resumes
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.work-abc", "out"]
    assert output.repair(str(tmp_path / "out")) == []  # nothing left to do


def test_a_second_holder_of_the_lock_is_refused_naming_the_first(tmp_path):
    path = str(tmp_path / "out")
    with output.locked(path, "run-one"):
        holder = json.loads((tmp_path / ".out.lock").read_text())
        assert holder["run_id"] == "run-one" and holder["pid"] == os.getpid()
        script = textwrap.dedent(f"""
            from pipeline import output
            with output.locked({path!r}, "run-two"):
                pass
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode != 0
        assert "is being written by run run-one" in done.stderr
        assert f"pid {os.getpid()}" in done.stderr
    assert not (tmp_path / ".out.lock").exists()  # a run leaves nothing behind


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    path = str(tmp_path / "out")
    script = textwrap.dedent(f"""
        import os, signal
        from pipeline import output
        with output.locked({path!r}, "killed-run"):
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert done.returncode == -9
    assert "killed-run" in (tmp_path / ".out.lock").read_text()  # the file stays, unlocked
    with caplog.at_level("WARNING", logger="pipeline.output"):
        with output.locked(path, "next-run"):
            pass
    assert "took over the lock of run killed-run" in caplog.text


def test_overlap_is_found_through_a_symlink(tmp_path):
    from pipeline.run import check_output

    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "d").mkdir()
    os.symlink(data, tmp_path / "d" / "lake")
    for out in [tmp_path / "d" / "lake" / "results", tmp_path / "d" / ".." / "d" / "lake"]:
        config = parse_config({"source": {"path": str(data)}, "output": {"path": str(out)}})
        with pytest.raises(OutputExistsError, match="overlaps the input"):
            check_output(config)
    # and the other way round: the input seen through the link, the output beside it
    config = parse_config({"source": {"path": str(tmp_path / "d" / "lake" / "*.parquet")},
                           "output": {"path": str(data / "out")}})
    with pytest.raises(OutputExistsError, match="overlaps the input"):
        check_output(config)


def test_a_score_output_over_its_model_is_refused(tmp_path):
    from pipeline.run import check_output

    config = parse_config({"source": {"path": str(tmp_path / "data")},
                           "output": {"path": str(tmp_path / "fit")},
                           "score": {"model_path": str(tmp_path / "fit" / "model")}})
    with pytest.raises(OutputExistsError, match="score.model_path"):
        check_output(config, "score")
    assert check_output(config, "fit") == "run"  # a fit writes the model there: its job
