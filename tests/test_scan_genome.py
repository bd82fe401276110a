"""The genome-scale script, at a small scale: generated genome, SIGKILL, resume, bytes equal."""

import os
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
