"""The reader / compute / writer pipeline: order, overlap, and errors that surface instead of hanging."""

import threading
import time

import pytest

from fastlift.pipeline import Pipeline


class Boom(Exception):
    pass


def run_within(seconds, f):
    """Run ``f`` on a thread; fail (instead of hanging the suite) if it has not returned in time."""
    out = {}

    def target():
        try:
            out["value"] = f()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: a pipeline stage hangs"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def live_pipeline_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fastlift-test-")]


def test_items_flow_in_order_on_their_own_threads():
    seen, consumed = [], []

    def produce():
        for i in range(20):
            seen.append(threading.current_thread().name)
            yield i

    def consume(r):
        consumed.append((r, threading.current_thread().name))

    def body():
        with Pipeline(produce(), consume, depth=2, name="test") as pipe:
            for item in pipe:
                pipe.put(item * 10)

    run_within(30, body)
    assert [r for r, _ in consumed] == [i * 10 for i in range(20)]
    assert set(seen) == {"fastlift-test-reader"} and {n for _, n in consumed} == {"fastlift-test-writer"}
    assert not live_pipeline_threads()


def test_the_three_stages_run_at_once():
    """The reader makes item 2 while the caller computes item 1 and the writer writes item 0: a
    barrier of the three is only passed if they run at the same time (in turn, it breaks)."""
    meet = threading.Barrier(3, timeout=20)

    def produce():
        for i in range(4):
            if i == 2:
                meet.wait()
            yield i

    def consume(r):
        if r == 0:
            meet.wait()

    def body():
        with Pipeline(produce(), consume, depth=2, name="test") as pipe:
            for item in pipe:
                if item == 1:
                    meet.wait()
                pipe.put(item)

    run_within(60, body)
    assert not meet.broken


def test_a_reader_error_arrives_after_the_items_read_before_it():
    consumed = []

    def produce():
        yield 1
        yield 2
        raise Boom("bad region 3")

    def body():
        with Pipeline(produce(), consumed.append, name="test") as pipe:
            for item in pipe:
                pipe.put(item)

    with pytest.raises(Boom, match="bad region 3"):
        run_within(30, body)
    assert consumed == [1, 2]   # the results computed before the error are written
    assert not live_pipeline_threads()


def test_a_writer_error_stops_the_writer_and_reaches_the_caller():
    consumed, computed = [], []

    def consume(r):
        if r == 3:
            raise Boom("disk full at 3")
        consumed.append(r)

    def body():
        with Pipeline(iter(range(1000)), consume, depth=2, name="test") as pipe:
            for item in pipe:
                computed.append(item)
                pipe.put(item)

    with pytest.raises(Boom, match="disk full at 3"):
        run_within(30, body)
    assert consumed == [0, 1, 2]          # nothing after the failed item
    assert len(computed) < 10             # the caller stopped soon after, not at the end of the input
    assert not live_pipeline_threads()


def test_a_writer_error_on_the_last_item_is_raised_at_the_end():
    def consume(r):
        if r == 4:
            raise Boom("last")

    def body():
        with Pipeline(iter(range(5)), consume, name="test") as pipe:
            for item in pipe:
                pipe.put(item)

    with pytest.raises(Boom, match="last"):
        run_within(30, body)


def test_a_caller_error_lets_the_writer_finish_what_it_was_given():
    consumed = []
    produced = []

    def produce():
        for i in range(1000):
            produced.append(i)
            yield i

    def consume(r):
        time.sleep(0.02)
        consumed.append(r)

    def body():
        with Pipeline(produce(), consume, depth=2, name="test") as pipe:
            for item in pipe:
                if item == 5:
                    raise Boom("compute failed at 5")
                pipe.put(item)

    with pytest.raises(Boom, match="compute failed at 5"):
        run_within(30, body)
    assert consumed == [0, 1, 2, 3, 4]
    assert len(produced) < 20             # the reader stopped: it was blocked on its full queue
    assert not live_pipeline_threads()


def test_a_blocking_reader_is_released_when_the_caller_leaves_early():
    closed = []

    def produce():
        try:
            yield from range(10**9)
        finally:
            closed.append(True)

    def body():
        with Pipeline(produce(), lambda r: None, depth=1, name="test") as pipe:
            for item in pipe:
                if item == 2:
                    break
                pipe.put(item)

    run_within(30, body)
    assert closed == [True] and not live_pipeline_threads()
