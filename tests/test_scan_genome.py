"""The genome-scale script, at a small scale: generated genome, SIGKILL, resume, bytes equal."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generated_genome_script_small(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "scan_generated_genome.py"), "--mb", "0.4",
                           "--regions", "120", "--width", "200", "--refs", "dinuc:4", "--kill-at", "40", "--chunk-size", "4",
                           "--dir", str(tmp_path)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    killed = [line for line in out.splitlines() if line.startswith("killed at ")]
    assert killed and 40 <= int(killed[0].split()[2]) < 120, out
    assert "killed + resumed == uninterrupted (profile): True" in out
    assert "killed + resumed == uninterrupted (counts): True" in out
    assert "first 16 regions vs fl.deeplift: max |difference| 0.00e+00" in out
    assert "regions/s" in out


def test_the_script_uses_the_installed_package_and_cleans_up(tmp_path):
    """Run from a checkout whose source tree cannot be imported (as after `pip install .`: the
    compiled extensions live in the installed copy only): the script must import the installed
    fastlift, do the kill and resume it promises by default, and leave no temporary directory."""
    repo = tmp_path / "checkout"
    (repo / "scripts").mkdir(parents=True)
    (repo / "fastlift").mkdir()
    (repo / "fastlift" / "__init__.py").write_text("raise ImportError('the source tree was imported')\n")
    shutil.copy(os.path.join(ROOT, "scripts", "scan_generated_genome.py"), repo / "scripts")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TMPDIR"] = str(scratch)
    proc = subprocess.run([sys.executable, str(repo / "scripts" / "scan_generated_genome.py"), "--mb", "0.2",
                           "--regions", "40", "--width", "100", "--refs", "dinuc:2", "--chunk-size", "2"],
                          capture_output=True, text=True, timeout=600, check=False, cwd=str(repo), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "killed + resumed == uninterrupted (profile): True" in proc.stdout
    assert "killed at " in proc.stdout or "finished before the kill point" in proc.stdout
    assert os.listdir(scratch) == []
