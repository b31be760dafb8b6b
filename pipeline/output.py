"""Where a run writes, and how it commits: nobody ever sees half a run.

Local folders: the run writes into ``.<name>.staging-<run id>`` next to the output, writes
``_SUCCESS.json`` there last, and commits in ONE atomic step: Linux's
``renameat2(RENAME_EXCHANGE)`` swaps the staging folder and the output (a plain
``rename`` when there is no output yet), then the previous output, now under the staging
name, is deleted. Whenever the process dies, ``<output>`` is the complete previous run or
the complete new one. Where the exchange is not available (another OS, a filesystem
without it), the previous output is moved aside to ``.<name>.previous-<run id>`` first;
the next run then finishes or rolls back that half-published state.

Every run holds the output's lock (:func:`locked`, ``.<name>.lock`` next to it, an
``flock`` that dies with its process) from the check to the commit, and starts by
repairing what an interrupted run left (:func:`repair`), saying so in the log.

Object stores (``s3://`` ...) have no atomic rename: the run writes under the run-specific
prefix ``<output>/runs/<run id>/`` and then publishes ``<output>/_SUCCESS.json``, which
names that prefix, last (a single PUT). Readers resolve the output through the manifest.
A failed run publishes no manifest, so the previous one stays in force; a publish removes
the prefixes of runs older than the previous one (killed runs' included).
"""

import contextlib
import ctypes
import datetime as dt
import errno
import json
import logging
import os
import posixpath
import shutil
import signal
import socket
import tempfile

from pipeline.storage import Location, filesystem, is_local
from pipeline.storage import strip_file_scheme as _strip

logger = logging.getLogger("pipeline.output")

MANIFEST = "_SUCCESS.json"


class OutputExistsError(RuntimeError):
    """The output location already holds a run and the config's mode forbids replacing it."""


def _test_kill_point(name):
    """Tests stop a real run here, deterministically, by naming the point in
    ``MIXLAKE_TEST_KILL_AT``: the process SIGKILLs itself, as a crash would."""
    if os.environ.get("MIXLAKE_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ atomic exchange

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a, b):
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux renameat2).

    Raises NotImplementedError where the system or the filesystem cannot do it.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise NotImplementedError("renameat2 is not available") from None
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                 _RENAME_EXCHANGE) == 0:
        return
    code = ctypes.get_errno()
    # EINVAL: a filesystem that does not know the flag
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        raise NotImplementedError(os.strerror(code))
    raise OSError(code, os.strerror(code), a)


def _siblings(output_path, kind):
    """Hidden ``.<name>.<kind>-<id>`` folders next to a local output: {id: path}."""
    parent, name = os.path.split(_strip(output_path).rstrip("/"))
    prefix = f".{name}.{kind}-"
    try:
        entries = os.listdir(parent or ".")
    except FileNotFoundError:
        return {}
    return {entry[len(prefix):]: os.path.join(parent, entry)
            for entry in sorted(entries) if entry.startswith(prefix)}


def repair(output_path):
    """Finish or roll back what an interrupted run left next to a local output.

    Called under the output's lock, so no other run is writing: every staging folder is
    an interrupted run's (unpublished, or the previous output after an exchange whose
    clean-up did not happen) and goes; a ``.previous-`` folder is put back when the
    output is missing (the run died between its two renames) and deleted otherwise.
    Checkpoints (``.work-``) stay: they are how a killed fit resumes.

    Returns
    -------
    list of str
        What was done, one sentence each (also logged).
    """
    done = []
    target = _strip(output_path).rstrip("/")
    for run_id, previous in _siblings(target, "previous").items():
        if os.path.exists(target):
            shutil.rmtree(previous, ignore_errors=True)
            done.append(f"removed {previous}, the previous output of the interrupted run "
                        f"{run_id}, whose new output was already in place")
        else:
            os.replace(previous, target)
            done.append(f"rolled back the interrupted run {run_id}: restored the previous "
                        f"output from {previous}")
    for run_id, staging in _siblings(target, "staging").items():
        shutil.rmtree(staging, ignore_errors=True)
        done.append(f"removed {staging}, left by the interrupted run {run_id}")
    for sentence in done:
        logger.warning("%s", sentence)
    return done


# ------------------------------------------------------------------ the output's lock


def _lock_path(output_path):
    parent, name = os.path.split(_strip(output_path).rstrip("/"))
    return os.path.join(parent, f".{name}.lock")


@contextlib.contextmanager
def locked(output_path, run_id):
    """Hold the output's lock for the length of a run (local outputs; a no-op on object
    stores, which offer no lock: one scheduled job per output there).

    A second run on the same output is refused at once, naming the running one. The lock
    is an ``flock``: the kernel drops it when its process dies, so a killed run never
    leaves it stuck; the next run takes it over and says so. The lock file is removed at
    the end, so a run leaves nothing behind.
    """
    if not is_local(output_path):
        yield
        return
    import fcntl

    path = _lock_path(output_path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputExistsError(
                f"output.path: {output_path!r} is being written by run "
                f"{holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, started {holder.get('started', '?')}); wait "
                "for it to finish, or write this run somewhere else") from None
        # the file may have been removed by the run that held it: lock the one in place
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        stale = _read_holder(fd)
        if stale:
            logger.warning("took over the lock of run %s (pid %s on %s), which is no longer "
                           "running", stale.get("run_id"), stale.get("pid"), stale.get("host"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run_id": run_id, "pid": os.getpid(),
                                  "host": socket.gethostname(),
                                  "started": dt.datetime.now(dt.UTC).isoformat()}).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _read_holder(fd):
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        return {}


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


def real_path(path):
    """A path with symlinks, ``..`` and relative parts resolved (local), or the URL as
    written without its trailing slash (object stores, where nothing links)."""
    if not is_local(path):
        return path.rstrip("/")
    path = _strip(path)
    wildcard = min((path.find(ch) for ch in "*?[" if ch in path), default=-1)
    if wildcard >= 0:  # a glob: the folder its matches live in
        path = path[:wildcard].rpartition("/")[0] or "/"
    return os.path.realpath(path)


def _overlap(a, b):
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _refuse_overlaps(config, job):
    """The output, its checkpoint and lock, and the model a score run reads must not
    overlap the input, nor the output the model, compared on resolved paths."""
    from pipeline.checkpoint import working_location

    src = config.source.path
    out = config.output.path.rstrip("/")
    work = working_location(config.output, config.config_hash())
    for key, path in (("output.path", out), ("output.path (its checkpoint)", work)):
        if _overlap(real_path(path), real_path(src)):
            raise OutputExistsError(f"{key}: {out!r} overlaps the input {src!r}; write the "
                                    "results somewhere outside the input")
    if job == "score" and config.score is not None and _overlap(real_path(out),
                                             real_path(config.score.model_path)):
        raise OutputExistsError(f"output.path: {out!r} overlaps score.model_path "
                                f"{config.score.model_path!r}: publishing would replace the "
                                "model being applied; write the scores somewhere else")


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

    def check(self, config, job="fit"):
        """Refuse bad locations before any work. Returns 'run' or 'skip'."""
        out = self.path
        _refuse_overlaps(config, job)
        if self.local:
            self._probe_writable()
        manifest = read_manifest(out, self.options)
        if self.local:
            root = _strip(out)
            exists = os.path.exists(root) and (not os.path.isdir(root) or bool(os.listdir(root)))
        else:
            exists = manifest is not None
        mode = config.output.mode_for(job)
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

    def published(self):
        """The Location of the output's last completed run (through the manifest on object
        stores), or None when there is none."""
        if read_manifest(self.path, self.options) is None:
            return None
        return Location(resolve(self.path, self.options), self.options)

    def carry(self, relatives, published):
        """Put unchanged files of the published run into this run's staging: hard links
        on a local disk (nothing copied, modification times kept), server-side copies on
        an object store."""
        for relative in relatives:
            source, destination = published.path(relative), self.location.path(relative)
            self.fs.makedirs(posixpath.dirname(destination), exist_ok=True)
            if self.local:
                try:
                    os.link(source, destination)
                    continue
                except OSError:  # another filesystem, or no hard links there
                    pass
            self.fs.copy(source, destination)

    def upload(self, folder, relative):
        if self.local:
            return
        for name in sorted(os.listdir(folder)):
            self.fs.put_file(os.path.join(folder, name),
                             posixpath.join(self._staging_root, relative, name))
        shutil.rmtree(folder, ignore_errors=True)

    # -------------------------------------------------------------- commit

    def publish(self, manifest):
        """Write the manifest last and make the run visible in one atomic step."""
        if not self.local:
            return self._publish_object_store(manifest)
        self.write_text(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        _test_kill_point("publish:staged")
        target = _strip(self.path)
        if not os.path.exists(target):
            os.rename(self._staging_root, target)
            return target
        try:
            exchange(self._staging_root, target)
        except NotImplementedError:
            self._publish_in_two_renames(target)
            return target
        _test_kill_point("publish:exchanged")
        shutil.rmtree(self._staging_root, ignore_errors=True)  # the previous output now
        return target

    def _publish_in_two_renames(self, target):
        """Without an atomic exchange: the previous output aside, the new one in place.
        A run killed between the two is finished or rolled back by :func:`repair`."""
        parent, name = os.path.split(target)
        previous = os.path.join(parent, f".{name}.previous-{self.run_id}")
        os.replace(target, previous)
        _test_kill_point("publish:moved-aside")
        os.replace(self._staging_root, target)
        shutil.rmtree(previous, ignore_errors=True)

    def _publish_object_store(self, manifest):
        manifest = dict(manifest, prefix=self.prefix)
        fs, root = filesystem(self.path, self.options)
        previous = (read_manifest(self.path, self.options) or {}).get("prefix")
        _test_kill_point("publish:staged")
        with fs.open(posixpath.join(root, MANIFEST), "w") as handle:
            handle.write(json.dumps(manifest, indent=2, sort_keys=True))
        logger.info("published %s/%s -> %s", self.path, MANIFEST, self.prefix)
        # readers that resolved the previous manifest a moment ago may still read its
        # prefix: it stays until the next publish; older and never-published ones go
        keep = {self.prefix, previous}
        runs = posixpath.join(root, "runs")
        for entry in (fs.ls(runs, detail=False) if fs.exists(runs) else []):
            if f"runs/{posixpath.basename(entry.rstrip('/'))}" not in keep:
                fs.rm(entry, recursive=True)
        return self.path

    def discard(self):
        """Remove what this run staged (never anything else)."""
        try:
            if self.local:
                shutil.rmtree(self._staging_root, ignore_errors=True)
            elif self.fs.exists(self._staging_root):
                self.fs.rm(self._staging_root, recursive=True)
        except OSError as exc:  # best effort: an unpublished prefix is invisible anyway
            logger.warning("could not remove the staging location %s: %s", self.staging, exc)
