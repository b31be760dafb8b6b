"""Checkpoints of the EM: a killed run resumes from its last completed pass.

After each pass over the data the state of every candidate (serialised by the state
itself: ``to_dict`` / ``from_dict``) and its error are written under the run's working
location:

- local output ``<parent>/.<name>.work-<config hash>/``
- object stores ``<output>/_work/<config hash>/``

A checkpoint is used only by a run with the same config hash, the same input files
(paths, sizes, modification times) and the same candidates; it is deleted once the run
is published.
"""

import io as _io
import json
import logging
import posixpath
import zipfile

import numpy as np

from pipeline.storage import filesystem, is_local

logger = logging.getLogger("pipeline.checkpoint")


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
        """Write the states of a fit after a pass (``state.json`` written last).

        Parameters
        ----------
        states : list of EMState or None
            Anything with ``to_dict() -> (JSON-able dict, dict of arrays)``.
        errors : list of str or None
        fingerprint : str
            Of the input (paths, sizes, modification times).
        passes : int
            Passes over the data made so far.
        """
        entries, arrays = [], {}
        for i, state in enumerate(states):
            if state is None:
                entries.append(None)
                continue
            values, state_arrays = state.to_dict()
            entries.append(values)
            arrays.update({f"c{i}_{name}": array for name, array in state_arrays.items()})
        buffer = _io.BytesIO()
        np.savez(buffer, **arrays)
        npz_name = f"state-{passes}.npz"
        self._write(npz_name, buffer.getvalue())
        payload = {"config_hash": self.config_hash, "fingerprint": fingerprint,
                   "passes": passes, "arrays": npz_name, "candidates": entries,
                   "errors": errors}
        self._write("state.json.new", json.dumps(payload).encode())
        self.fs.mv(posixpath.join(self.root, "state.json.new"),
                   posixpath.join(self.root, "state.json"))
        for name in self.fs.ls(self.root, detail=False):
            base = posixpath.basename(name)
            if base.startswith("state-") and base != npz_name:
                self.fs.rm(name)

    def load(self, fingerprint):
        """The saved payload and each state's arrays, or None when absent or for other inputs.

        Returns
        -------
        payload : dict
            ``passes``, ``errors`` and ``candidates`` (each state's dict, or None).
        arrays : list of dict or None
            The arrays of each entry of ``candidates``.
        """
        state_path = posixpath.join(self.root, "state.json")
        if not self.fs.exists(state_path):
            return None
        try:
            with self.fs.open(state_path, "r") as handle:
                payload = json.loads(handle.read())
            arrays = [None if entry is None else {} for entry in payload["candidates"]]
            with self.fs.open(posixpath.join(self.root, payload["arrays"]), "rb") as handle:
                with np.load(_io.BytesIO(handle.read()), allow_pickle=False) as npz:
                    for key in npz.files:
                        index, name = key[1:].split("_", 1)
                        arrays[int(index)][name] = npz[key]
        except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError,
                zipfile.BadZipFile) as exc:
            logger.warning("ignoring an unreadable checkpoint at %s: %s", self.location, exc)
            return None
        if payload.get("config_hash") != self.config_hash:
            return None
        if payload.get("fingerprint") != fingerprint:
            logger.info("the input changed since the checkpoint at %s: starting over",
                        self.location)
            return None
        return payload, arrays

    def restore(self, fingerprint, names, from_dict):
        """``(states, errors, passes)`` saved by a fit of the runs ``names`` on this input.

        Parameters
        ----------
        fingerprint : str
        names : list of str
            The runs of this fit, in order; a checkpoint of other runs is not used.
        from_dict : callable
            ``from_dict(values, arrays)`` -> a state (with ``name`` and ``n_iter``).

        Returns
        -------
        tuple or None
        """
        loaded = self.load(fingerprint)
        if loaded is None:
            return None
        payload, arrays = loaded
        try:
            states = [None if entry is None else from_dict(entry, entry_arrays)
                      for entry, entry_arrays in zip(payload["candidates"], arrays)]
        except (TypeError, KeyError) as exc:
            logger.warning("ignoring an unreadable checkpoint at %s: %s", self.location, exc)
            return None
        if len(states) != len(names) or any(
                state is not None and state.name != name for state, name in zip(states, names)):
            logger.info("the checkpoint at %s is of another grid: starting over", self.location)
            return None
        iteration = max((s.n_iter for s in states if s is not None), default=0)
        logger.info("resumed from iteration %d (checkpoint after pass %d at %s)",
                    iteration, payload["passes"], self.location)
        return states, payload["errors"], payload["passes"]

    def clear(self):
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)

