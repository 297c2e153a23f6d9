"""Shared helpers for the end-to-end tests: they run the real `ember` binary with real
training-script subprocesses over loopback sockets."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))


def ember_bin():
    path = os.environ.get("EMBER_BIN") or str(REPO / "build" / "apps" / "ember" / "ember")
    if not os.path.exists(path):
        pytest.fail(f"ember binary not found at {path}: build first (make build)")
    return path


@pytest.fixture
def simulate(tmp_path):
    """Runs `ember simulate` on an exported job; returns (completed process, workspace)."""

    def run(job_dir, n=2, timeout=120, extra=()):
        ws = tmp_path / "ws"
        env = dict(os.environ, EMBER_PYTHON=sys.executable, PYTHONPATH=str(REPO / "python"))
        proc = subprocess.run([ember_bin(), "simulate", str(job_dir), "-n", str(n), "-w", str(ws), *extra],
                              capture_output=True, text=True, timeout=timeout, env=env)
        return proc, ws

    return run


def read_result(ws):
    return json.loads((ws / "server" / "result.json").read_text())


def read_metrics(ws):
    lines = (ws / "server" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(l) for l in lines]
