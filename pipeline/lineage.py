"""OpenLineage events of a run: START when it begins, COMPLETE or FAIL when it ends.

With a ``lineage:`` section in the config, :func:`pipeline.run.execute` wraps the run in
:func:`events`: the job is ``mixlake`` / the config's name, the run is the mixlake run
(its OpenLineage id a UUID derived from the run id, which the event also carries as a
tag), the inputs are the files read (a Parquet source) or the table at the version read
(a Delta source), the output is the assignments dataset. The datasets come from the
run's ``_SUCCESS.json`` manifest, so the events say what the manifest says.

Lineage is an observer: an event that cannot be sent is logged as a warning and the run
goes on. Without the section nothing is imported or sent.
"""

import contextlib
import datetime as dt
import logging
import os
import traceback
from urllib.parse import urlparse

from pipeline.storage import is_local, strip_file_scheme

logger = logging.getLogger("pipeline.lineage")

NAMESPACE = "mixlake"
PRODUCER = "https://pypi.org/project/mixlake/"


def _openlineage():
    try:
        from openlineage.client import OpenLineageClient
    except ImportError:
        raise ImportError("lineage: needs the openlineage-python package; install the "
                          "lineage extra: pip install 'mixlake[lineage]'") from None
    return OpenLineageClient


def client(lineage_config):
    """An OpenLineage client with the file or http transport of the config."""
    OpenLineageClient = _openlineage()
    if lineage_config.transport == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        os.makedirs(os.path.dirname(lineage_config.path) or ".", exist_ok=True)
        transport = FileTransport(FileConfig(log_file_path=lineage_config.path, append=True))
    else:
        from openlineage.client.transport.http import (
            ApiKeyTokenProvider,
            HttpConfig,
            HttpTransport,
        )

        options = {}
        if os.environ.get("OPENLINEAGE_API_KEY"):  # never in the config
            options["auth"] = ApiKeyTokenProvider({"apiKey": os.environ["OPENLINEAGE_API_KEY"]})
        transport = HttpTransport(HttpConfig(url=lineage_config.url,
                                             endpoint=lineage_config.endpoint,
                                             timeout=lineage_config.timeout, **options))
    return OpenLineageClient(transport=transport)


def dataset_id(url):
    """(namespace, name) of a file or folder, by OpenLineage's naming convention:
    ``file`` and the absolute path on a local disk, ``s3://bucket`` and the key on S3."""
    if is_local(url):
        return "file", os.path.abspath(strip_file_scheme(url))
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def openlineage_run_id(run_id):
    """The run's OpenLineage id: a UUIDv7 made from the run id (and its start time when
    the id carries one), the same for the START and the end of the run."""
    from openlineage.client.uuid import generate_static_uuid

    try:
        instant = dt.datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        instant = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return str(generate_static_uuid(instant, run_id.encode()))


class Events:
    """The events of one run; :meth:`complete` hands over the run's summary."""

    def __init__(self, config, job_name, run_id):
        self.config = config
        self.job_name = job_name
        self.run_id = run_id
        self.summary = None
        try:
            self.client = client(config.lineage)
        except (OSError, ValueError) as exc:  # lineage observes the run, it never fails it
            logger.warning("lineage: cannot send OpenLineage events to %s (%s); the run goes "
                           "on without them", config.lineage.path or config.lineage.url, exc)
            self.client = None

    def complete(self, summary):
        self.summary = summary

    # -------------------------------------------------------------- events

    def emit(self, state, error=None):
        if self.client is None:
            return
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

        event = RunEvent(
            eventType=getattr(RunState, state), producer=PRODUCER,
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=openlineage_run_id(self.run_id), facets=self._run_facets(error)),
            job=Job(namespace=NAMESPACE, name=self.config.name, facets=self._job_facets()),
            inputs=self._inputs(), outputs=self._outputs())
        try:
            self.client.emit(event)
        except Exception as exc:  # any transport failure: lineage never fails the run
            logger.warning("could not emit the OpenLineage %s event of run %s (%s: %s)",
                           state, self.run_id, type(exc).__name__, exc)

    def _run_facets(self, error):
        from openlineage.client.facet_v2 import error_message_run, processing_engine_run, tags_run

        from pipeline import __version__

        tags = {"mixlake.run_id": self.run_id, "mixlake.job": self.job_name,
                "mixlake.config_hash": self.config.config_hash()}
        manifest = self._manifest()
        if manifest.get("model_id"):
            tags["mixlake.model_id"] = manifest["model_id"]
        facets = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=__version__, name="mixlake", producer=PRODUCER),
            "tags": tags_run.TagsRunFacet(
                tags=[tags_run.TagsRunFacetFields(key=k, value=str(v), source="MIXLAKE")
                      for k, v in tags.items()], producer=PRODUCER),
        }
        if error is not None:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=f"{type(error).__name__}: {error}", programmingLanguage="python",
                stackTrace="".join(traceback.format_exception(error)), producer=PRODUCER)
        return facets

    def _job_facets(self):
        from openlineage.client.facet_v2 import job_type_job

        return {"jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="MIXLAKE", jobType=self.job_name.upper(),
            producer=PRODUCER)}

    def _manifest(self):
        return (self.summary or {}).get("manifest") or {}

    def _inputs(self):
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.facet_v2 import (
            dataset_version_dataset,
            input_statistics_input_dataset,
        )

        manifest = self._manifest()
        read = manifest.get("inputs") or []
        if not read:
            return []
        statistics = input_statistics_input_dataset.InputStatisticsInputDatasetFacet
        table = manifest.get("source")
        if table:  # a Delta table: one dataset, at the version read
            namespace, name = dataset_id(table["path"])
            return [InputDataset(
                namespace=namespace, name=name,
                facets={"version": dataset_version_dataset.DatasetVersionDatasetFacet(
                    datasetVersion=str(table["version"]), producer=PRODUCER)},
                inputFacets={"inputStatistics": statistics(
                    rowCount=sum(f["rows"] for f in read), size=sum(f["size"] for f in read),
                    fileCount=len(read), producer=PRODUCER)})]
        datasets = []
        for f in read:
            namespace, name = dataset_id(f["path"])
            datasets.append(InputDataset(
                namespace=namespace, name=name,
                inputFacets={"inputStatistics": statistics(
                    rowCount=f["rows"], size=f["size"], fileCount=1, producer=PRODUCER)}))
        return datasets

    def _outputs(self):
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import (
            dataset_version_dataset,
            output_statistics_output_dataset,
        )

        manifest = self._manifest()
        if not manifest:
            return []
        namespace, name = dataset_id(f"{self.config.output.path.rstrip('/')}/assignments")
        facets = {}
        committed = manifest.get("delta")
        if committed:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(committed["version"]), producer=PRODUCER)
        written = committed["added"] if committed else manifest.get("outputs") or []
        return [OutputDataset(
            namespace=namespace, name=name, facets=facets,
            outputFacets={"outputStatistics":
                          output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                              rowCount=manifest.get("rows_out"), fileCount=len(written),
                              producer=PRODUCER)})]


@contextlib.contextmanager
def events(config, job_name, run_id):
    """START now, then COMPLETE (with the datasets of the summary given to
    ``complete``) or FAIL (with the error) when the block ends. Without a lineage section,
    a stand-in that does nothing."""
    if config.lineage is None:
        yield _NoEvents()
        return
    run = Events(config, job_name, run_id)
    run.emit("START")
    try:
        yield run
    except BaseException as exc:
        run.emit("FAIL", exc)
        raise
    run.emit("COMPLETE")


class _NoEvents:
    def complete(self, summary):
        pass
