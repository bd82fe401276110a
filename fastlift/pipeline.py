"""A three-stage pipeline: a reader thread and a writer thread around the caller's loop.

The caller's thread does the compute: it iterates a `Pipeline` to get the items a reader
thread produces (``produce``, an iterable), and hands each result to `Pipeline.put`, which a
writer thread passes to ``consume`` in order. Bounded queues (``depth`` items each) join the
stages, so the reader runs at most ``depth + 1`` items ahead and the writer at most
``depth + 1`` behind: memory stays that of a few items, and reading, computing and writing
overlap wherever each stage leaves the GIL (file reads and writes, ``fsync``, numpy, the
compiled kernels).

Errors are never lost nor left hanging:

* a reader error reaches the caller in order, after the items read before it, as the same
  exception object;
* a writer error stops the writer at once (nothing after the failed item is consumed) and is
  raised in the caller at its next `put`, or at the end of the block;
* when the caller's block fails, the writer still consumes the results already handed over
  (their work is done; a scan commits them), then both threads stop and the caller's error
  propagates.

The threads are daemons and named ``fastlift-<name>-reader`` / ``-writer``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

#: how often a blocked stage looks whether the other side has stopped (seconds)
_POLL = 0.05


class _Failed:
    """A reader's exception, queued in order behind the items read before it."""

    def __init__(self, error: BaseException):
        self.error = error


_END = object()


class Pipeline:
    """``with Pipeline(produce, consume) as pipe: for item in pipe: pipe.put(compute(item))``.

    Parameters
    ----------
    produce : iterable
        Iterated on the reader thread.
    consume : callable(result) -> None
        Called on the writer thread, once per `put`, in order.
    depth : int
        Items each queue holds.
    name : str
        Thread name part.
    """

    def __init__(self, produce: Iterable, consume: Callable, *, depth: int = 2, name: str = "pipeline"):
        if depth < 1:
            raise ValueError(f"depth must be at least 1; got {depth}")
        self._produce, self._consume = produce, consume
        self._read_q: queue.Queue = queue.Queue(depth)
        self._write_q: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()          # the caller is done: the reader stops
        self._writer_error: BaseException | None = None
        self._reader = threading.Thread(target=self._read, name=f"fastlift-{name}-reader", daemon=True)
        self._writer = threading.Thread(target=self._write, name=f"fastlift-{name}-writer", daemon=True)

    # ----------------------------------------------------------------- the caller's side
    def __enter__(self) -> Pipeline:
        self._reader.start()
        self._writer.start()
        return self

    def __iter__(self) -> Iterator:
        while True:
            item = self._get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def put(self, result) -> None:
        """Hand ``result`` to the writer (blocks while its queue is full); raises the writer's
        error if it has failed."""
        while True:
            self._raise_writer_error()
            try:
                self._write_q.put(result, timeout=_POLL)
                return
            except queue.Full:
                continue

    def __exit__(self, kind, error, tb) -> bool:
        self._stop.set()
        self._drain_reader()
        self._finish_writer()
        self._reader.join()
        if kind is None:
            self._raise_writer_error()
        return False

    # ----------------------------------------------------------------- internals
    def _get(self):
        while True:
            try:
                return self._read_q.get(timeout=_POLL)
            except queue.Empty:
                if not self._reader.is_alive() and self._read_q.empty():
                    return _END  # (the reader always queues _END or _Failed before it ends)
                self._raise_writer_error()

    def _raise_writer_error(self):
        if self._writer_error is not None:
            raise self._writer_error

    def _drain_reader(self):
        """Unblock a reader waiting on a full queue, so that it sees the stop and ends."""
        while self._reader.is_alive():
            try:
                self._read_q.get(timeout=_POLL)
            except queue.Empty:
                pass

    def _finish_writer(self):
        while self._writer.is_alive():
            try:
                self._write_q.put(_END, timeout=_POLL)
                break
            except queue.Full:
                continue  # a failed writer has ended: the loop condition sees it
        self._writer.join()

    def _read(self):
        try:
            for item in self._produce:
                if not self._offer(item):
                    return
            self._offer(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self._offer(_Failed(e))
        finally:
            close = getattr(self._produce, "close", None)  # a generator: run its cleanup here
            if close is not None:
                close()

    def _offer(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._read_q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _write(self):
        try:
            while True:
                result = self._write_q.get()
                if result is _END:
                    return
                self._consume(result)
        except BaseException as e:  # noqa: BLE001 - raised again on the caller's thread
            self._writer_error = e
