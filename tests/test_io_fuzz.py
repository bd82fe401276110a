"""Fuzz the loader with mutated fixture files: only clean errors, no crash, no hang.

Allowed outcomes for a mutated file: it loads (a mutation in unused bytes), or it raises
``ModelFileError`` (a ValueError naming the file) or ``NotImplementedError`` (e.g. a
class name mutated into an unknown one). Anything else — KeyError, TypeError, h5py's
own exceptions, a segfault in libhdf5, a hang — fails the test.

The cases run in a child process (a crash in C code cannot take pytest down, and the
parent sees it), each under an alarm; the seed and the number of cases are fixed.

Known limitation: libhdf5 itself can loop forever inside a single C call on some
corrupted heaps (found by this test: a zeroed block in a global heap makes reading a
variable-length string attribute spin). Python cannot interrupt C code, so such a case
is killed by the parent, reported with the stack (which must end inside h5py), and the
remaining cases continue in a new child. A hang anywhere else fails the test.
"""

import json
import os
import subprocess
import sys
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures", "keras")
SOURCES = ["seq_mlp.tfkeras.h5", "seq_mlp.keras", "nested_shared.keras3.h5", "dl_functional_concat.k224.h5",
           "seq_mlp.keras3.weights.h5"]
N_CASES = 40  # per source file
PER_CASE_SECONDS = 3

CHILD = r"""
import json, os, signal, sys, zipfile, io
import numpy as np
sys.path.insert(0, sys.argv[1])
import fastlift as fl
from fastlift.io import ModelFileError

src, out_dir, n_cases, seconds, config_json = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
first = int(sys.argv[7])
import faulthandler
config_json = config_json or None
data = open(src, "rb").read()
rng = np.random.default_rng(sum(map(ord, os.path.basename(src))))

def mutate(k):
    b = bytearray(data)
    kind = k % 4
    if kind == 0:  # truncate
        return bytes(b[: int(rng.integers(0, len(b)))]), "truncate"
    if kind == 1:  # flip random bytes
        for i in rng.integers(0, len(b), size=int(rng.integers(1, 20))):
            b[i] = int(rng.integers(0, 256))
        return bytes(b), "flip"
    if kind == 2:  # overwrite a block with zeros or 0xff
        i = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 512))
        b[i:i + n] = bytes([int(rng.choice([0, 255]))]) * len(b[i:i + n])
        return bytes(b), "block"
    # mutate bytes inside the JSON config text when there is one (exercises the parser)
    j = data.find(b'{"class_name"')
    if j < 0:
        j = data.find(b'{"module"')
    if j < 0:
        j = int(rng.integers(0, len(b)))
    for i in j + rng.integers(0, 4000, size=int(rng.integers(1, 6))):
        if i < len(b):
            b[i] = int(rng.choice(list(b'{}[]":,0123456789-abcxyz ')))
    return bytes(b), "config"

def alarm(*_):
    raise TimeoutError("hang")

signal.signal(signal.SIGALRM, alarm)
ext = os.path.splitext(src)[1]
results = []
for k in range(n_cases):
    blob, kind = mutate(k)
    if k < first:
        continue
    path = os.path.join(out_dir, f"case{k}{ext}")
    with open(path, "wb") as f:
        f.write(blob)
    print(f"CASE {k} {kind}", flush=True)
    faulthandler.dump_traceback_later(seconds + 2, exit=True)
    signal.alarm(seconds)
    try:
        fl.load_model(path, config_json)
        outcome = "loaded"
    except (ModelFileError, NotImplementedError) as e:
        outcome = "clean:" + type(e).__name__
        assert os.path.basename(path) in str(e), f"error does not name the file: {e}"
    except BaseException as e:
        outcome = f"BAD:{type(e).__name__}: {str(e)[:300]}"
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
    print("RESULT " + json.dumps((k, kind, outcome)), flush=True)
"""


@pytest.mark.parametrize("source", SOURCES)
def test_mutated_files_fail_cleanly(tmp_path, source):
    config_json = ""
    if source.endswith(".weights.h5"):
        config_json = os.path.join(FIXTURES, source.replace(".weights.h5", ".json"))
    results, hangs, first = [], [], 0
    while first < N_CASES:
        proc = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
            [sys.executable, "-c", CHILD, os.path.dirname(HERE), os.path.join(FIXTURES, source), str(tmp_path),
             str(N_CASES), str(PER_CASE_SECONDS), config_json, str(first)],
            capture_output=True, text=True, timeout=N_CASES * (PER_CASE_SECONDS + 5) + 60)
        lines = proc.stdout.splitlines()
        results += [json.loads(line[len("RESULT "):]) for line in lines if line.startswith("RESULT ")]
        if proc.returncode == 0:
            break
        cases = [line for line in lines if line.startswith("CASE")]
        assert cases, proc.stderr[-2000:]
        k = int(cases[-1].split()[1])
        stack = proc.stderr
        # faulthandler killed a case stuck in one C call: it must be inside h5py/libhdf5
        assert "Timeout" in stack and "h5py" in stack.split("Thread")[-1].splitlines()[1], (
            f"case {k} crashed or hung outside libhdf5 (exit {proc.returncode}): {stack[-2000:]}")
        hangs.append(k)
        first = k + 1
    bad = [r for r in results if r[2].startswith("BAD")]
    assert not bad, bad
    assert len(results) + len(hangs) == N_CASES
    assert sum(r[2].startswith("clean") for r in results) >= N_CASES // 4  # the mutations do bite
    if hangs:
        warnings.warn(f"{source}: libhdf5 looped inside one C call on mutated case(s) {hangs} (see module "
                      "docstring)", stacklevel=1)
