"""The site process passes the model through: with a 256 MB model its RSS stays far
below the model (it used to hold the task and the result whole), and the round's average
is still exact. A real `ember simulate` run; RSS is read from /proc while it runs."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import REPO, ember_bin, read_metrics, read_result
from ember import _safetensors as st
from ember.recipe import FedAvgRecipe

SCRIPT = '''
import ember.client as flare
flare.init()
site = int(flare.get_site_name().split("-")[1])
while flare.is_running():
    m = flare.receive()
    params = m.params
    for k in params:
        params[k] += site          # in place
    flare.send(flare.FLModel(params=params, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
    del m, params
'''
MODEL_MB = 256
PAGE = os.sysconf("SC_PAGE_SIZE")


def site_pids(root):
    """`ember site` processes under `root` (children of any of its threads)."""
    out = []
    for tid in os.listdir(f"/proc/{root}/task"):
        try:
            with open(f"/proc/{root}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            pass
    sites = []
    for pid in out:
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"site" in cmd[1:2]:
            sites.append(pid)
    return sites


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except OSError:
        return 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_a_site_never_holds_the_model(tmp_path):
    script = tmp_path / "client.py"
    script.write_text(SCRIPT)
    model = {"w": (np.arange(MODEL_MB << 18) % 1000).astype(np.float32) * 0.5}  # MODEL_MB MiB, exact in F32
    job = FedAvgRecipe(name="big", min_clients=2, num_rounds=2, model=model,
                       train_script=str(script)).export(str(tmp_path / "job"))
    ws = tmp_path / "ws"
    env = dict(os.environ, EMBER_PYTHON=sys.executable, PYTHONPATH=str(REPO / "python"))
    proc = subprocess.Popen([ember_bin(), "simulate", job, "-n", "2", "-w", str(ws), "--log-level", "warn"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            for pid in site_pids(proc.pid):
                peak[0] = max(peak[0], rss_mb(pid))
            done.wait(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate(timeout=300)
    done.set()
    sampler.join()
    assert proc.returncode == 0, err[-3000:]
    assert read_result(ws)["status"] == "completed"
    assert [len(r["sites"]) for r in read_metrics(ws)] == [2, 2]
    # Each round adds the mean of (1, 2) = 1.5 to every element.
    w = st.load_file(str(ws / "server" / "FL_global_model.safetensors"))["w"]
    np.testing.assert_array_equal(w, model["w"] + np.float32(3.0))
    print(f"site peak RSS {peak[0]:.1f} MiB, model {MODEL_MB} MiB")
    # Two relayed transfers at most at once, one flow-control window each, plus the
    # process itself: far below one model (the site used to hold two).
    assert 0 < peak[0] < MODEL_MB / 2, f"site peak RSS {peak[0]:.1f} MiB with a {MODEL_MB} MiB model"
