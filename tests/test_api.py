"""The public surface: names, headers, the command line and the bundled demo."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastlift as fl
from fastlift import cli, demo


def test_public_names():
    assert sorted(fl.__all__) == sorted(["Attributions", "Explainer", "Model", "attribute", "deeplift", "dinuc_shuffle",
                                         "from_keras", "get_include", "layers", "load_model", "references",
                                         "__version__"])
    for name in fl.__all__:
        assert hasattr(fl, name)
        if callable(getattr(fl, name)) and name != "Attributions":
            assert getattr(fl, name).__doc__


def test_get_include_has_the_shared_headers():
    inc = fl.get_include()
    for header in ("fl_math.h", "fl_kernels.h"):
        assert os.path.isfile(os.path.join(inc, header)), header


def test_get_include_headers_compile_as_c99(tmp_path):
    src = tmp_path / "use.c"
    src.write_text('#include "fl_math.h"\n#include "fl_kernels.h"\nint main(void){return 0;}\n')
    cc = os.environ.get("CC", "cc")
    proc = subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-Wno-unused-function", "-I", fl.get_include(),
                           str(src), "-o", str(tmp_path / "use"), "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_auroc():
    assert demo.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert demo.auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    with pytest.raises(ValueError, match="both positive and negative"):
        demo.auroc([1, 2], [1, 1])


def test_demo_recovers_planted_motifs():
    model, X, mask, rows = demo.run(n=40, length=60, n_refs=4, seed=1)
    by_method = {r["method"]: r for r in rows}
    assert by_method["deeplift rescale"]["auroc"] > 0.9
    assert by_method["deeplift rescale"]["max_abs_delta"] < 1e-4
    assert by_method["deeplift reveal_cancel"]["max_abs_delta"] < 1e-4
    assert all(0.0 <= r["auroc"] <= 1.0 for r in rows)
    # the trained model really detects the motifs: higher predicted log counts with them
    p = model.predict(X)[1][:, 0]
    assert p[:20].mean() > p[20:].mean() + 0.3


def test_cli_demo_prints_a_real_table(capsys, tmp_path):
    out = tmp_path / "scores.npz"
    assert cli.main(["demo", "--n", "20", "--length", "40", "--refs", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "deeplift rescale" in text and "auROC" in text
    saved = np.load(out)
    assert saved["sequences"].shape == (20, 40, 4)
    assert saved["deeplift_rescale"].shape == (20, 40, 4)


def test_cli_help_and_errors():
    proc = subprocess.run([sys.executable, "-m", "fastlift.cli", "demo", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--refs" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "fastlift.cli", "demo", "--n", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "expected a positive integer; got '0'" in proc.stderr
    assert cli.main(["demo", "--length", "5"]) == 2
