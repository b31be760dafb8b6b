"""Checkpoints of the EM: a killed run resumes from its last completed pass.

After each pass over the data the state of every candidate (parameters, iteration, lower
bounds, convergence, errors) is written under the run's working location:

- local output ``<parent>/.<name>.work-<config hash>/``
- object stores ``<output>/_work/<config hash>/``

A checkpoint is used only by a run with the same config hash and the same input files
(paths, sizes, modification times); it is deleted once the run is published.
"""

import io as _io
import json
import logging
import posixpath

import numpy as np

from pipeline.storage import filesystem, is_local

logger = logging.getLogger("pipeline.checkpoint")

STATE_FIELDS = ("covariance_type", "reg_covar", "tol", "max_iter", "lower_bound",
                "lower_bounds", "n_iter", "converged", "error", "fit_time", "name")
ARRAY_FIELDS = ("weights", "means", "covariances", "precisions_cholesky")


def working_location(output_config, config_hash):
    path = output_config.path.rstrip("/")
    if is_local(path):
        parent, name = posixpath.split(path)
        return posixpath.join(parent, f".{name}.work-{config_hash}")
    return posixpath.join(path, "_work", config_hash)


class Checkpoint:
    """Save and load the EM state of one config's run."""

    def __init__(self, output_config, config_hash):
        self.config_hash = config_hash
        self.location = working_location(output_config, config_hash)
        self.fs, self.root = filesystem(self.location, output_config.storage_options)

    def _write(self, name, data):
        # write a new name, never overwrite the file the current state.json points to
        self.fs.makedirs(self.root, exist_ok=True)
        with self.fs.open(posixpath.join(self.root, name), "wb") as handle:
            handle.write(data)

    def save(self, states, errors, fingerprint, passes):
        """Write the state of every candidate after a pass (state.json written last)."""
        iteration = max((s.n_iter for s in states if s is not None), default=0)
        arrays = {}
        entries = []
        for i, state in enumerate(states):
            if state is None:
                entries.append(None)
                continue
            entries.append({field: getattr(state, field) for field in STATE_FIELDS})
            for field in ARRAY_FIELDS:
                arrays[f"c{i}_{field}"] = np.asarray(getattr(state, field), np.float64)
        buffer = _io.BytesIO()
        np.savez(buffer, **arrays)
        npz_name = f"state-{passes}.npz"
        self._write(npz_name, buffer.getvalue())
        payload = {"config_hash": self.config_hash, "fingerprint": fingerprint,
                   "iteration": iteration, "passes": passes, "arrays": npz_name,
                   "candidates": entries, "errors": errors}
        self._write("state.json.new", json.dumps(payload).encode())
        self.fs.mv(posixpath.join(self.root, "state.json.new"),
                   posixpath.join(self.root, "state.json"))
        for name in self.fs.ls(self.root, detail=False):
            base = posixpath.basename(name)
            if base.startswith("state-") and base != npz_name:
                self.fs.rm(name)

    def load(self, fingerprint):
        """The saved payload and arrays, or None when absent or for other inputs."""
        state_path = posixpath.join(self.root, "state.json")
        if not self.fs.exists(state_path):
            return None
        try:
            with self.fs.open(state_path, "r") as handle:
                payload = json.loads(handle.read())
            with self.fs.open(posixpath.join(self.root, payload["arrays"]), "rb") as handle:
                with np.load(_io.BytesIO(handle.read()), allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring an unreadable checkpoint at %s: %s", self.location, exc)
            return None
        if payload.get("config_hash") != self.config_hash:
            return None
        if payload.get("fingerprint") != fingerprint:
            logger.info("the input changed since the checkpoint at %s: starting over",
                        self.location)
            return None
        return payload, arrays

    def clear(self):
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)


def restore_states(payload, arrays, state_class):
    """EMState objects (or None) from a loaded checkpoint."""
    states = []
    for i, entry in enumerate(payload["candidates"]):
        if entry is None:
            states.append(None)
            continue
        fields = dict(entry)
        for field in ARRAY_FIELDS:
            fields[field] = arrays[f"c{i}_{field}"]
        states.append(state_class(**fields))
    return states
