"""OpenLineage events around a run: START and COMPLETE (with the datasets read and
written) or START and FAIL, through openlineage-python's file and http transports."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import write_deltalake

from pipeline import run
from pipeline.config import parse_config
from pipeline.storage import DataError

DAYS = ["2026-11-29", "2026-11-30"]


def _table(day, n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(2, size=n)
    X = rng.standard_normal((n, 2)) + np.array([[0, 0], [7, 7]])[labels]
    start = DAYS.index(day) * 10_000
    return pa.table({"id": np.arange(start, start + n), "x0": X[:, 0], "x1": X[:, 1],
                     "day": [day] * n})


@pytest.fixture
def lake(tmp_path):
    root = tmp_path / "lake"
    for i, day in enumerate(DAYS):
        ds.write_dataset(_table(day, seed=i), root, format="parquet", partitioning=["day"],
                         partitioning_flavor="hive", basename_template=f"part-{i}-{{i}}.parquet",
                         existing_data_behavior="overwrite_or_ignore")
    return root


def _config(data, out, address, lineage, **sections):
    raw = {"name": "nightly-events",
           "source": {"path": str(data), "passthrough": ["id", "day"]},
           "model": {"n_components": 2, "random_state": 0},
           "cluster": {"address": address},
           "output": {"path": str(out)},
           "lineage": lineage}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _tags(event):
    return {t["key"]: t["value"] for t in event["run"]["facets"]["tags"]["tags"]}


def test_a_run_emits_start_and_complete_with_its_datasets(tmp_path, lake, cluster2):
    events_file = tmp_path / "lineage" / "events.jsonl"
    config = _config(lake, tmp_path / "out", cluster2.scheduler_address,
                     {"transport": "file", "path": str(events_file)})
    summary = run.execute(config, run.FIT)
    start, complete = _events(events_file)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    for event in (start, complete):
        assert event["job"]["namespace"] == "mixlake"
        assert event["job"]["name"] == "nightly-events"
        assert _tags(event)["mixlake.run_id"] == summary["run_id"]
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert uuid.UUID(start["run"]["runId"]).version == 7
    assert _tags(complete)["mixlake.model_id"] == summary["model_id"]
    # inputs: the files read, as _SUCCESS.json lists them; output: the assignments
    files = sorted(str(p) for p in lake.rglob("*.parquet"))
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [("file", f)
                                                                        for f in files]
    assert all(d["inputFacets"]["inputStatistics"]["rowCount"] == 300
               for d in complete["inputs"])
    (output,) = complete["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(tmp_path / "out" /
                                                                 "assignments"))
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 600
    assert start["inputs"] == [] and start["outputs"] == []


def test_a_delta_table_is_one_dataset_at_its_version(tmp_path, cluster2):
    table = tmp_path / "table"
    for i, day in enumerate(DAYS):
        write_deltalake(str(table), _table(day, seed=i), partition_by=["day"], mode="append")
    events_file = tmp_path / "events.jsonl"
    config = _config(table, tmp_path / "out", cluster2.scheduler_address,
                     {"transport": "file", "path": str(events_file)},
                     source={"format": "delta"}, output={"format": "delta"})
    run.execute(config, run.FIT)
    complete = _events(events_file)[-1]
    (table_read,) = complete["inputs"]
    assert (table_read["namespace"], table_read["name"]) == ("file", str(table))
    assert table_read["facets"]["version"]["datasetVersion"] == "1"
    assert table_read["inputFacets"]["inputStatistics"]["fileCount"] == 2
    (written,) = complete["outputs"]
    assert written["facets"]["version"]["datasetVersion"] == "0"
    statistics = written["outputFacets"]["outputStatistics"]
    assert (statistics["rowCount"], statistics["fileCount"]) == (600, 2)


def test_a_failing_run_emits_start_and_fail(tmp_path, lake):
    events_file = tmp_path / "events.jsonl"
    config = _config(lake, tmp_path / "out", None,
                     {"transport": "file", "path": str(events_file)},
                     source={"filter": [["day", ">=", "2027-01-01"]]})
    with pytest.raises(DataError, match="source.filter"):
        run.execute(config, run.FIT)
    start, fail = _events(events_file)
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert start["run"]["runId"] == fail["run"]["runId"]
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"].startswith("DataError: source.filter: selects none")
    assert error["programmingLanguage"] == "python" and "Traceback" in error["stackTrace"]
    assert not (tmp_path / "out").exists()


class _Collector(BaseHTTPRequestHandler):
    received = []

    def do_POST(self):  # noqa: N802  (the name http.server calls)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_http_transport_posts_the_events(tmp_path, lake):
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = _config(lake, tmp_path / "out", None,
                         {"transport": "http", "url": f"http://127.0.0.1:{server.server_port}"},
                         source={"filter": [["day", "=", 5]]})
        with pytest.raises(DataError):
            run.execute(config, run.FIT)
    finally:
        server.shutdown()
    assert [(path, event["eventType"]) for path, event in _Collector.received] == [
        ("/api/v1/lineage", "START"), ("/api/v1/lineage", "FAIL")]


def test_lineage_that_cannot_be_written_does_not_fail_the_run(tmp_path, lake, cluster2,
                                                              caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config = _config(lake, tmp_path / "out", cluster2.scheduler_address,
                     {"transport": "file", "path": str(blocker / "events.jsonl")})
    summary = run.execute(config, run.FIT)
    assert summary["n_rows"] == 600 and (tmp_path / "out" / "_SUCCESS.json").exists()
    assert "lineage: cannot send OpenLineage events" in caplog.text
