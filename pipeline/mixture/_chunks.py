"""Row-chunked data for the EM engine: numpy in-process, or dask on the current scheduler.

Every pass over the data goes through :meth:`ChunkedData.reduce`: a pure kernel runs on
each chunk, and the partial results are merged by a tree of ``combine`` calls in chunk
order (dask's chunk / combine / aggregate idiom), so the result never depends on which
worker finished first, nor on how many workers there are.

Persisted chunks are passed over with one task per worker thread, pinned (loosely) to
the worker that holds them: it runs the kernel on each of its chunks in turn and merges
the groups of the tree's first level it holds whole; the client merges the rest. Dask's
cost per task is milliseconds, a sizeable share of an iteration on a million rows with
a cheap covariance type (measured, see benchmarks/RESULTS.md), and one task per worker
never leaves a queued task for work stealing to move, with its chunk, to the other
worker. Data streamed from the source each pass (not persisted) goes through a dask
graph of one task per chunk instead.

Sample weights, when given, are a second chunked array beside X with the same row
chunks: every per-chunk kernel then gets its chunk's weights as ``sample_weight=``
(and no such keyword without weights, so the unweighted kernels run as before).
"""

import logging
import operator
import uuid

import numpy as np

logger = logging.getLogger("pipeline.mixture")
# records without a message that move a progress display on (see flows/progress.py)
PROGRESS = logging.getLogger("pipeline.progress")

# Rows per chunk when the input is a numpy array.
NUMPY_CHUNK_ROWS = 2**16
# Chunks merged per combine task.
DEFAULT_SPLIT_EVERY = 8
# Persist when the data take at most this share of the cluster's memory.
PERSIST_MEMORY_FRACTION = 0.5


def is_dask_collection(X):
    return hasattr(X, "__dask_graph__") and callable(X.__dask_graph__)


def _distributed_client():
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return get_client()
    except ValueError:
        return None


def cluster_memory_bytes():
    """Total memory limit of the workers of the current client, or of this machine."""
    client = _distributed_client()
    if client is not None:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        limits = {}
        for address, w in workers.items():
            # workers that are threads of one process (inproc://host/pid/n) each watch
            # that process's memory: its limit counts once
            process = address.rsplit("/", 1)[0] if address.startswith("inproc://") else address
            limits[process] = max(limits.get(process, 0), w.get("memory_limit") or 0)
        if limits and all(limits.values()):
            return float(sum(limits.values()))
    import psutil

    return float(psutil.virtual_memory().available)


def should_persist(nbytes, persist="auto", memory=None):
    """Keep data of ``nbytes`` in the workers' memory? ``persist`` True/False decides;
    'auto': when they take at most ``PERSIST_MEMORY_FRACTION`` of it (``memory``, asked of
    the cluster when not given)."""
    if persist in (True, False):
        return persist
    memory = cluster_memory_bytes() if memory is None else memory
    return float(nbytes) <= PERSIST_MEMORY_FRACTION * memory


class ChunkedData:
    """Row-chunked 2-D float data with a fixed chunk order.

    Parameters
    ----------
    X : ndarray or dask.array.Array of shape (n_samples, n_features)
        Already validated and of the compute dtype.
    persist : {'auto', True, False}
        Dask only: keep the chunks in worker memory between passes. 'auto' persists
        when the data take at most half of the workers' memory.
    split_every : int
        Number of partial results merged per combine task.
    """

    def __init__(self, X, *, sample_weight=None, persist="auto", split_every=None):
        self.split_every = int(split_every or DEFAULT_SPLIT_EVERY)
        self.n_passes = 0
        self.is_dask = is_dask_collection(X)
        self.dtype = X.dtype
        self.n_samples, self.n_features = (int(s) for s in X.shape)
        self.weighted = sample_weight is not None
        self._weight_blocks = self._weight_futures = None
        if self.is_dask:
            X = X.rechunk({1: -1})
            self.persisted = self._should_persist(X, persist)
            if self.weighted:
                import dask

                weight = sample_weight.rechunk((X.chunks[0],))
                # one persist: chunks that come from the same read are computed once
                X, weight = dask.persist(X, weight) if self.persisted else (X, weight)
                self._weight_blocks = list(weight.to_delayed(optimize_graph=True).ravel())
            elif self.persisted:
                X = X.persist()
            self.chunk_sizes = tuple(int(c) for c in X.chunks[0])
            self._blocks = list(X.to_delayed(optimize_graph=True).ravel())
            self._futures = _chunk_futures(X) if self.persisted else None
            if self.weighted and self._futures is not None:
                self._weight_futures = _chunk_futures(weight)
                if self._weight_futures is None:
                    self._futures = None
            self._threads = {}
            self._held_tasks = None
        else:
            self.persisted = True
            self._futures = None
            self.chunk_sizes = tuple(
                min(NUMPY_CHUNK_ROWS, self.n_samples - start)
                for start in range(0, self.n_samples, NUMPY_CHUNK_ROWS)
            ) or (0,)
            starts = np.cumsum((0,) + self.chunk_sizes[:-1])
            self._blocks = [X[start : start + size]
                            for start, size in zip(starts, self.chunk_sizes)]
            if self.weighted:
                self._weight_blocks = [sample_weight[start : start + size]
                                       for start, size in zip(starts, self.chunk_sizes)]
        self.offsets = np.concatenate([[0], np.cumsum(self.chunk_sizes)]).astype(np.int64)

    @property
    def n_chunks(self):
        return len(self.chunk_sizes)

    def _should_persist(self, X, persist):
        if persist in (True, False):
            return persist
        nbytes = float(X.nbytes)
        memory = cluster_memory_bytes()
        decision = should_persist(nbytes, memory=memory)
        logger.info(
            "data %.1f MiB, cluster memory %.1f MiB: %s",
            nbytes / 2**20,
            memory / 2**20,
            "persisting on the workers" if decision else "streaming from the source each pass",
        )
        return decision

    # --------------------------------------------------------------- passes

    def map(self, func, *args, with_index=False):
        """Apply ``func(block, [chunk_index,] *args[, sample_weight=weights])`` to every
        chunk, lazily for dask."""
        weights = self._weight_blocks or [None] * self.n_chunks
        if not self.is_dask:
            return [_call(func, block, i, args, with_index, weight)
                    for i, (block, weight) in enumerate(zip(self._blocks, weights))]
        import dask

        token = uuid.uuid4().hex[:12]
        shared = [dask.delayed(a, traverse=False, name=f"arg-{token}-{j}") for j, a in
                  enumerate(args)]
        name = f"{getattr(func, '__name__', 'chunk')}-{token}"
        call = dask.delayed(_call, pure=False)
        return [call(func, block, i, shared, with_index, weight, dask_key_name=(name, i))
                for i, (block, weight) in enumerate(zip(self._blocks, weights))]

    def _merge_here(self, parts, combine, keep=1):
        """Merge groups of ``split_every`` parts in chunk order, in this process, until
        ``keep`` or fewer remain."""
        while len(parts) > keep:
            parts = [combine(parts[i : i + self.split_every])
                     for i in range(0, len(parts), self.split_every)]
        return parts

    def _tree(self, parts, combine, keep=1):
        """Merge groups of ``split_every`` parts in chunk order until ``keep`` or fewer remain."""
        if not self.is_dask:
            return self._merge_here(parts, combine, keep)
        import dask

        token = uuid.uuid4().hex[:12]
        name = f"{getattr(combine, '__name__', 'combine')}-{token}"
        call = dask.delayed(combine, pure=False)
        level = 0
        while len(parts) > keep:
            parts = [call(parts[i : i + self.split_every], dask_key_name=(name, level, j))
                     for j, i in enumerate(range(0, len(parts), self.split_every))]
            level += 1
        return parts

    def compute(self, *lazy):
        if not self.is_dask:
            return lazy
        import dask

        return dask.compute(*lazy)

    def _groups(self):
        """The first level of the merge tree: chunk indices in groups of split_every."""
        return [list(range(start, min(start + self.split_every, self.n_chunks)))
                for start in range(0, self.n_chunks, self.split_every)]

    def _worker_threads(self, client, workers):
        """Threads of each worker (asked once, and again when a new worker appears)."""
        if not set(workers) <= set(self._threads):
            info = client.scheduler_info(n_workers=-1)["workers"]
            self._threads = {address: int(w.get("nthreads") or 1)
                             for address, w in info.items()}
        return self._threads

    def _per_worker(self, func, args, with_index, combine):
        """One pass over persisted chunks with one task per worker thread (see the module
        docstring), each over a contiguous run of the chunks its worker holds.

        Returns {chunk index: result} and, when ``combine`` is given, {("group", g):
        combined result} for the first-level groups a task held whole.
        """
        futures = self._futures
        client = futures[0].client
        who_has = client.who_has(futures)
        holders = {}
        for i, future in enumerate(futures):
            held_by = sorted(who_has.get(future.key, ()))
            # a chunk not in memory (still being computed, or its worker died and dask
            # recomputes it) goes alone, wherever dask chooses
            holders.setdefault(held_by[0] if held_by else ("anywhere", i), []).append(i)
        threads = self._worker_threads(
            client, [w for w in holders if not isinstance(w, tuple)])
        groups = self._groups()
        token = uuid.uuid4().hex[:12]
        name = getattr(func, "__name__", "chunk")
        tasks = []
        for worker, held in holders.items():
            n_tasks = 1 if isinstance(worker, tuple) else min(len(held), threads.get(worker, 1))
            parts = []
            for part in np.array_split(np.asarray(held), n_tasks):
                indices = [int(i) for i in part]
                mine = set(indices)
                whole = [] if combine is None else [
                    (g, members) for g, members in enumerate(groups)
                    if members[0] in mine and mine.issuperset(members)]
                weights = [] if self._weight_futures is None else [
                    self._weight_futures[i] for i in indices]
                parts.append((indices, whole, [futures[i] for i in indices] + weights))
            # one message per worker: the client sends its first message at once and holds
            # the next ones for up to 10 ms (distributed's BatchedSend), which a task per
            # thread submitted one by one paid on every pass. Every argument positional:
            # Client.map makes a keyword argument over 100 kB (a grid's models) one task
            # named after the keyword, the same key on every pass.
            n = len(parts)
            tasks += client.map(
                _run_chunks, [func] * n, [args] * n, [with_index] * n, [combine] * n,
                *zip(*parts), pure=False,
                key=[f"{name}-per-worker-{token}-{len(tasks) + j}" for j in range(n)],
                **({} if isinstance(worker, tuple) else
                   {"workers": [worker], "allow_other_workers": True}))
        # the last pass's tasks are released only now that this pass's have gone out: a
        # release sent just before would hold them back the same 10 ms
        self._held_tasks = None
        results = {}
        for part in client.gather(tasks):
            results.update(part)
        self._held_tasks = tasks
        return results

    def _passed(self):
        """Count a pass, and tell a progress display (a record without a message)."""
        self.n_passes += 1
        PROGRESS.debug("", extra={"progress": {"advance": 1}})

    def reduce(self, func, combine, *args, with_index=False):
        """One pass over the data: ``func`` per chunk, merged by ``combine`` in chunk order.

        Persisted dask data: see :meth:`_per_worker`. Otherwise, on dask, the levels of
        the merge tree run on the workers until at most ``split_every`` partial results
        are left; those come back to the client (each the size of one chunk's result) and
        the last merge runs here. It is the same tree as on numpy input, so the result is
        the same, and it saves a scheduling round trip per pass.
        """
        self._passed()
        if self._futures is not None:
            results = self._per_worker(func, args, with_index, combine)
            parts = [results[("group", g)] if ("group", g) in results
                     else combine([results[i] for i in members])
                     for g, members in enumerate(self._groups())]
            return self._merge_here(parts, combine)[0]  # the rest of the same tree
        parts = self.map(func, *args, with_index=with_index)
        parts = self._tree(parts, combine, keep=self.split_every if self.is_dask else 1)
        if self.is_dask:
            parts = list(self.compute(*parts))
        return combine(parts) if len(parts) > 1 else parts[0]

    def merge(self, parts, combine):
        """Per-chunk results computed elsewhere (one per chunk, in chunk order) merged by
        the same tree as :meth:`reduce`'s, so that they equal its result bit for bit."""
        parts = list(parts)
        if len(parts) != self.n_chunks:
            raise ValueError(f"{len(parts)} partial results for {self.n_chunks} chunks")
        return self._merge_here(parts, combine)[0]

    def reduce_keeping(self, func, combine, *args):
        """One pass like :meth:`reduce` (the same merge tree) where ``func(block, *args)``
        returns ``(result, kept)``: returns ``(merged results, [one future per chunk of
        its kept part])``, the kept parts staying in the memory of the worker that holds
        the chunk. None (no pass) unless the chunks are persisted on a distributed
        cluster, or with sample weights."""
        if self._futures is None or self.weighted:
            return None
        self._passed()
        client = self._futures[0].client
        token = uuid.uuid4().hex[:12]
        name = getattr(func, "__name__", "chunk")
        both = [client.submit(func, future, *args, key=f"{name}-{token}-{i}", pure=False)
                for i, future in enumerate(self._futures)]
        results = [client.submit(operator.itemgetter(0), b, key=f"{name}-result-{token}-{i}")
                   for i, b in enumerate(both)]
        kept = [client.submit(operator.itemgetter(1), b, key=f"{name}-kept-{token}-{i}")
                for i, b in enumerate(both)]
        results = client.gather(results)
        del both  # the kept parts stay, referenced by ``kept``
        parts = [combine([results[i] for i in members]) for members in self._groups()]
        return self._merge_here(parts, combine)[0], kept

    def gather(self, func, *args, with_index=True):
        """One pass returning the list of per-chunk results (which must be small)."""
        self._passed()
        if self._futures is not None:
            results = self._per_worker(func, args, with_index, None)
            return [results[i] for i in range(self.n_chunks)]
        return list(self.compute(*self.map(func, *args, with_index=with_index)))

    def take(self, indices):
        """Rows at the given global indices, in that order (reads only their chunks)."""
        return self._take(self._blocks, indices, (self.n_features,))

    def take_weights(self, indices):
        """The sample weights at the given global indices, in that order."""
        return self._take(self._weight_blocks, indices, ())

    def _take(self, blocks, indices, trailing):
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.empty((0, *trailing), dtype=np.float64)
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        chunk_of = np.searchsorted(self.offsets, sorted_idx, side="right") - 1
        pieces = []
        for chunk in np.unique(chunk_of):
            local = sorted_idx[chunk_of == chunk] - self.offsets[chunk]
            pieces.append(_take_rows(blocks[chunk], local) if not self.is_dask else
                          _delayed_take(blocks[chunk], local))
        rows = np.concatenate(self.compute(*pieces), axis=0).astype(np.float64)
        out = np.empty_like(rows)
        out[order] = rows
        return out


def _chunk_futures(X):
    """The futures of a persisted dask array's chunks in chunk order, or None (persisted
    without a distributed client, or some chunk not a future)."""
    try:
        from distributed import futures_of
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    from dask.core import flatten

    by_key = {future.key: future for future in futures_of(X)}
    keys = list(flatten(X.__dask_keys__()))
    futures = [by_key.get(key) for key in keys]
    if not futures or any(f is None for f in futures):
        return None
    return futures


def _call(func, block, index, args, with_index, weight):
    """One kernel call on one chunk (``sample_weight=`` only when there are weights)."""
    leading = (block, index) if with_index else (block,)
    if weight is None:
        return func(*leading, *args)
    return func(*leading, *args, sample_weight=weight)


def _run_chunks(func, args, with_index, combine, indices, whole_groups, blocks):
    """On a worker: ``func`` on each of its chunks in chunk order (``blocks``: the chunks,
    then their weights if any); the first-level groups of the merge tree it holds whole
    are merged here, exactly as the tree would."""
    weights = blocks[len(indices):] or [None] * len(indices)
    results = {}
    for i, block, weight in zip(indices, blocks, weights):
        results[i] = _call(func, block, i, args, with_index, weight)
    for g, members in whole_groups:
        results[("group", g)] = combine([results.pop(i) for i in members])
    return results


def _take_rows(block, local):
    return np.asarray(block[local])


def _delayed_take(block, local):
    import dask

    return dask.delayed(_take_rows, pure=True)(block, local)
