"""Contestants in their own processes, and the peak memory of a process.

Each contestant lives in a spawned process that keeps its data loaded between calls,
so that the suite can alternate contestants on the same data. The environment
(one BLAS thread) is inherited from the parent, which sets it before numpy loads.
Peak memory is the kernel's high-water mark of resident memory (``VmHWM``), reset
before each measured call by writing 5 to ``/proc/<pid>/clear_refs``.
"""

import multiprocessing
import os
import traceback


def _status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_bytes(pid):
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib * 1024


def rss_bytes(pid):
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib * 1024


def reset_peak(pid):
    """Start a new high-water mark of resident memory (Linux >= 4.0, same user or root)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _serve(conn, factory, args, kwargs):
    try:
        obj = factory(*args, **kwargs)
        conn.send(("ok", None))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        message = conn.recv()
        if message is None:
            break
        name, call_kwargs = message
        try:
            conn.send(("ok", getattr(obj, name)(**call_kwargs)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))
    close = getattr(obj, "close", None)
    if close is not None:
        close()
    conn.send(("ok", None))


class ContestantError(RuntimeError):
    pass


class Server:
    """``factory(*args, **kwargs)`` built in a spawned process; methods called by name."""

    def __init__(self, factory, *args, env=None, **kwargs):
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            self.process = context.Process(target=_serve, args=(child, factory, args, kwargs),
                                           daemon=False)
            self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self._receive()

    def _receive(self):
        status, value = self._conn.recv()
        if status != "ok":
            raise ContestantError(value)
        return value

    def send(self, name, **kwargs):
        self._conn.send((name, kwargs))

    def receive(self):
        return self._receive()

    def call(self, name, **kwargs):
        self.send(name, **kwargs)
        return self._receive()

    def close(self):
        if self.process.is_alive():
            try:
                self._conn.send(None)
                self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
            self.process.join(60)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)


def run_once(function, env=None, **kwargs):
    """``function(**kwargs)`` in a fresh spawned process (end-to-end runs)."""
    server = Server(_Once, function, env=env)
    try:
        return server.call("run", **kwargs)
    finally:
        server.close()


class _Once:
    def __init__(self, function):
        self.function = function

    def run(self, **kwargs):
        return self.function(**kwargs)
