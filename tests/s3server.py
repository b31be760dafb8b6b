"""moto's S3 server for the object-storage tests (a helper module, not a conftest: the
sklearn_compat folder has a conftest of its own, and the name would be ambiguous)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_s3_server(timeout=60):
    """moto's S3 server as a process of its own on 127.0.0.1 (a real S3-protocol server,
    as MinIO would be); yields its endpoint, stops it afterwards.

    A process, not moto's ThreadedMotoServer: its start waits without a deadline for a
    thread that may never report ready, and its request threads would share this
    process's interpreter with the run under test. Here the start has a deadline and a
    failed start says why."""
    for attempt in range(3):
        port = _free_port()
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        endpoint = f"http://127.0.0.1:{port}"
        if _ready(process, endpoint, time.monotonic() + timeout):
            break
        _stop(process)
        log.seek(0)
        output = log.read().decode(errors="replace")
        log.close()
        if attempt == 2 or "in use" not in output:  # the port was taken meanwhile: retry
            raise RuntimeError(f"moto's S3 server did not start on port {port} within "
                               f"{timeout} s: {output[-2000:]}")
    try:
        yield endpoint
    finally:
        _stop(process)
        log.close()


def _ready(process, endpoint, deadline):
    # straight to loopback, whatever proxy the environment names
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with opener.open(f"{endpoint}/moto-api/data.json", timeout=5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
