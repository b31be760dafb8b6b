"""Where files live: a location (fsspec filesystem + root, local or ``s3://``) and the one
place that turns a storage or Parquet error into a :class:`DataError` naming the file.

A run builds each of its locations once (the source, the output, the model) and passes
them along; a :class:`Location` is small and picklable, so tasks on the workers receive
it as an argument and open their files through it.
"""

import contextlib
import posixpath
from functools import cached_property

import pyarrow as pa


class DataError(ValueError):
    """The input data cannot be used; the message names the file, column or setting."""


def filesystem(path, storage_options=None):
    """(fsspec filesystem, path without protocol) for a local path or a URL."""
    import fsspec

    return fsspec.core.url_to_fs(path, **(storage_options or {}))


def is_local(path):
    return "://" not in str(path) or str(path).startswith("file://")


def strip_file_scheme(path):
    return path[len("file://"):] if path.startswith("file://") else path


class Location:
    """A folder or file on a filesystem: ``url`` as the config gives it, plus options.

    Parameters
    ----------
    url : str
        A local path or a URL (``s3://bucket/prefix``).
    storage_options : dict, optional
        fsspec options (never credentials: those come from the environment).
    """

    def __init__(self, url, storage_options=None):
        self.url = str(url).rstrip("/") or "/"
        self.options = dict(storage_options or {})

    def __repr__(self):
        return f"Location({self.url!r})"

    def __getstate__(self):  # the filesystem is rebuilt where the location is used
        return {"url": self.url, "options": self.options}

    def __setstate__(self, state):
        self.url, self.options = state["url"], state["options"]

    @cached_property
    def _fs_root(self):
        return filesystem(self.url, self.options)

    @property
    def fs(self):
        return self._fs_root[0]

    @property
    def root(self):
        """The path on :attr:`fs` (no protocol)."""
        return self._fs_root[1]

    @property
    def local(self):
        return is_local(self.url)

    def join(self, *parts):
        """The location of ``parts`` under this one."""
        return Location(posixpath.join(self.url, *parts), self.options)

    def path(self, *parts):
        """The filesystem path of ``parts`` under this location."""
        return posixpath.join(self.root, *parts) if parts else self.root

    def exists(self, *parts):
        return self.fs.exists(self.path(*parts))

    def open(self, relative, mode="rb"):
        """Open a file under this location (its folders are made when writing)."""
        path = self.path(relative)
        if "w" in mode:
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        return self.fs.open(path, mode)

    def read_text(self, relative):
        with self.open(relative, "r") as handle:
            return handle.read()

    def write_text(self, relative, text):
        with self.open(relative, "w") as handle:
            handle.write(text)

    def write_bytes(self, relative, data):
        with self.open(relative, "wb") as handle:
            handle.write(data)


def as_location(where, storage_options=None):
    return where if isinstance(where, Location) else Location(where, storage_options)


@contextlib.contextmanager
def reading(path):
    """Turn a storage or Parquet error while reading ``path`` into one DataError."""
    try:
        yield
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}); "
                        "replace or remove the file") from None


def release_arrow_memory():
    """Give Arrow's freed buffers back to the OS.

    Arrow's allocator keeps freed memory for reuse; on a worker streaming partitions that
    shows up as unmanaged memory growing until dask pauses the worker.
    """
    pa.default_memory_pool().release_unused()
