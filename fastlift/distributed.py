"""Running tasks on a Dask cluster (``pip install fastlift[dask]``): the executor under
``fastlift.scan.scan(..., client=...)``. Only this module imports Dask; a single-process scan
never loads it.

It knows nothing of scans. `run_tasks` runs ``func(shared, item, report)`` for every item on the
cluster's workers: ``shared`` (a scan's model, options and parameters) is sent to each worker
once (``Client.scatter(broadcast=True)``) and each task carries only its item (a shard and the
windows it reads); what a task passes to ``report`` arrives at the client's ``on_report`` (a
progress bar over all workers, fed by Dask events); the first task that raises cancels the
others and its exception is raised here as the task raised it (a task whose workers kept dying
as `WorkerDied`). `worker_session` keeps what a task builds (an `Explainer`) on its worker
thread for the next tasks of the same run.

Dask rather than a scheduler of our own: it already places tasks on free workers, steals work
from slow ones, restarts a dead worker and reruns its tasks, and runs the same way on one
machine (`local_client`), on a cluster (``Client(address)``) and on GPUs
(``dask_cuda.LocalCUDACluster``, one worker per GPU).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Sequence

from distributed import Client, KilledWorker, LocalCluster, as_completed, get_worker


class WorkerDied(RuntimeError):
    """Every worker that ran task ``index`` died while running it (Dask gave up retrying)."""

    def __init__(self, index: int, detail: str):
        super().__init__(f"the workers running task {index} died each time ({detail})")
        self.index = index


def run_tasks(client: Client, func: Callable, shared, items: Sequence, *, on_report: Callable | None = None,
              name: str = "fastlift") -> list:
    """``[func(shared, item, report) for item in items]``, computed on the cluster's workers.

    Parameters
    ----------
    client : distributed.Client
    func : callable(shared, item, report)
        Importable on the workers (a module-level function).
    shared : object
        Sent once to every worker; each task receives it (not a copy per task).
    items : sequence
        One task each, submitted in order.
    on_report : callable(index, message), optional
        Called on the client (on its event thread) with the item's index and what the task
        passed to ``report(message)`` (msgpack-able: numbers, strings, lists).
    name : str
        Prefix of the task keys (as the dashboard shows them).

    Returns
    -------
    list
        The tasks' results, in the order of ``items``.
    """
    topic = f"{name}-{uuid.uuid4().hex}"
    if on_report is not None:
        client.subscribe_topic(topic, lambda event: on_report(*event[1]))
    try:
        if not items:
            return []
        data = client.scatter(shared, broadcast=True, hash=False)
        futures = {client.submit(_run, func, data, item, index, topic if on_report else None, pure=False,
                                 key=f"{name}-{index}-{uuid.uuid4().hex[:8]}"): index
                   for index, item in enumerate(items)}
        results: list = [None] * len(items)
        try:
            for future in as_completed(list(futures), loop=client.loop):
                index = futures[future]
                if future.status == "error":
                    error = future.exception()
                    if isinstance(error, KilledWorker):
                        raise WorkerDied(index, str(error)) from None
                    raise error.with_traceback(None)
                results[index] = future.result()
        except BaseException:
            # a failed task, or the client interrupted (Ctrl-C): the tasks not yet started must not
            # run on (on a shared cluster they would go on writing shard files)
            client.cancel(list(futures))
            raise
        return results
    finally:
        if on_report is not None:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(topic)


def _run(func, shared, item, index, topic):
    report = _reporter(topic, index) if topic else (lambda message: None)
    return func(shared, item, report)


def _reporter(topic, index):
    """``report(message)`` of a task: a Dask event the client receives; callable from any thread
    of the task (`Worker.log_event` hands it to the worker's event loop)."""
    try:
        worker = get_worker()
    except ValueError:  # not on a worker (a synchronous scheduler): nothing listens
        return lambda message: None
    return lambda message: worker.log_event(topic, [index, message])


_local = threading.local()
_built = {"sessions": 0}   # what `worker_session` built in this process


def worker_session(key: str, build: Callable):
    """This worker thread's object for ``key``: ``build()`` by its first task of that key, kept
    for the others (so an engine is not shared between threads); the previous key's object is
    closed when another key comes."""
    held = getattr(_local, "held", None)
    if held is None or held[0] != key:
        _local.held = None
        if held is not None and hasattr(held[1], "close"):
            held[1].close()
        _local.held = (key, build())
        _built["sessions"] += 1
    return _local.held[1]


def sessions_built() -> int:
    """How many objects `worker_session` built in this process (one per worker thread and run)."""
    return _built["sessions"]


@contextlib.contextmanager
def local_client(n_workers: int | None = None, *, scheduler: str | None = None):
    """A `distributed.Client`: on the running cluster at ``scheduler``, or on a new local cluster of
    ``n_workers`` worker processes that each run one task at a time (their engines use the
    threads the task asks for). Closed, with its local cluster, at the end of the block."""
    if scheduler is not None:
        with Client(scheduler, set_as_default=False) as client:
            yield client
        return
    with warnings.catch_warnings():
        # the scheduler's HTTP endpoint takes another port when 8787 is taken (another cluster): no news
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.CRITICAL)
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


def default_threads(n_workers: int) -> int:
    """Engine threads of each of ``n_workers`` local workers: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(n_workers, 1))
