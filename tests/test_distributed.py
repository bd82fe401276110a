"""Scans on Dask (`fastlift.distributed`): a local cluster of 2 worker processes; outputs byte-identical
to one process for several task sizes, after a worker is SIGKILLed mid-task, and after the whole run
is killed and resumed; a worker's error ends the run with its own message."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("distributed")

from fastlift import demo
from fastlift import distributed as D
from fastlift import scan as S
from fastlift.io import scores as io_scores

from test_scan import TWO_HEADS, WIDTH, _Terminal, make_genome, read_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def client():
    with D.local_client(2) as c:
        yield c


@pytest.fixture(scope="module")
def model():
    return demo.demo_model(WIDTH)


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    fasta, bed, _ = make_genome(str(tmp_path_factory.mktemp("genome")), n_regions=30)
    return fasta, bed


KW = {"references": "dinuc:3", "seed": 2, "chunk_size": 3, "n_threads": 1, **TWO_HEADS}


def fasta_scan(model, genome, out, **kw):
    source = S.FastaBedSource(*genome, WIDTH)
    try:
        return S.scan(model, source, out, **{**KW, **kw})
    finally:
        source.close()


def test_workers_give_the_single_process_bytes_for_several_task_sizes(client, model, genome, tmp_path):
    reference = read_bytes(fasta_scan(model, genome, str(tmp_path / "one.h5")).paths)
    for k, task_size in enumerate([4, 7, 30]):
        before = client.run(D.sessions_built)
        res = fasta_scan(model, genome, str(tmp_path / f"d{k}.h5"), client=client, task_size=task_size)
        assert read_bytes(res.paths) == reference, task_size
        assert res.n_scored == 30 and res.resumed_from == 0
        built = {w: n - before[w] for w, n in client.run(D.sessions_built).items()}
        assert sum(built.values()) >= 1 and max(built.values()) == 1, built   # one engine per worker, all its tasks
    assert sorted(os.listdir(tmp_path)) == sorted(f"{s}.{t}.h5" for s in ("one", "d0", "d1", "d2")
                                                  for t in ("counts", "profile"))


def test_progress_comes_from_the_workers_commits(client, model, genome, tmp_path, monkeypatch):
    seen = []
    real = S._Tracker.report
    monkeypatch.setattr(S._Tracker, "report", lambda self, task, n: (seen.append((task, n)), real(self, task, n)))
    fasta_scan(model, genome, str(tmp_path / "p.h5"), client=client, task_size=10, progress=True)
    # each task of 10 regions commits after 3, 6, 9 and 10 of them, on its worker
    assert set(seen) == {(i, n) for i in range(3) for n in (3, 6, 9, 10)}, seen


def _array_input(directory, n):
    X = np.eye(4, dtype=np.uint8)[np.random.default_rng(1).integers(0, 4, (n, WIDTH))]
    path = os.path.join(directory, "x.npy")
    np.save(path, X)
    return path, X


def _marking_references(mark, flag, action):
    """Shuffle-like references (2 per region) that run ``action`` once, on the worker that meets
    the region equal to ``mark`` while ``flag`` (a file) does not exist."""
    def references(x, rng):
        if np.array_equal(x[0], mark) and not os.path.exists(flag) and action is not None:
            action(flag)
        return np.stack([x[0][rng.permutation(x.shape[1])] for _ in range(2)])[None]
    return references


def _die(flag):
    with open(flag, "w"):
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_task_loses_only_its_task(client, model, tmp_path):
    path, X = _array_input(str(tmp_path), 48)
    flag = str(tmp_path / "killed")
    kw = {"chunk_size": 2, "n_threads": 1, "target": 0, "target_layer": "counts"}
    source = S.ArraySource(np.load(path, mmap_mode="r"), path=path)
    single = S.scan(model, source, str(tmp_path / "one.h5"), references=_marking_references(X[44], flag, None), **kw)
    # region 44 is row 20 of task 1 of 2 (regions 24..47): its worker dies there, with rows of the
    # task already committed; Dask reruns the task on a live worker, which resumes the shard file
    res = S.scan(model, source, str(tmp_path / "d.h5"), references=_marking_references(X[44], flag, _die),
                 client=client, task_size=24, **kw)
    assert os.path.exists(flag)                                   # the worker was killed
    assert read_bytes(res.paths) == read_bytes(single.paths)
    assert 0 < res.resumed_from < 24 and res.n_scored == 48 - res.resumed_from   # the rerun continued the file
    deadline = time.time() + 60
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
        time.sleep(0.1)                                           # the nanny restarts the killed worker


def test_a_worker_error_stops_the_run_with_its_message(client, model, tmp_path):
    path, X = _array_input(str(tmp_path), 40)
    X[37, 5] = [0, 1, 1, 0]
    np.save(path, X)
    source = S.ArraySource(np.load(path, mmap_mode="r"), path=path)
    with pytest.raises(S.ScanError, match=r"x\.npy: row 37, position 5 is not one-hot: \[0, 1, 1, 0\]"):
        S.scan(model, source, str(tmp_path / "e.h5"), client=client, task_size=10, references="dinuc:2",
               n_threads=1, target=0, target_layer="counts")
    out = str(tmp_path / "cli.h5")
    proc = subprocess.run([sys.executable, "-m", "fastlift.cli", "explain", "demo", "--input", path, "--refs",
                           "dinuc:2", "--target", "0", "--target-layer", "counts", "--out", out, "--quiet",
                           "--scheduler", client.scheduler.address, "--task-size", "10", "--threads", "1"],
                          capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("fastlift explain: error: input ") and "row 37, position 5 is not one-hot" in \
        proc.stderr
    assert not os.path.exists(out)


DRIVER = r"""
import os, sys, time
import numpy as np
from fastlift import demo, scan as S
from fastlift.distributed import local_client
path, out, go, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "resume"
X = np.load(path)

def references(x, rng):        # the worker meeting region 21 waits there until `go` exists
    while np.array_equal(x[0], X[21]) and not os.path.exists(go):
        time.sleep(0.01)
    return np.stack([x[0][rng.permutation(x.shape[1])] for _ in range(2)])[None]

if __name__ == "__main__":
    model = demo.demo_model(64)
    kw = dict(references=references, chunk_size=2, n_threads=1, target=0, target_layer="counts")
    source = S.ArraySource(np.load(path, mmap_mode="r"), path=path)
    if sys.argv[4] == "single":
        S.scan(model, source, out, **kw)
        sys.exit(0)
    with local_client(2) as client:
        res = S.scan(model, source, out, client=client, task_size=8, resume=resume, log=print, **kw)
    print("resumed_from", res.resumed_from)
"""


def _children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker processes through /proc")
def test_the_whole_run_killed_then_resumed_skips_finished_shards(tmp_path):
    path, _ = _array_input(str(tmp_path), 40)
    go, out = str(tmp_path / "go"), str(tmp_path / "d.h5")
    with open(go, "w"):
        pass
    subprocess.run([sys.executable, "-c", DRIVER, path, str(tmp_path / "one.h5"), go, "single"], env=ENV,
                   check=True, timeout=300)
    os.remove(go)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, path, out, go, "first"], env=ENV,
                            stdout=subprocess.PIPE, text=True)
    parts = [S.shard_path(out, i, 5) for i in range(5)]            # 40 regions, tasks of 8
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:         # every task but the waiting one (2) done
        if all(_n_done(p) == 8 for k, p in enumerate(parts) if k != 2):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the first run ended before it could be killed"
    workers = [c for c in _children(proc.pid) if c != proc.pid]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 60
    while any(_alive(w) for w in workers) and time.time() < deadline:   # the workers die with their parent
        time.sleep(0.05)
    partial = _n_done(parts[2])
    assert not os.path.exists(out) and 0 <= partial < 8
    with open(go, "w"):
        pass
    done = subprocess.run([sys.executable, "-c", DRIVER, path, out, go, "resume"], env=ENV, capture_output=True,
                          text=True, check=True, timeout=300)
    assert "skipping 4 finished shard(s) of 5" in done.stdout, done.stdout
    assert f"resumed_from {32 + partial}" in done.stdout, done.stdout
    assert read_bytes([out]) == read_bytes([str(tmp_path / "one.h5")])
    assert not [p for p in os.listdir(tmp_path) if ".part-" in p]


def _n_done(path):
    try:
        return io_scores.read_header(path)["n_done"]
    except Exception:  # noqa: BLE001 - not there yet
        return -1


def test_a_resume_keeps_the_shards_of_the_interrupted_run(client, model, genome, tmp_path):
    """The default task size follows the number of workers present; a resume with another number
    of workers (a cluster still starting, fewer machines) continues the shard files the
    interrupted run left, instead of scoring everything again and leaving them behind."""
    reference = read_bytes(fasta_scan(model, genome, str(tmp_path / "one.h5")).paths)
    out = str(tmp_path / "d.h5")
    for i in (0, 2):  # what a run split in 3 left when it was killed: two finished shards
        fasta_scan(model, genome, out, shard=(i, 3))
    said = []
    res = fasta_scan(model, genome, out, client=client, resume=True, log=said.append)
    assert any("resuming the 3 shards of the interrupted run" in m for m in said), said
    assert any("skipping 2 finished shard(s) of 3" in m for m in said), said
    assert res.n_scored == 10 and read_bytes(res.paths) == reference
    assert not [p for p in os.listdir(tmp_path) if ".part-" in p]


def test_a_failed_distributed_scan_ends_its_progress_line(client, model, tmp_path, monkeypatch):
    path, X = _array_input(str(tmp_path), 20)
    X[17, 5] = [0, 1, 1, 0]
    np.save(path, X)
    source = S.ArraySource(np.load(path, mmap_mode="r"), path=path)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with pytest.raises(S.ScanError, match="row 17, position 5 is not one-hot"):
        S.scan(model, source, str(tmp_path / "e.h5"), client=client, task_size=10, references="dinuc:2",
               n_threads=1, target=0, target_layer="counts", progress=True)
    assert terminal.text.endswith("\n"), repr(terminal.text)


class _Client:
    """What `run_tasks` uses of a Dask client, recording the futures it cancels."""

    loop = None

    def __init__(self):
        self.cancelled = []

    def subscribe_topic(self, topic, handler):
        pass

    def unsubscribe_topic(self, topic):
        pass

    def scatter(self, data, **kw):
        return data

    def submit(self, *args, key, **kw):
        return key

    def cancel(self, futures):
        self.cancelled += futures


def test_an_interrupted_client_cancels_its_tasks(monkeypatch):
    def interrupted(futures, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(D, "as_completed", interrupted)
    fake = _Client()
    with pytest.raises(KeyboardInterrupt):
        D.run_tasks(fake, len, None, [1, 2, 3], on_report=lambda *a: None)
    assert len(fake.cancelled) == 3


def test_reverse_complement_reaches_the_workers(client, model, genome, tmp_path):
    single = read_bytes(fasta_scan(model, genome, str(tmp_path / "one.h5"), reverse_complement=True).paths)
    plain = read_bytes(fasta_scan(model, genome, str(tmp_path / "plain.h5")).paths)
    res = fasta_scan(model, genome, str(tmp_path / "d.h5"), client=client, task_size=11, reverse_complement=True)
    assert read_bytes(res.paths) == single != plain
