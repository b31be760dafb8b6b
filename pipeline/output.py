"""Where a run writes, and how it commits: nobody ever sees half a run.

Local folders: the run writes into ``.<name>.staging-<run id>`` next to the output, writes
``_SUCCESS.json`` there last, and renames the folder into place (the previous output is
moved aside and deleted only then).

Object stores (``s3://`` ...) have no atomic rename: the run writes under the run-specific
prefix ``<output>/runs/<run id>/`` and then publishes ``<output>/_SUCCESS.json``, which
names that prefix, last (a single PUT). Readers resolve the output through the manifest.
A failed run publishes no manifest, so the previous one stays in force.
"""

import json
import logging
import os
import posixpath
import shutil
import tempfile

from pipeline.storage import Location, filesystem, is_local
from pipeline.storage import strip_file_scheme as _strip

logger = logging.getLogger("pipeline.output")

MANIFEST = "_SUCCESS.json"


class OutputExistsError(RuntimeError):
    """The output location already holds a run and the config's mode forbids replacing it."""


def read_manifest(output_path, storage_options=None):
    """The ``_SUCCESS.json`` of the last completed run at ``output_path``, or None."""
    fs, root = filesystem(output_path, storage_options)
    path = posixpath.join(root, MANIFEST)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as handle:
        return json.loads(handle.read())


def resolve(output_path, storage_options=None):
    """The folder holding the last completed run's files (through the manifest)."""
    manifest = read_manifest(output_path, storage_options)
    prefix = (manifest or {}).get("prefix", "")
    return posixpath.join(output_path.rstrip("/"), prefix) if prefix else output_path


def resolve_model_path(path, storage_options=None):
    """A model folder, a fit output, or ``<fit output>/model`` -> the model folder to read."""
    fs, root = filesystem(path, storage_options)
    if fs.exists(posixpath.join(root, "model.json")):
        return path
    if read_manifest(path, storage_options) is not None:
        return posixpath.join(resolve(path, storage_options), "model")
    parent = posixpath.dirname(path.rstrip("/"))
    if posixpath.basename(path.rstrip("/")) == "model" and read_manifest(parent,
                                                                         storage_options):
        return posixpath.join(resolve(parent, storage_options), "model")
    return path


class Target:
    """The output of one run: a staging location, then a commit."""

    def __init__(self, output_config, run_id):
        self.path = output_config.path.rstrip("/")
        self.options = dict(output_config.storage_options)
        self.run_id = run_id
        self.local = is_local(self.path)
        if self.local:
            parent, name = posixpath.split(_strip(self.path))
            self.staging = posixpath.join(parent, f".{name}.staging-{run_id}")
        else:
            self.prefix = f"runs/{run_id}"
            self.staging = posixpath.join(self.path, self.prefix)
        self.location = Location(self.staging, self.options)
        self.fs, self._staging_root = self.location.fs, self.location.root

    # -------------------------------------------------------------- checks

    def check(self, config):
        """Refuse bad locations before any work. Returns 'run' or 'skip'."""
        out = self.path
        src = config.source.path.rstrip("/")
        src_root = src.split("*")[0].rstrip("/")
        if out == src_root or out.startswith(src_root + "/") or src_root.startswith(out + "/"):
            raise OutputExistsError(f"output.path: {out!r} overlaps the input {src!r}; write "
                                    "the results somewhere outside the input")
        if self.local:
            self._probe_writable()
        manifest = read_manifest(out, self.options)
        if self.local:
            root = _strip(out)
            exists = os.path.exists(root) and (not os.path.isdir(root) or bool(os.listdir(root)))
        else:
            exists = manifest is not None
        mode = config.output.mode
        if mode == "skip-if-complete" and manifest and \
                manifest.get("config_hash") == config.config_hash():
            return "skip"
        if exists and mode == "error":
            raise OutputExistsError(f"output.path: {out!r} already exists; set output.mode: "
                                    "overwrite (or skip-if-complete), or choose another path")
        return "run"

    def _probe_writable(self):
        """Fail before any work when the output's folder cannot be written."""
        parent = os.path.dirname(_strip(self.path)) or "."
        try:
            os.makedirs(parent, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=parent, prefix=".mixlake-probe-"):
                pass
        except OSError as exc:
            raise PermissionError(f"output.path: cannot write to {self.path!r} ({exc}); "
                                  "choose a location this job may write to") from None

    # -------------------------------------------------------------- writing

    def begin(self):
        if self.local:
            os.makedirs(self._staging_root, exist_ok=False)

    def write_text(self, relative, text):
        path = posixpath.join(self._staging_root, relative)
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with self.fs.open(path, "w") as handle:
            handle.write(text)

    def local_folder(self, relative):
        """A local folder whose content :meth:`upload` then puts under ``relative``."""
        if self.local:
            folder = posixpath.join(self._staging_root, relative)
            os.makedirs(folder, exist_ok=True)
            return folder
        return tempfile.mkdtemp(prefix="mixlake-")

    def upload(self, folder, relative):
        if self.local:
            return
        for name in sorted(os.listdir(folder)):
            self.fs.put_file(os.path.join(folder, name),
                             posixpath.join(self._staging_root, relative, name))
        shutil.rmtree(folder, ignore_errors=True)

    # -------------------------------------------------------------- commit

    def publish(self, manifest):
        """Write the manifest last and make the run visible, atomically for readers."""
        text = json.dumps(manifest, indent=2, sort_keys=True)
        if not self.local:
            manifest = dict(manifest, prefix=self.prefix)
            fs, root = filesystem(self.path, self.options)
            with fs.open(posixpath.join(root, MANIFEST), "w") as handle:
                handle.write(json.dumps(manifest, indent=2, sort_keys=True))
            logger.info("published %s/%s -> %s", self.path, MANIFEST, self.prefix)
            return self.path
        self.write_text(MANIFEST, text)
        target = _strip(self.path)
        previous = None
        if os.path.exists(target):
            parent, name = os.path.split(target)
            previous = os.path.join(parent, f".{name}.previous-{self.run_id}")
            os.replace(target, previous)
        os.replace(self._staging_root, target)
        if previous:
            shutil.rmtree(previous, ignore_errors=True)
        return target

    def discard(self):
        """Remove what this run staged (never anything else)."""
        try:
            if self.local:
                shutil.rmtree(self._staging_root, ignore_errors=True)
            elif self.fs.exists(self._staging_root):
                self.fs.rm(self._staging_root, recursive=True)
        except OSError as exc:  # best effort: an unpublished prefix is invisible anyway
            logger.warning("could not remove the staging location %s: %s", self.staging, exc)
