"""The caching numpy allocator used during CPU runs (fastlift/backends/_pool.pyx)."""

import os
import sys
import threading

import numpy as np
import pytest

from fastlift.backends import _pool
from fastlift.backends.cpu_ops import CpuOps

BIG = 2 * 2**20 // 8  # float64 elements of a 2 MB block
THP = "/sys/kernel/mm/transparent_hugepage/enabled"


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts and ends with nothing cached."""
    _pool.release()
    yield
    _pool.release()


def handler_name():
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1.25+
    return core.multiarray.get_handler_name()


def test_caching_installs_and_restores_the_handler():
    before = handler_name()
    with _pool.caching(64 * 2**20):
        assert handler_name() == "fastlift_pool"
        with _pool.caching(64 * 2**20):  # re-entrant
            assert handler_name() == "fastlift_pool"
        assert handler_name() == "fastlift_pool"
    assert handler_name() == before
    assert _pool.stats()["active"] == 0


def test_a_freed_block_is_reused_for_the_same_size_and_released_after_the_last_run():
    start = _pool.stats()
    with _pool.caching(64 * 2**20):
        a = np.ones(BIG)
        address = a.__array_interface__["data"][0]
        del a
        assert _pool.stats()["cached_blocks"] == start["cached_blocks"] + 1
        b = np.empty(BIG)
        assert b.__array_interface__["data"][0] == address  # the same block came back
        assert _pool.stats()["hits"] == start["hits"] + 1
        c = np.empty(BIG + 1)  # another size: a miss, from the C library
        assert _pool.stats()["misses"] >= start["misses"] + 1
        del b, c
        assert _pool.stats()["cached_bytes"] > 0
    # no run and no hold left: everything goes back to the C library at once
    assert _pool.stats()["cached_bytes"] == 0 and _pool.stats()["cached_blocks"] == 0


def vm_flags(address):
    """The VmFlags of the mapping of this process that holds ``address`` (Linux /proc)."""
    region = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:  # a mapping's first line: "lo-hi perms ..."
                lo, hi = (int(v, 16) for v in head.split("-"))
                region = lo <= address < hi
            elif region and line.startswith("VmFlags:"):
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists(THP),
                    reason="transparent huge pages are Linux's")
def test_new_big_blocks_are_advised_to_use_huge_pages_as_numpy_does():
    # Blocks above glibc's largest mmap threshold (32 MiB): fresh mappings, whose flags only the
    # advice sets. (Smaller blocks may come from memory an earlier block's advice covers, so the
    # absence of advice below HUGE_BYTES is not asserted.)
    assert _pool.HUGE_BYTES == 4 * 2**20  # numpy's threshold
    with _pool.caching(256 * 2**20):
        big = np.empty(40 * 2**20 // 8 + 4096)  # a miss: malloc, then the advice
        zeroed = np.zeros(40 * 2**20 // 8 + 8192)  # calloc's path
        assert "hg" in vm_flags(big.__array_interface__["data"][0] + 8192)
        assert "hg" in vm_flags(zeroed.__array_interface__["data"][0] + 8192)
        del big, zeroed


def test_a_hold_keeps_blocks_between_runs_until_it_closes():
    hold = _pool.hold(64 * 2**20)
    with _pool.caching(64 * 2**20):
        a = np.ones(BIG)
        address = a.__array_interface__["data"][0]
        del a
    retained = _pool.stats()
    assert retained["cached_blocks"] == 1 and retained["active"] == 1  # the session's next run reuses it
    with _pool.caching(64 * 2**20):
        d = np.empty(BIG)  # no fresh memory to fault in
        assert d.__array_interface__["data"][0] == address
        assert _pool.stats()["hits"] == retained["hits"] + 1
    del d  # freed outside a run: still cached while the hold is open
    assert _pool.stats()["cached_blocks"] == 1
    _pool.release()  # a hold is open: nothing to release yet
    assert _pool.stats()["cached_blocks"] == 1
    hold.close()
    hold.close()  # idempotent
    assert _pool.stats() | {"hits": 0, "misses": 0} == {"active": 0, "cached_bytes": 0, "cached_blocks": 0,
                                                      "hits": 0, "misses": 0}


def test_an_explainer_holds_the_pool_from_creation_to_close(rng):
    import fastlift as fl
    from fastlift import layers as L

    x = L.Input((2 * BIG // 100,), name="x")  # rows of 2 MB+ arrays
    model = fl.Model(x, L.Dense(rng.standard_normal((x.shape[0], 1)), name="d")(x))
    X = rng.standard_normal((100, x.shape[0]))
    ex = fl.Explainer(model, device="cpu", dtype="float64")
    assert _pool.stats()["active"] == 1
    ex.deeplift(X)
    assert _pool.stats()["cached_blocks"] > 0  # kept for the session's next call
    ex.close()
    assert _pool.stats()["active"] == 0 and _pool.stats()["cached_blocks"] == 0
    with pytest.raises(RuntimeError, match="this Explainer is closed"):
        ex.deeplift(X)
    fl.deeplift(model, X, device="cpu", dtype="float64")  # a one-call session leaves nothing behind
    assert _pool.stats()["active"] == 0 and _pool.stats()["cached_blocks"] == 0


def test_release_leaves_an_active_run_its_blocks():
    with _pool.caching(64 * 2**20):
        a = np.ones(BIG)
        del a
        _pool.release()  # a run is active: nothing to release yet
        assert _pool.stats()["cached_blocks"] == 1


def test_zeros_from_a_reused_block_are_zero():
    with _pool.caching(64 * 2**20):
        a = np.full(BIG, 7.0)
        del a
        z = np.zeros(BIG)
        assert not z.any()


def test_small_blocks_are_not_cached_and_the_newest_blocks_fill_the_limit():
    with _pool.caching(3 * 2**20):  # room for one 2 MB block
        small = np.ones(_pool.MIN_BYTES // 8 - 1)
        del small
        assert _pool.stats()["cached_blocks"] == 0
        a, b = np.ones(BIG), np.ones(BIG)
        b_address = b.__array_interface__["data"][0]
        del a, b  # b, freed last, pushes a out
        assert _pool.stats()["cached_blocks"] == 1
        assert np.empty(BIG).__array_interface__["data"][0] == b_address
        huge = np.ones(4 * BIG)  # larger than the limit: never cached
        del huge
        assert _pool.stats()["cached_bytes"] <= 3 * 2**20


def test_arrays_outliving_the_run_are_freed_normally():
    with _pool.caching(64 * 2**20):
        keep = np.arange(BIG, dtype=np.float64)
    assert handler_name() != "fastlift_pool"
    assert keep[-1] == BIG - 1
    before = _pool.stats()["cached_blocks"]
    del keep  # goes through the pool's free, inactive now: straight to the C library
    assert _pool.stats()["cached_blocks"] == before


def test_frees_from_other_threads_are_safe():
    with _pool.caching(256 * 2**20):
        arrays = [np.ones(BIG) for _ in range(40)]

        def drop(chunk):
            for _ in range(len(chunk)):
                chunk.pop()

        threads = [threading.Thread(target=drop, args=(arrays[i::4],)) for i in range(4)]
        del arrays
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = [np.zeros(BIG) for _ in range(40)]
        assert all(not g.any() for g in got)


def test_negative_limit_is_rejected():
    with pytest.raises(ValueError, match="limit must be >= 0 bytes; got -1"):
        _pool.caching(-1)


def test_cpu_runs_use_the_pool():
    ops = CpuOps(n_threads=1)
    with ops.compute_context():
        assert handler_name() == "fastlift_pool"
    assert handler_name() != "fastlift_pool"


def test_a_forked_child_runs_and_releases_on_its_own():
    import multiprocessing

    with _pool.caching(64 * 2**20):  # the parent has a release scheduled when the child forks
        a = np.ones(BIG)
        del a
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as workers:
        assert workers.apply(_child_run) == 0


def _child_run():
    with _pool.caching(64 * 2**20):
        b = np.ones(BIG)
        del b
    _pool.release()
    return _pool.stats()["cached_blocks"]
