"""Delta Lake tables through ``deltalake`` (delta-rs, no JVM): a Delta source read as the
data files of one version, and the assignments written as a Delta table, one commit per run.

Source (``source.format: delta``): the log at ``source.version`` (the latest if omitted)
lists the data files with sizes and partition values; they become ``InputFile``s like
any Parquet partition. Delta data files are never modified in place, so the ledger's
path, size and stamp identify them: files the log added since the last scored version
are new, files it removed (overwrite, delete, compaction) lose their assignments.

Output (``output.format: delta``): ``<output>/assignments``, partitioned like the input.
The workers write one data file per input file, named with the run id (never
overwritten); the client commits them in ONE transaction carrying ``mixlake.run_id`` and
``mixlake.model_id``: an ``overwrite`` for a full rescore (a fit, a new model, ``--full``;
the schema may change), else an ``append`` of the new files with ``remove`` actions for
the files of inputs that changed or vanished (new partitions appended, changed ones
replaced, file by file).

The commit protocol: the Delta log is the assignments' commit point; model, report,
ledger and ``_SUCCESS.json`` still go through :class:`pipeline.output.Target`, and the
manifest records the table version committed (time travel to it gives the run's labels).
On a local disk the published table is hard-linked into the run's staging folder, the
commit is made there, and the Target's atomic swap publishes table and manifest in one
step: a failed or killed run never touches the published table. On an object store the
table lives at ``<output>/assignments`` (outside ``runs/``); the run commits as its last
step before the manifest, and a run that fails after its commit, or is killed before its
manifest, is undone by a RESTORE to the published version (:func:`repair`).
"""

import json
import logging
import os
import posixpath
import re
import time
from urllib.parse import unquote

import pyarrow as pa

from pipeline.partitions import InputFile, natural_key
from pipeline.storage import DataError, Location, filesystem, is_local, strip_file_scheme

logger = logging.getLogger("pipeline.delta")

TABLE = "assignments"
RUN_ID = "mixlake.run_id"
MODEL_ID = "mixlake.model_id"
ROLLED_BACK = "mixlake.rolled_back"  # a RESTORE undoing unpublished runs
_RUN_FILE = re.compile(r"\.(\d{8}T\d{6}Z-[0-9a-f]{6})\.parquet$")


def _deltalake():
    try:
        import deltalake
        import deltalake.transaction  # noqa: F401
    except ImportError:
        raise ImportError("format: delta needs the deltalake package; install the delta "
                          "extra: pip install 'mixlake[delta]'") from None
    return deltalake


def table_options(url, storage_options=None):
    """delta-rs (object_store) options for the table at ``url``, from the fsspec options
    of the config: the endpoint (and plain http for it), the region, anonymous access.
    Credentials are never among them: delta-rs reads them from the environment."""
    if is_local(url):
        return None
    options = dict(storage_options or {})
    client = options.get("client_kwargs") or {}
    out = {}
    endpoint = (options.get("endpoint_url") or client.get("endpoint_url")
                or os.environ.get("AWS_ENDPOINT_URL"))
    if endpoint:
        out["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    region = client.get("region_name") or options.get("region_name")
    if region:
        out["AWS_REGION"] = region
    if options.get("anon"):
        out["AWS_SKIP_SIGNATURE"] = "true"
    return out


def _open(url, storage_options=None, key="source.path"):
    """The DeltaTable at ``url`` (latest version), or None when there is none."""
    deltalake = _deltalake()
    try:
        return deltalake.DeltaTable(strip_file_scheme(url),
                                    storage_options=table_options(url, storage_options))
    except deltalake.exceptions.TableNotFoundError:
        return None
    except (deltalake.exceptions.DeltaError, OSError) as exc:
        raise DataError(f"{key}: cannot read the Delta table at {url!r} ({exc}); check the "
                        "path and its storage options") from None


# ------------------------------------------------------------------ source


def list_table(source):
    """The data files of the Delta table ``source.path`` at ``source.version``.

    Returns
    -------
    files : list of partitions.InputFile
        Sorted by path; ``partition`` holds the log's values as text.
    keys : list of str
        The partition columns.
    version : int
        The version read.
    partition_types : dict
        Partition column -> Arrow type, from the table's schema.
    """
    table = _open(source.path, source.storage_options)
    if table is None:
        raise DataError(f"source.path: {source.path!r} is not a Delta table (no _delta_log "
                        "with commits there); check the path, or set source.format: parquet "
                        "for a folder of Parquet files")
    latest = table.version()
    if source.version is not None and source.version != latest:
        if source.version > latest:
            raise DataError(f"source.version: version {source.version} of the Delta table "
                            f"{source.path!r} does not exist (the latest is {latest}); "
                            f"choose one of 0..{latest}, or leave source.version out to "
                            "read the latest")
        try:
            table.load_as_version(source.version)
        except _deltalake().exceptions.DeltaError as exc:
            raise DataError(f"source.version: version {source.version} of the Delta table "
                            f"{source.path!r} can no longer be read ({exc}); its log or "
                            "files were cleaned up (log retention, VACUUM): choose a later "
                            f"version (the latest is {latest})") from None
    _refuse_unreadable(table, source.path)
    keys = list(table.metadata().partition_columns)
    schema = pa.schema(table.schema().to_arrow())
    actions = pa.table(table.get_add_actions(flatten=True))
    values = {k: actions.column(f"partition.{k}").cast(pa.string()).to_pylist() for k in keys}
    base = source.path.rstrip("/")
    files = []
    for i, (path, size, mtime) in enumerate(zip(
            actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist(),
            actions.column("modification_time").to_pylist())):
        relative = unquote(path)  # the log holds URIs relative to the table
        if "://" in relative or relative.startswith("/"):
            raise DataError(f"source.path: the Delta table {source.path!r} names a data file "
                            f"outside its folder ({relative}, a shallow clone?); read a deep "
                            "copy of the table")
        partition = {k: values[k][i] for k in keys}
        missing = [k for k, v in partition.items() if v is None]
        if missing:
            raise DataError(f"{base}/{relative}: partition column {missing[0]!r} is null; "
                            "mixlake needs a value for every partition key")
        files.append(InputFile(url=f"{base}/{relative}", relative=relative, size=int(size),
                               stamp=str(mtime), partition=partition))
    if not files:
        raise DataError(f"source.path: the Delta table {source.path!r} has no data files at "
                        f"version {table.version()}")
    return (sorted(files, key=lambda f: natural_key(f.relative)), keys, table.version(),
            {k: schema.field(k).type for k in keys})


def _refuse_unreadable(table, path):
    """Tables whose data files alone do not give their rows: column mapping renames the
    columns inside the files, deletion vectors mask rows without rewriting them."""
    mode = (table.metadata().configuration or {}).get("delta.columnMapping.mode", "none")
    if mode != "none":
        raise DataError(f"source.path: the Delta table {path!r} uses column mapping (mode "
                        f"{mode}), which mixlake does not read; read a copy without it")
    if "deletionVectors" in (table.protocol().reader_features or []):
        if pa.table(table.deletion_vectors().read_all()).num_rows:
            raise DataError(f"source.path: the Delta table {path!r} has deletion vectors "
                            "(rows deleted without rewriting their files), which mixlake "
                            "does not read; purge them first (REORG TABLE ... APPLY (PURGE))")


# ------------------------------------------------------------------ output


def output_url(output_config):
    return f"{output_config.path.rstrip('/')}/{TABLE}"


def check_ledger(output_config, entries):
    """The ledger's entries when the published table holds exactly the files they name;
    [] (rescore everything) when the table was changed outside mixlake."""
    if not entries:
        return entries
    table = _open(output_url(output_config), output_config.storage_options, "output.path")
    files = set(_current_actions(table)) if table is not None else None
    recorded = {e["output"][len(TABLE) + 1:] for e in entries}
    if files != recorded:
        logger.warning("the Delta table %s does not hold the files the ledger records (it "
                       "was changed outside mixlake: OPTIMIZE, a manual write?); rescoring "
                       "everything", output_url(output_config))
        return []
    return entries


def check_partitioning(output_config, keys):
    """The published assignments table (None if there is none), refused when it is
    partitioned by other keys than the run's input: delta-rs cannot repartition a table
    in a commit."""
    published = _open(output_url(output_config), output_config.storage_options,
                      "output.path")
    if published is not None:
        columns = list(published.metadata().partition_columns)
        if columns != list(keys):
            raise DataError(f"output.path: the Delta table {output_url(output_config)!r} is "
                            f"partitioned by {columns}, this run's input by {list(keys)}; "
                            "write to another output.path, or remove the table to start anew")
    return published


class OutputTable:
    """The assignments table of one run's output: where its data files go, its commit.

    Parameters
    ----------
    output_config : pipeline.config.Output
    target : pipeline.output.Target
        The run's target: on a local disk the table is committed inside its staging.
    """

    def __init__(self, output_config, target):
        self.config = output_config
        self.target = target
        self.run_id = target.run_id
        self.local = target.local
        # the folder whose assignments/ the workers write into
        self.root = target.location if self.local else Location(target.path, target.options)
        self.url = self.root.join(TABLE).url
        self.previous_version = None

    def _open(self):
        return _open(self.url, self.config.storage_options, "output.path")

    def prepare(self, keys):
        """Before any data file is written: refuse a published table partitioned by other
        keys; on a local disk, hard-link the published table into the staging folder."""
        published = check_partitioning(self.config, keys)
        if published is None:
            return
        self.previous_version = published.version()
        if self.local:
            fs, root = filesystem(output_url(self.config), self.config.storage_options)
            files = fs.find(root)
            self.target.carry([f"{TABLE}/{posixpath.relpath(f, root)}" for f in files],
                              Location(self.target.path, self.target.options))
            logger.info("carried the Delta table (version %d, %d files) into %s",
                        self.previous_version, len(files), self.target.staging)

    def parts(self, outputs):
        """The data file of each input file: its assignment file's name with the run id,
        so that no run ever overwrites a file an earlier version references."""
        return [f"{posixpath.splitext(out)[0]}.{self.run_id}.parquet" for out in outputs]

    def commit(self, written, inputs, parts, keys, partition_types, model_id, *,
               replaced=(), full):
        """Commit the written files (and remove those of ``replaced`` ledger entries) in
        one Delta transaction.

        Parameters
        ----------
        written : list of dict
            :func:`pipeline.assign.write_assignments`'s result per file.
        inputs : list of partitions.InputFile
        parts : list of str
            The data file of each, relative to the table.
        full : bool
            Overwrite the table (a full rescore) instead of appending.

        Returns
        -------
        dict
            The manifest's record: ``table`` (its URL), ``version``, ``previous_version``,
            ``mode``, ``added`` and ``removed`` (data files, relative to the output).
        """
        deltalake = _deltalake()
        from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

        table = self._open()
        schema = _table_schema(written, inputs, keys, partition_types, table)
        now = int(time.time() * 1000)
        actions = [AddAction(path=part, size=r["bytes"], modification_time=r["mtime"],
                             partition_values={k: f.partition[k] for k in keys},
                             data_change=True, stats=json.dumps(r["stats"]))
                   for r, f, part in zip(written, inputs, parts)]
        removed = [] if full or table is None else [e["output"] for e in replaced]
        if table is not None and not full:
            _refuse_other_schema(table, schema, self.url)
        if removed:
            current = _current_actions(table)
            for output in removed:
                path = output[len(TABLE) + 1:]
                if path not in current:
                    raise DataError(f"{self.url}: {path} is in the ledger but not in the "
                                    "table; rerun with --full to rewrite the table")
                size, partition = current[path]
                actions.append(RemoveAction(path=path, data_change=True, deletion_timestamp=now,
                                            size=size, partition_values=partition))
        properties = deltalake.CommitProperties(
            custom_metadata={RUN_ID: self.run_id, MODEL_ID: model_id})
        if table is None:
            create_table_with_add_actions(
                strip_file_scheme(self.url), deltalake.Schema.from_arrow(schema), actions,
                mode="error", partition_by=list(keys),
                storage_options=table_options(self.url, self.config.storage_options),
                commit_properties=properties)
        else:
            table.create_write_transaction(actions, mode="overwrite" if full else "append",
                                           schema=schema, partition_by=list(keys),
                                           commit_properties=properties)
        table = self._open()
        version = table.version()
        logger.info("committed version %d of the Delta table %s: %d file(s) added, %d "
                    "removed%s", version, output_url(self.config), len(parts), len(removed),
                    " (overwrite)" if full else "")
        return {"table": output_url(self.config), "version": version,
                "previous_version": self.previous_version,
                "mode": "overwrite" if full else "append",
                "added": sorted(f"{TABLE}/{p}" for p in parts), "removed": sorted(removed)}

    def discard(self):
        """After a failure: nothing to do on a local disk (the staging folder held the
        table); on an object store, roll back this run's commit if it made one and remove
        its data files."""
        if not self.local:
            repair(self.config, current_run=self.run_id)


def _table_schema(written, inputs, keys, partition_types, table):
    """The table's Arrow schema: the data files' (all alike) and the partition columns
    (the Delta source's types, or text for folder names)."""
    if not written:
        return pa.schema(table.schema().to_arrow())
    first = written[0]["schema"]
    for r, f in zip(written[1:], inputs[1:]):
        if not r["schema"].equals(first):
            column = next((n.name for n in r["schema"] if n not in first), "?")
            raise DataError(
                f"source.passthrough: column {column!r} has another type in {f.url} than in "
                f"{inputs[0].url}; a Delta table has one type per column: cast the input, "
                "or leave the column out of source.passthrough")
    types = partition_types or {}
    return pa.schema(list(first) + [pa.field(k, types.get(k, pa.string())) for k in keys])


def _refuse_other_schema(table, schema, url):
    """An append must not change the table's schema under the files it keeps."""
    current = pa.schema(table.schema().to_arrow())
    if [(f.name, str(f.type)) for f in current] != [(f.name, str(f.type)) for f in schema]:
        raise DataError(f"{url}: this run's columns {schema.names} (types "
                        f"{[str(t) for t in schema.types]}) differ from the Delta table's "
                        f"{current.names} ({[str(t) for t in current.types]}); rerun with "
                        "--full (output.mode: overwrite) to rewrite the table")


def _current_actions(table):
    """Path -> (size, partition values as text) of the table's current data files."""
    actions = pa.table(table.get_add_actions(flatten=True))
    keys = list(table.metadata().partition_columns)
    values = {k: actions.column(f"partition.{k}").cast(pa.string()).to_pylist() for k in keys}
    return {unquote(path): (int(size), {k: values[k][i] for k in keys})
            for i, (path, size) in enumerate(zip(actions.column("path").to_pylist(),
                                                 actions.column("size_bytes").to_pylist()))}


# ------------------------------------------------------------------ repair


def repair(output_config, current_run=None):
    """On an object store, bring the assignments table back to the version the published
    manifest names.

    A run commits to the table just before it publishes its manifest: one killed (or
    failing) in between leaves a version nobody published. It is undone with a RESTORE
    commit (or, when no run was ever published, the table it created is removed). Called
    at the start of every run (under the output's lock) and, with ``current_run``, when a
    run fails: then the data files it wrote but never committed are removed too. (Those
    of a run killed before its commit are referenced by no version and invisible to
    readers; ``DeltaTable.vacuum`` removes them, as it does for any writer.)

    Returns
    -------
    list of str
        What was done, one sentence each (also logged).
    """
    from pipeline.output import read_manifest

    if is_local(output_config.path):
        return []
    url = output_url(output_config)
    table = _open(url, output_config.storage_options, "output.path")
    manifest = read_manifest(output_config.path, output_config.storage_options) or {}
    recorded = (manifest.get("delta") or {}).get("version")
    unpublished = [] if table is None else _commits(
        url, output_config, 0 if recorded is None else recorded + 1, table.version())
    runs = sorted({c[RUN_ID] for c in unpublished if RUN_ID in c})
    done = []
    if any(RUN_ID not in c and ROLLED_BACK not in c for c in unpublished):
        logger.warning("the Delta table %s has commits after version %s that mixlake did not "
                       "make; left as they are", url, recorded)
    elif unpublished and recorded is None:
        fs, root = filesystem(url, output_config.storage_options)
        fs.rm(root, recursive=True)
        done.append(f"removed the Delta table {url}, created by run(s) {', '.join(runs)} "
                    "that never published")
    elif unpublished and _files(url, output_config, recorded) != set(_current_actions(table)):
        deltalake = _deltalake()
        table.restore(recorded, commit_properties=deltalake.CommitProperties(
            custom_metadata={ROLLED_BACK: ",".join(runs)}))
        done.append(f"restored the Delta table {url} to version {recorded} (the published "
                    f"one): run(s) {', '.join(runs)} committed to it but never published")
    if current_run is not None and current_run not in runs:
        done += _remove_uncommitted(output_config, current_run)
    for sentence in done:
        logger.warning("%s", sentence)
    return done


def _commits(url, output_config, first, last):
    """The commit info of versions ``first``..``last``, read from the log's JSON files
    (each with its ``version``)."""
    fs, root = filesystem(url, output_config.storage_options)
    infos = []
    for version in range(first, last + 1):
        with fs.open(f"{root}/_delta_log/{version:020d}.json", "r") as handle:
            for line in handle:
                action = json.loads(line)
                if "commitInfo" in action:
                    infos.append({**action["commitInfo"], "version": version})
                    break
            else:
                infos.append({"version": version})
    return infos


def _files(url, output_config, version):
    deltalake = _deltalake()
    table = deltalake.DeltaTable(strip_file_scheme(url), version=version,
                                 storage_options=table_options(url,
                                                               output_config.storage_options))
    return set(_current_actions(table))


def _remove_uncommitted(output_config, run_id):
    """The data files a failed run wrote into the table before committing them."""
    fs, root = filesystem(output_url(output_config), output_config.storage_options)
    if not fs.exists(root):
        return []
    files = [path for path in fs.find(root)
             if (match := _RUN_FILE.search(path)) and match.group(1) == run_id]
    if not files:
        return []
    fs.rm(files)
    return [f"removed the {len(files)} data file(s) run {run_id} wrote under "
            f"{output_url(output_config)} but never committed"]
