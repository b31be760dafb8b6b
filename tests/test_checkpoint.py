"""Checkpoints: states saved after a pass come back bit for bit, and only for their own run."""

import io
import json
import logging
import posixpath

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from pipeline.checkpoint import Checkpoint
from pipeline.config import Output
from pipeline.mixture._em import PARAMETERS, EMState
from pipeline.selection import select


def _state(name, n_iter=3, covariance_type="full", seed=0, **fields):
    rng = np.random.default_rng(seed)
    K, D = 3, 2
    shape = {"full": (K, D, D), "diag": (K, D)}[covariance_type]
    weights = rng.random(K)
    return EMState(covariance_type, 1e-6, 1e-3, 100, weights / weights.sum(),
                   rng.standard_normal((K, D)), rng.random(shape), rng.random(shape),
                   lower_bound=-1.2345678901234567, n_iter=n_iter,
                   lower_bounds=[-3.0 + 0.1, -1.0 / 3.0, -1.2345678901234567][:n_iter],
                   fit_time=0.1 + 0.2, name=name, **fields)


def assert_same_state(restored, state):
    values, arrays = state.to_dict()
    restored_values, restored_arrays = restored.to_dict()
    assert restored_values == values
    assert restored.lower_bounds == state.lower_bounds
    for name in PARAMETERS:
        assert restored_arrays[name].dtype == arrays[name].dtype, name
        assert restored_arrays[name].shape == arrays[name].shape, name
        assert restored_arrays[name].tobytes() == arrays[name].tobytes(), name


@pytest.fixture
def checkpoint(tmp_path):
    return Checkpoint(Output(path=str(tmp_path / "out")), "hash-a")


@pytest.fixture
def saved(checkpoint):
    """Three candidates: a running one, one whose initialisation failed, one that failed."""
    states = [_state("full-k3-init0"), None,
              _state("diag-k3-init0", covariance_type="diag", seed=1,
                     error="ill-defined empirical covariance")]
    errors = [None, "initialisation: fewer distinct points than clusters", None]
    checkpoint.save(states, errors, "inputs-1", passes=7)
    return states, errors


NAMES = ["full-k3-init0", "full-k4-init0", "diag-k3-init0"]


# ------------------------------------------------------------------ the state


def test_em_state_round_trips_bit_for_bit_through_json_and_npz():
    state = _state("tied-k3-init1", converged=True)
    fresh = EMState("spherical", 0.0, 1e-3, 10, np.ones(2) / 2, np.zeros((2, 3)),
                    np.full(2, np.pi), np.full(2, np.e))  # lower bound -inf, no history
    for original in (state, fresh):
        values, arrays = original.to_dict()
        values = json.loads(json.dumps(values, allow_nan=True))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        buffer.seek(0)
        with np.load(buffer, allow_pickle=False) as npz:
            restored = EMState.from_dict(values, {k: npz[k] for k in npz.files})
        assert_same_state(restored, original)
        assert restored.name == original.name and restored.n_iter == original.n_iter
    assert EMState.from_dict(*fresh.to_dict()).lower_bound == -np.inf


def test_to_dict_does_not_share_the_history_list():
    state = _state("full-k3-init0")
    values, _ = state.to_dict()
    values["lower_bounds"].append(0.0)
    assert len(state.lower_bounds) == 3


# ------------------------------------------------------------------ save and load


def test_save_then_restore_gives_the_states_and_errors(checkpoint, saved):
    states, errors = saved
    restored, restored_errors, passes = checkpoint.restore("inputs-1", NAMES, EMState.from_dict)
    assert passes == 7 and restored_errors == errors
    assert restored[1] is None
    assert_same_state(restored[0], states[0])
    assert_same_state(restored[2], states[2])
    assert restored[2].error == "ill-defined empirical covariance"


def test_load_returns_the_payload_and_each_entrys_arrays(checkpoint, saved):
    payload, arrays = checkpoint.load("inputs-1")
    assert payload["passes"] == 7
    assert [entry and entry["name"] for entry in payload["candidates"]] == [
        "full-k3-init0", None, "diag-k3-init0"]
    assert arrays[1] is None and sorted(arrays[0]) == sorted(PARAMETERS)


def test_a_later_save_replaces_the_earlier_one(checkpoint, saved):
    states, errors = saved
    states[0].n_iter = 8
    checkpoint.save(states, errors, "inputs-1", passes=8)
    restored, _, passes = checkpoint.restore("inputs-1", NAMES, EMState.from_dict)
    assert passes == 8 and restored[0].n_iter == 8
    files = sorted(posixpath.basename(p) for p in checkpoint.fs.ls(checkpoint.root, detail=False))
    assert files == ["state-8.npz", "state.json"]  # the arrays of pass 7 are gone


def test_state_json_is_the_commit_point(checkpoint, saved):
    # a save killed after writing its arrays, or after writing state.json.new: both files
    # are there, but state.json still names the arrays of pass 7
    root = checkpoint.root
    with open(posixpath.join(root, "state-8.npz"), "wb") as handle:
        handle.write(b"half an npz")
    with open(posixpath.join(root, "state.json.new"), "w") as handle:
        handle.write('{"passes": 8, "candid')
    restored, _, passes = checkpoint.restore("inputs-1", NAMES, EMState.from_dict)
    assert passes == 7
    assert_same_state(restored[0], saved[0][0])
    # and the next save cleans up what the killed one left
    checkpoint.save(*saved, "inputs-1", passes=9)
    files = sorted(posixpath.basename(p) for p in checkpoint.fs.ls(root, detail=False))
    assert files == ["state-9.npz", "state.json"]


def test_an_older_npz_left_behind_is_not_read(checkpoint, saved):
    older = [_state("full-k3-init0", n_iter=1, seed=5), None, None]
    other = Checkpoint(Output(path=str(posixpath.dirname(checkpoint.location) + "/x")), "h")
    other.save(older, [None] * 3, "inputs-1", passes=2)
    # an npz of an earlier pass next to the current one
    with open(posixpath.join(other.root, "state-2.npz"), "rb") as handle:
        stale = handle.read()
    with open(posixpath.join(checkpoint.root, "state-2.npz"), "wb") as handle:
        handle.write(stale)
    restored, _, passes = checkpoint.restore("inputs-1", NAMES, EMState.from_dict)
    assert passes == 7
    assert_same_state(restored[0], saved[0][0])


# ------------------------------------------------------------------ not this run's checkpoint


def test_another_config_hash_or_input_is_not_used(tmp_path, checkpoint, saved):
    assert checkpoint.load("inputs-2") is None  # the data changed
    assert checkpoint.restore("inputs-2", NAMES, EMState.from_dict) is None
    other = Checkpoint(Output(path=str(tmp_path / "out")), "hash-b")
    assert other.load("inputs-1") is None  # another config: another location
    # a checkpoint that says it is of another config is not used either
    with open(posixpath.join(checkpoint.root, "state.json")) as handle:
        payload = json.load(handle)
    payload["config_hash"] = "hash-b"
    with open(posixpath.join(checkpoint.root, "state.json"), "w") as handle:
        json.dump(payload, handle)
    assert checkpoint.load("inputs-1") is None


def test_another_grid_is_not_used(checkpoint, saved, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.checkpoint"):
        assert checkpoint.restore("inputs-1", NAMES[:2], EMState.from_dict) is None
        assert checkpoint.restore("inputs-1", ["full-k2-init0", *NAMES[1:]],
                                  EMState.from_dict) is None
    assert "another grid" in caplog.text


@pytest.mark.parametrize("damage", ["json", "npz", "missing npz", "array names", "fields"])
def test_an_unreadable_checkpoint_is_ignored(checkpoint, saved, damage, caplog):
    root = checkpoint.root
    state_json = posixpath.join(root, "state.json")
    with open(state_json) as handle:
        payload = json.load(handle)
    if damage == "json":
        with open(state_json, "w") as handle:
            handle.write('{"config_hash": "hash-a", "fingerp')
    elif damage == "npz":
        with open(posixpath.join(root, payload["arrays"]), "wb") as handle:
            handle.write(b"PK\x03\x04 not really a zip")
    elif damage == "missing npz":
        payload["arrays"] = "state-99.npz"
    elif damage == "array names":
        payload["candidates"] = payload["candidates"][:1]  # arrays of c2 have no entry
    else:
        payload["candidates"][0]["colour"] = "blue"
    if damage not in ("json", "npz"):
        with open(state_json, "w") as handle:
            json.dump(payload, handle)
    with caplog.at_level(logging.WARNING, logger="pipeline.checkpoint"):
        assert checkpoint.restore("inputs-1", NAMES, EMState.from_dict) is None
    assert "unreadable checkpoint" in caplog.text


def test_clear_removes_the_checkpoint(checkpoint, saved):
    assert checkpoint.fs.exists(checkpoint.root)
    checkpoint.clear()
    assert not checkpoint.fs.exists(checkpoint.root)
    assert checkpoint.load("inputs-1") is None
    checkpoint.clear()  # nothing there: nothing to do


# ------------------------------------------------------------------ through model selection


def test_a_selection_resumes_from_its_checkpoint(checkpoint, caplog):
    X, _ = make_blobs(n_samples=600, n_features=2, centers=3, random_state=0)
    grid = dict(n_components=[2, 3], covariance_types=["full", "diag"], n_init=2,
                random_state=0, max_iter=20)
    first = select(X, checkpoint=checkpoint, fingerprint="inputs-1", **grid)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        again = select(X, checkpoint=checkpoint, fingerprint="inputs-1", **grid)
    assert "resumed from iteration" in caplog.text
    # resumed after the last pass: no initialisation, no EM pass, only the final one
    assert "initialisation" not in caplog.text and ": log-likelihood" not in caplog.text
    assert again.n_passes == first.n_passes
    assert [c.row() | {"fit_time_s": 0} for c in again.candidates] == [
        c.row() | {"fit_time_s": 0} for c in first.candidates]
    for a, b in zip(again.candidates, first.candidates):
        assert_same_state(a.state, b.state)
    assert again.best.name == first.best.name
    for name in PARAMETERS:
        assert np.array_equal(getattr(again.estimator, f"{name}_"),
                              getattr(first.estimator, f"{name}_"))
    other = select(X, checkpoint=checkpoint, fingerprint="inputs-2", **grid)
    assert other.n_passes == first.n_passes  # other input: started over
