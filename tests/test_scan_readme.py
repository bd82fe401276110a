"""The README's Python examples for scans and for deeplift-compat code run as written."""

import os
import re

import numpy as np

from fastlift import genomics as G

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_block(containing):
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.DOTALL)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"one README python block with {containing!r}; found {len(found)}"
    return found[0]


def test_the_scan_example_runs_as_written(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    G.write_fasta(str(tmp_path / "genome.fa"), {"chr1": "".join(rng.choice(list("ACGT"), 4000))})
    (tmp_path / "regions.bed").write_text("chr1\t1000\t1100\nchr1\t2500\t2600\nchr1\t3000\t3010\n")
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(_python_block("from fastlift.io.scores import load_scores"), "README.md", "exec"), names)   # noqa: S102 - our own README
    assert names["scores"]["hyp_scores"].shape == (3, 500, 4)
    assert names["res"].hypothetical.shape == (2, 3, 500, 4)
    assert sorted(os.listdir(tmp_path)) == ["genome.fa", "genome.fa.fai", "regions.bed", "scores.counts.h5",
                                            "scores.profile.h5"]


def test_the_compat_example_calls_the_scoring_function():
    block = _python_block("convert_model_from_saved_files")
    assert "scores(task_idx=0" in block and "shuffled(task_idx=0" in block
    fixture = os.path.join(ROOT, "tests", "fixtures", "keras", "dl_conv1d_same.tfkeras.h5")  # (51, 10) one-hot in
    rng = np.random.default_rng(1)
    names = {"X": np.eye(10, dtype=np.float32)[rng.integers(0, 10, size=(3, 51))]}
    exec(compile(block.replace('"model.h5"', repr(fixture)), "README.md", "exec"), names)   # noqa: S102
    assert np.asarray(names["contribs"]).shape == (3, 51, 10)
