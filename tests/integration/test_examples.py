"""The examples as users run them: `python3 job.py`, checking that accuracy rises."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, ember_bin


def run_example(name, tmp_path, *args, timeout=300):
    env = dict(os.environ, EMBER_BIN=ember_bin(), PYTHONPATH=str(REPO / "python"))
    proc = subprocess.run([sys.executable, "job.py", "--workspace", str(tmp_path), *args],
                          cwd=REPO / "examples" / name, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    metrics_file = next(tmp_path.glob("*/server/metrics.jsonl"))
    return [json.loads(line)["metrics"] for line in metrics_file.read_text().splitlines()]


def test_hello_numpy_accuracy_rises(tmp_path):
    rounds = run_example("hello-numpy", tmp_path)
    acc = [m["accuracy"] for m in rounds]
    assert len(acc) == 5
    assert acc[-1] > acc[0] + 0.5 and acc[-1] > 0.85, acc


def test_hello_cpp_trains_through_the_cpp_client_api(tmp_path):
    # job.py finds hello_cpp_client in the build tree of EMBER_BIN.
    rounds = run_example("hello-cpp", tmp_path)
    acc = [m["accuracy"] for m in rounds]
    loss = [m["loss"] for m in rounds]
    assert acc[-1] > acc[0] and acc[-1] > 0.9, acc
    assert loss[-1] < loss[0], loss


def test_hello_pt_accuracy_rises(tmp_path):
    pytest.importorskip("torch")
    rounds = run_example("hello-pt", tmp_path, "--num_rounds", "3", timeout=600)
    acc = [m["accuracy"] for m in rounds]
    assert acc[-1] > acc[0] + 0.3, acc
