"""One copy of every source: csrc/ and kernels/ are mapped into the package, never copied.

pyproject.toml maps the top-level ``csrc/`` and ``kernels/`` onto the data-only packages
``fastlift.include`` and ``fastlift.kernels``. These tests build the package's pure part with
setuptools' ``build_py`` (what a wheel holds besides the compiled extensions; no compiler needed)
and an sdist, and check that every header and kernel is in each exactly once, that an installed
layout finds them inside the package, and that a checkout holds no copies.
"""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import fastlift as fl
from fastlift.backends import _cuda

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(fl.__file__).resolve().parent
SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache", "results"}

pytestmark = pytest.mark.skipif(not (ROOT / "setup.py").is_file() or not (ROOT / "csrc").is_dir(),
                                reason="needs the source tree (setup.py, csrc/)")


def _shipped_sources():
    """{basename: source path} of every header and kernel the package must carry."""
    files = {f.name: f for f in (ROOT / "csrc").iterdir() if f.suffix in (".h", ".pxd")}
    files.update({f.name: f for f in (ROOT / "kernels").iterdir() if f.suffix in (".cu", ".cuh")})
    return files


def _setup(*args, cwd=ROOT):
    proc = subprocess.run([sys.executable, "setup.py", "-q", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _basenames(paths):
    counts = {}
    for p in paths:
        counts[os.path.basename(p)] = counts.get(os.path.basename(p), 0) + 1
    return counts


@pytest.fixture(scope="module")
def built_lib(tmp_path_factory):
    """The package as build_py lays it out in a wheel (pure files and package data)."""
    lib = tmp_path_factory.mktemp("wheel") / "lib"
    _setup("build_py", "-d", str(lib))
    return lib


def test_wheel_holds_each_header_and_kernel_once(built_lib):
    sources = _shipped_sources()
    assert {"fastlift.h", "fl_math.h", "fl_kernels.h", "fl_shuffle.h", "fastlift_capi.pxd", "rules.cu",
            "fl_cuda.cuh"} <= set(sources)
    counts = _basenames(str(p) for p in built_lib.rglob("*") if p.is_file())
    for name, src in sources.items():
        folder = "include" if src.parent.name == "csrc" else "kernels"
        shipped = built_lib / "fastlift" / folder / name
        assert shipped.read_bytes() == src.read_bytes(), name
        assert counts[name] == 1, f"{name} is in the wheel {counts[name]} times"


def test_sdist_holds_each_header_and_kernel_once(tmp_path):
    _setup("sdist", "-d", str(tmp_path))
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    counts = _basenames(names)
    for name, src in _shipped_sources().items():
        assert counts.get(name) == 1, f"{name} is in the sdist {counts.get(name, 0)} times"
        assert any(n.endswith(f"/{src.parent.name}/{name}") for n in names), name
    assert not [n for n in names if "/fastlift/include/" in n or "/fastlift/kernels/" in n]
    assert counts.get("fastlift_capi.pxd.tp") == 1  # what setup.py renders fastlift_capi.pxd from


def test_installed_layout_reads_headers_and_kernels_from_the_package(built_lib):
    # the compiled extensions of this install, so that the built tree imports
    for so in PACKAGE.rglob("*.so"):
        dest = built_lib / "fastlift" / so.relative_to(PACKAGE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(so, dest)
    code = ("import fastlift, fastlift.backends._cuda as c; print(fastlift.__file__); print(fastlift.get_include()); "
            "print('|'.join(map(str, c.source_dirs()))); print(len(c.kernel_source('rules.cu')))")
    env = {**os.environ, "PYTHONPATH": str(built_lib)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=built_lib, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    init, include, dirs, n_chars = proc.stdout.split("\n")[:4]
    pkg = built_lib / "fastlift"
    assert Path(init).parent == pkg  # the built tree, not the checkout
    assert Path(include) == pkg / "include"
    assert dirs.split("|") == [str(pkg / "kernels"), str(pkg / "include")]
    assert int(n_chars) == len(_cuda.kernel_source("rules.cu"))


def test_checkout_reads_csrc_and_kernels_in_place():
    if PACKAGE != ROOT / "fastlift":
        pytest.skip("fastlift is installed from a wheel, not imported from this checkout")
    assert Path(fl.get_include()) == ROOT / "csrc"
    assert _cuda.source_dirs() == [ROOT / "kernels", ROOT / "csrc"]
    assert not (PACKAGE / "include").exists() and not (PACKAGE / "kernels").exists()
    sources = _shipped_sources()
    found = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".venv")
                       and not d.endswith(".egg-info")]
        for f in filenames:
            if f in sources:
                found.setdefault(f, []).append(os.path.join(dirpath, f))
    copies = {name: paths for name, paths in found.items() if len(paths) > 1}
    assert not copies, f"sources present more than once in the checkout: {copies}"


def test_a_copy_left_inside_the_package_never_shadows_the_checkout(tmp_path, monkeypatch):
    """Older builds copied csrc/ and kernels/ into the package; in a checkout those copies may still
    exist, stale. The checkout's own sources win."""
    for d, name in (("csrc", "fl_math.h"), ("kernels", "rules.cu"), ("fastlift/include", "fl_math.h"),
                    ("fastlift/kernels", "rules.cu")):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
        (tmp_path / d / name).write_text("// " + d)
    monkeypatch.setattr(_cuda, "_PACKAGE", tmp_path / "fastlift")
    assert _cuda.source_dirs() == [tmp_path / "kernels", tmp_path / "csrc"]
    (tmp_path / "csrc" / "fl_math.h").unlink()  # no checkout beside it: an installed package
    assert _cuda.source_dirs() == [tmp_path / "fastlift" / "kernels", tmp_path / "fastlift" / "include"]
