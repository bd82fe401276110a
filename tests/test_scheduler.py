"""The scheduler on its own: chunks of whole examples, pair indices, references per chunk, the
session's shared-reference memo, prefetching and the chunk-size arithmetic. It sees a call only
through `scheduler.Work`."""

import threading

import numpy as np
import pytest

from fastlift import references as refs_mod
from fastlift import scheduler
from fastlift.backends.ops import Ops


class _Model:
    """What `references.prepare` reads of a model: its input names and channel axis."""

    channel_axis = -1

    def __init__(self, names):
        self.input_names = names


def work(xs, references=None, seed=0, ops=None, shared_acts=None, names=("x",)):
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    sources = refs_mod.prepare(_Model(list(names)), references, xs)
    return scheduler.Work(xs=xs, sources=sources, input_names=list(names), seed=seed, ops=ops or Ops(),
                          dtype=np.dtype(np.float64), shared_acts=shared_acts)


def test_chunks_hold_whole_examples_in_order():
    x = np.arange(7 * 3, dtype=float).reshape(7, 3)
    got = list(scheduler.chunks(work([x]), 3))
    assert [(c.lo, c.hi) for c in got] == [(0, 3), (3, 6), (6, 7)]
    np.testing.assert_array_equal(np.concatenate([c.x_host[0] for c in got]), x)


def test_shared_references_pair_every_example_with_each_row():
    x = np.ones((3, 2))
    refs = np.stack([np.zeros(2), np.full(2, 5.0)])[None]  # (1, K=2, 2): shared by every example
    (chunk,) = scheduler.chunks(work([x], refs), 10)
    assert chunk.shared and chunk.n_refs == 2
    np.testing.assert_array_equal(chunk.pair_x_host, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(chunk.pair_r_host, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(chunk.ref_rows_per_pair()[0][:2], refs[0])


def test_per_example_references_are_example_major():
    x = np.arange(6, dtype=float).reshape(3, 2)
    refs = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)  # (N, K, 2)
    chunks = list(scheduler.chunks(work([x], refs), 2))
    second = chunks[1]
    assert not second.shared and (second.lo, second.hi) == (2, 3)
    np.testing.assert_array_equal(second.pair_x_host, [0, 0])
    np.testing.assert_array_equal(second.pair_r_host, [0, 1])
    np.testing.assert_array_equal(second.ref_rows_per_pair()[0], refs[2])


def test_generated_references_depend_on_seed_and_example_not_on_chunking():
    x = np.eye(4)[np.random.default_rng(0).integers(0, 4, size=(5, 12))]
    spec = refs_mod.dinuc_shuffle(3)

    def rows(batch, seed):
        return np.concatenate([c.ref_rows_per_pair()[0] for c in scheduler.chunks(work([x], spec, seed), batch)])

    np.testing.assert_array_equal(rows(1, 7), rows(5, 7))
    assert not np.array_equal(rows(5, 7), rows(5, 8))


def test_forward_of_shared_rows_runs_once_per_session(monkeypatch):
    calls, digests = [], []
    real_digest = scheduler.SharedReferenceActs._digest
    monkeypatch.setattr(scheduler.SharedReferenceActs, "_digest",
                        staticmethod(lambda rows: digests.append(1) or real_digest(rows)))

    def forward(rows, keep=None):
        calls.append(float(rows[0][0, 0]))  # 1.0: example rows, 0.0: the zero reference
        return {"out": rows[0] * 2}

    memo = scheduler.SharedReferenceActs()
    x = np.ones((4, 2))
    for n_call in range(3):  # three calls of one session, four chunks each
        for chunk in scheduler.chunks(work([x], np.zeros((1, 2)), shared_acts=memo), 1):
            acts_x, acts_r = chunk.acts(forward)
            np.testing.assert_array_equal(acts_x["out"], np.full((1, 2), 2.0))
            np.testing.assert_array_equal(acts_r["out"], np.zeros((1, 2)))
        # once per call, and kept from the second call with these rows on; one digest per call
        assert calls.count(0.0) == min(n_call + 1, 2) and len(digests) == n_call + 1
    assert calls.count(1.0) == 12
    assert not memo.get([np.zeros((1, 2))])["out"].flags.writeable
    memo.clear()
    assert memo.get([np.zeros((1, 2))]) is None


def test_shared_rows_join_a_one_chunk_call_until_the_memo_keeps_them():
    # one region a call with its own K shuffles: the K rows go through the examples' forward pass
    # (one pass of n + K rows, not a pass of n rows beside one of K), except where the session's memo
    # is about to keep them: kept activations must own their memory, not view the examples' arrays
    passes = []

    def forward(rows, keep=None):
        passes.append(rows[0].shape[0])
        return {"out": rows[0] * 2}

    memo = scheduler.SharedReferenceActs()
    x = np.ones((2, 3))
    refs = np.stack([np.zeros(3), np.full(3, 5.0)])[None]  # (1, K=2, 3)
    for n_call, expected in enumerate([[4], [2, 2], [2]]):  # joined; kept (its own pass); from the memo
        passes.clear()
        (chunk,) = scheduler.chunks(work([x], refs, shared_acts=memo), 10)
        acts_x, acts_r = chunk.acts(forward)
        assert passes == expected, n_call
        np.testing.assert_array_equal(acts_x["out"], np.full((2, 3), 2.0))
        np.testing.assert_array_equal(acts_r["out"], 2 * refs[0])
    kept = memo.get([refs[0]])["out"]
    assert kept.base is None or kept.base.shape[0] == 2  # its own pass's array, not a view of 4 rows
    # without a memo: joined every time; with `keep` (a pass that drops activations): never
    for shared_acts, keep, expected in ((None, None, [4]), (None, ("out",), [2, 2])):
        passes.clear()
        (chunk,) = scheduler.chunks(work([x], refs, shared_acts=shared_acts), 10)
        acts_x, acts_r = chunk.acts(forward, keep=keep)
        assert passes == expected
        np.testing.assert_array_equal(acts_r["out"], 2 * refs[0])
    # a call of several chunks forwards the shared rows once, on their own, for all of them
    passes.clear()
    for chunk in scheduler.chunks(work([x], refs), 1):
        chunk.acts(forward)
    assert passes == [1, 2, 1]


def test_rows_seen_once_are_not_kept():
    # a scan's per-region shuffles: each set comes once, and keeping it would only hold memory
    memo = scheduler.SharedReferenceActs()
    acts = {"a": np.zeros(3)}
    for v in range(10):
        assert memo.put([np.full((1, 2), float(v))], acts) is False
    assert all(memo.get([np.full((1, 2), float(v))]) is None for v in range(10))
    assert acts["a"].flags.writeable  # not shared, so not frozen
    assert memo.put([np.full((1, 2), 9.0)], acts) is True
    assert memo.get([np.full((1, 2), 9.0)]) is acts and not acts["a"].flags.writeable
    # a different key (another forward's activations) is another entry
    assert memo.put([np.full((1, 2), 9.0)], acts, key="other") is False


def test_the_memo_keeps_its_most_recent_entries():
    memo = scheduler.SharedReferenceActs(entries=2, seen=3)
    for v in range(3):
        for _ in range(2):  # seen twice: kept
            memo.put([np.full((1, 2), float(v))], {"a": np.zeros(1)})
    assert memo.get([np.full((1, 2), 0.0)]) is None
    assert memo.get([np.full((1, 2), 2.0)]) is not None and memo.get([np.full((1, 2), 1.0)]) is not None
    for v in range(3, 6):  # only the last `seen` digests are remembered
        memo.put([np.full((1, 2), float(v))], {"a": np.zeros(1)})
    assert memo.put([np.full((1, 2), 2.0)], {"a": np.zeros(1)}) is False


def test_a_device_backend_gets_its_next_chunk_built_on_a_host_thread():
    class Prefetching(Ops):
        prefetch_chunks = True

    built = []
    real = scheduler.Chunk

    class Recorded(real):
        def __init__(self, work, lo, hi, cache):
            built.append((lo, threading.current_thread().name))
            super().__init__(work, lo, hi, cache)

    scheduler.Chunk, saved = Recorded, scheduler.Chunk
    try:
        got = [c.lo for c in scheduler.chunks(work([np.ones((5, 2))], ops=Prefetching()), 2)]
    finally:
        scheduler.Chunk = saved
    assert got == [0, 2, 4]
    assert all(name.startswith("fastlift-prefetch") for _, name in built)


def test_generated_references_of_different_counts_per_input_are_refused():
    def k_refs(k):
        return lambda x, rng: np.zeros((1, k) + x.shape[1:])

    w = work([np.ones((2, 3)), np.ones((2, 2))], [k_refs(2), k_refs(3)], names=("a", "b"))
    with pytest.raises(ValueError, match=r"every input must have the same number of references K \(or 1\); "
                                         r"got \[2, 3\]"):
        list(scheduler.chunks(w, 2))


@pytest.mark.parametrize("n,rows,budget,want", [
    (100, 1, 10**12, 100),       # everything fits: one chunk
    (100, 10, 8 * (100 * 42 + 0), 1),  # one example's arrays fill the budget
    (100, 1, 0, 1),              # never less than one example
])
def test_auto_batch_size_arithmetic(n, rows, budget, want):
    assert scheduler.auto_batch_size(n, rows, 8, 100, 0, budget) == want


def test_auto_batch_size_counts_pairs_and_unfolded_inputs():
    # per example: 8 bytes x (100 values x (2 + 4k) + 50 unfolded x (1 + k)), k = 3
    per_example = 8 * (100 * 14 + 50 * 4)
    assert scheduler.auto_batch_size(1000, 3, 8, 100, 50, 7 * per_example + 1) == 7
