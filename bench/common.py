"""Shared pieces of the benchmarks: building jobs, running `ember simulate`, and the
reference limits measured in the same run (loopback TCP, memcpy)."""
import atexit
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

from ember.recipe import FedAvgRecipe  # noqa: E402

NOOP_SCRIPT = '''
import ember.client as flare
flare.init()
while flare.is_running():
    m = flare.receive()
    if m is None:
        break
    params = m.params
    for k in params:
        params[k] += 1.0  # "training": in place, no copy
    flare.send(flare.FLModel(params=params, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
    del m, params         # send() released the tensors; hold none while the next arrives
'''


def ember_bin():
    return os.environ.get("EMBER_BIN") or str(REPO / "build" / "apps" / "ember" / "ember")


def make_job(workdir, name, model_bytes, rounds, clients):
    workdir = pathlib.Path(workdir)
    script = workdir / "noop_client.py"
    script.write_text(NOOP_SCRIPT)
    n = max(1, model_bytes // 4)
    model = {"w": np.zeros(n, np.float32)}
    recipe = FedAvgRecipe(name=name, min_clients=clients, num_rounds=rounds, model=model,
                          train_script=str(script))
    return recipe.export(str(workdir / "job"))


def run_simulate(job, clients, workspace):
    env = dict(os.environ, EMBER_PYTHON=sys.executable, PYTHONPATH=str(REPO / "python"))
    t0 = time.monotonic()
    proc = subprocess.run([ember_bin(), "simulate", str(job), "-n", str(clients), "-w", str(workspace),
                           "--log-level", "warn"], capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"ember simulate failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rounds = [json.loads(l) for l in (pathlib.Path(workspace) / "server" / "metrics.jsonl").read_text().splitlines()]
    return wall, rounds


def loopback_rtt_ms(samples=2000):
    """Median round trip of a 64-byte request/reply over a plain loopback TCP socket."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def echo():
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(64)
            if not d:
                return
            c.sendall(d)

    threading.Thread(target=echo, daemon=True).start()
    cli = socket.create_connection(srv.getsockname())
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        cli.sendall(b"x" * 64)
        got = 0
        while got < 64:
            got += len(cli.recv(64 - got))
        times.append(time.perf_counter() - t)
    cli.close()
    return float(np.median(times) * 1000)


def loopback_MBps(total=1 << 30, chunk=1 << 20):
    """Throughput of a plain loopback TCP socket pair moving `total` bytes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    buf = bytearray(chunk)

    def sink():
        view = bytearray(chunk)
        left = total
        while left:
            left -= b.recv_into(view, min(chunk, left))

    t = threading.Thread(target=sink)
    t0 = time.perf_counter()
    t.start()
    left = total
    while left:
        n = min(chunk, left)
        a.sendall(memoryview(buf)[:n])
        left -= n
    t.join()
    dt = time.perf_counter() - t0
    a.close()
    b.close()
    return total / dt / 1e6


def memcpy_MBps(size=256 << 20):
    src = np.ones(size, np.uint8)
    dst = np.empty_like(src)
    t0 = time.perf_counter()
    for _ in range(4):
        np.copyto(dst, src)
    return 4 * size / (time.perf_counter() - t0) / 1e6


def tempdir(prefix):
    """A fresh folder under $TMPDIR, removed when the benchmark exits (models are GBs)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
