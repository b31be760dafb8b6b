"""The input table's files and partitions, from the listing alone (no data file opened).

A table is a folder (or a glob, or one file) of Parquet files. Partition keys come from
folder names: Hive's ``key=value`` by default, or plain value folders named by
``source.partitioning: [key, ...]``. ``source.filter`` (the filters convention of pyarrow
and dask) is evaluated on the partition values of the listing, so files of pruned
partitions are never opened.
"""

import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import pyarrow as pa

from pipeline.storage import DataError, filesystem

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


@dataclass
class InputFile:
    """One Parquet file of the input: where it is, what the listing says of it, and the
    partition it belongs to."""

    url: str
    relative: str  # path under the table's root, "/"-separated
    size: int
    stamp: str  # modification time or ETag: together with size, what "changed" means
    partition: dict = field(default_factory=dict)  # key -> the folder's text


def _is_data_file(relative):
    """A Parquet file, and neither it nor a folder above it (under the root) is hidden or
    metadata (``_SUCCESS``, ``_metadata``, Spark's ``_temporary/``, ``.staging/``)."""
    parts = [part for part in relative.split("/") if part]
    return bool(parts) and parts[-1].endswith(PARQUET_SUFFIXES) and not any(
        part.startswith(("_", ".")) for part in parts)


def natural_key(path):
    """Sort key that puts part.2 before part.10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _stamp(info):
    value = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
    return str(value.timestamp() if hasattr(value, "timestamp") else value)


def list_files(path, storage_options=None):
    """The table's Parquet files, sorted naturally by their path under the root.

    Returns
    -------
    list of InputFile
        Without partitions (see :func:`with_partitions`).
    """
    fs, root = filesystem(path, storage_options)
    if any(ch in root for ch in "*?["):
        base = root[:min(root.find(ch) for ch in "*?[" if ch in root)].rpartition("/")[0]
        found = {name: info for name, info in fs.glob(root, detail=True).items()
                 if info.get("type") == "file"}
    elif fs.isdir(root):
        base = root.rstrip("/")
        found = fs.find(root, detail=True)
    elif fs.exists(root):
        base = posixpath.dirname(root.rstrip("/"))
        found = {root: fs.info(root)}
    else:
        raise DataError(f"source.path: {path!r} does not exist; check the path in the config")
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    files = []
    for name, info in found.items():
        relative = name[len(base):].lstrip("/") if name.startswith(base) else \
            posixpath.basename(name)
        if _is_data_file(relative):
            files.append(InputFile(url=prefix + name, relative=relative,
                                   size=int(info.get("size") or 0), stamp=_stamp(info)))
    if not files:
        raise DataError(f"source.path: no Parquet files match {path!r}")
    return sorted(files, key=lambda f: natural_key(f.relative))


def with_partitions(files, partitioning):
    """The partition of every file from its folders (in place); the keys, in order.

    Parameters
    ----------
    partitioning : 'hive', 'none' or list of str
    """
    if partitioning == "none":
        return []
    keys_seen = None
    for f in files:
        folders = f.relative.split("/")[:-1]
        if partitioning == "hive":
            pairs = [folder.split("=", 1) for folder in folders if "=" in folder]
            partition = {unquote(k): unquote(v) for k, v in pairs}
        else:
            if len(folders) < len(partitioning):
                raise DataError(
                    f"{f.url}: source.partitioning names {len(partitioning)} folder level(s) "
                    f"{partitioning}, but the file lies {len(folders)} level(s) below "
                    "source.path; fix the layout or source.partitioning")
            partition = {k: unquote(v) for k, v in zip(partitioning, folders)}
        empty = [k for k, v in partition.items() if v in ("", "__HIVE_DEFAULT_PARTITION__")]
        if empty:
            raise DataError(f"{f.url}: partition key {empty[0]!r} has no value; every "
                            "partition folder needs one (key=value)")
        if keys_seen is None:
            keys_seen, first = list(partition), f
        elif list(partition) != keys_seen:
            raise DataError(
                f"source.path: partition folders disagree: {first.url} has keys {keys_seen}, "
                f"{f.url} has {list(partition)}; every file must lie under the same "
                "partition keys, in the same order")
        f.partition = partition
    return keys_seen or []


def _typed(values):
    """A column of partition values: int64 when every value is an integer, else string
    (so that a filter compares days as text and hours as numbers, as pyarrow infers)."""
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        return pa.array([int(v) for v in values], pa.int64())
    return pa.array(values, pa.string())


def _expression(filter_dnf):
    import pyarrow.parquet as pq

    return pq.filters_to_expression(
        [[(k, "==" if op == "=" else op, tuple(v) if isinstance(v, list) else v)
          for k, op, v in group] for group in filter_dnf])


def select(files, keys, filter_dnf):
    """The files whose partition passes ``source.filter`` (all of them without one)."""
    if not filter_dnf:
        return list(files)
    named = sorted({k for group in filter_dnf for k, _, _ in group})
    unknown = [k for k in named if k not in keys]
    if unknown:
        raise DataError(f"source.filter: {unknown[0]!r} is not a partition key of the input "
                        f"(keys: {keys or 'none'}); a filter selects partitions by their "
                        "folder names")
    table = pa.table({k: _typed([f.partition[k] for f in files]) for k in keys})
    table = table.append_column("_file", pa.array(range(len(files)), pa.int64()))
    try:
        kept = set(table.filter(_expression(filter_dnf)).column("_file").to_pylist())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        types = {k: str(table.schema.field(k).type) for k in named}
        raise DataError(f"source.filter: cannot compare the partition keys {types} with the "
                        f"values given ({exc}); quote dates and text ('2026-11-01'), write "
                        "numbers bare") from None
    return [f for i, f in enumerate(files) if i in kept]
