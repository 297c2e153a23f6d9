"""Large models in bounded memory: FedAvg in simulation with float32 models of 100 MB,
1 GB (2 and 4 clients) and 4 GB (2 clients), 3 rounds, training = add 1 in place.
Samples every process's RSS from /proc every 100 ms: the server (`ember simulate`), the
client job processes (`ember site`) and the training scripts.

Usage: make bench-large-model [CONFIGS=100x2,1000x2,1000x4,4000x2] [ACCUMULATE=F32]
                              [SOAK=1000x2x20]
Ends with one JSON line per configuration; writes bench/out/rss_1000MB_<n>c.png as a plot
of RSS over time for the 1 GB runs. The soak (SOAK=MBxCLIENTSxROUNDS, empty to skip)
compares each process kind's peak RSS in the last quarter of the run with its peak in
the second quarter (after the first rounds have warmed up): `*_rss_growth_MB`.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

from common import REPO, ember_bin, make_job, tempdir

PAGE = os.sysconf("SC_PAGE_SIZE")
INTERVAL = 0.1     # s between RSS samples
TREE_EVERY = 0.5   # s between walks of the process tree


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 1e6
    except OSError:
        return None


def children(pid):
    """Children of every thread of `pid` (a child belongs to the thread that forked it)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return out


def classify(pid):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return None
    return "client_job" if b"site" in cmd[1:2] else "script"


class Sampler(threading.Thread):
    """Samples RSS of the server process and its descendants until stopped."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root, self.stop, self.samples = root, threading.Event(), []

    def run(self):
        # The process tree is walked every TREE_EVERY s, RSS read every INTERVAL s: the
        # sampler's own CPU use (it shares the 2 cores) stays small.
        t0, tree, walked = time.monotonic(), [], -1.0
        while not self.stop.is_set():
            now = time.monotonic() - t0
            if now - walked >= TREE_EVERY or len(tree) < 2:  # until the sites and scripts are up
                tree, walked = self.walk(), now
            row = {"t": now, "server": rss_mb(self.root) or 0.0, "client_job": [], "script": []}
            for pid, kind in tree:
                mb = rss_mb(pid)
                if mb is not None:
                    row[kind].append(mb)
            self.samples.append(row)
            time.sleep(INTERVAL)

    def walk(self):
        """(pid, kind) of every client job and script under the server."""
        out, todo = [], children(self.root)
        while todo:
            pid = todo.pop()
            kind = classify(pid)
            if kind:
                out.append((pid, kind))
            todo.extend(children(pid))
        return out


def run_config(model_mb, clients, rounds=3, accumulate="model"):
    work = pathlib.Path(tempdir(f"ember-large-{model_mb}-"))
    try:
        return measure(work, model_mb, clients, rounds, accumulate)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # a 4 GB run leaves ~8 GB of files


def measure(work, model_mb, clients, rounds, accumulate):
    job = make_job(work, f"large-{model_mb}", model_bytes=model_mb * 1_000_000, rounds=rounds,
                   clients=clients)
    server = json.loads((pathlib.Path(job) / "server.json").read_text())
    server["aggregation_accumulate"] = accumulate
    (pathlib.Path(job) / "server.json").write_text(json.dumps(server))
    env = dict(os.environ, EMBER_PYTHON=sys.executable, PYTHONPATH=str(REPO / "python"))
    os.sync()  # the job's fresh initial model is written back now, not during the run
    t0 = time.monotonic()
    proc = subprocess.Popen([ember_bin(), "simulate", str(job), "-n", str(clients), "-w", str(work / "ws"),
                             "--log-level", "warn"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    _, err = proc.communicate()
    wall = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{model_mb} MB x {clients}: ember simulate failed:\n{err[-3000:]}")
    s = sampler.samples
    peak = lambda key: max((max(r[key]) if isinstance(r[key], list) and r[key] else
                            (r[key] if not isinstance(r[key], list) else 0.0)) for r in s)
    tree = max(r["server"] + sum(r["client_job"]) + sum(r["script"]) for r in s)
    figures = {"model_MB": model_mb, "clients": clients, "rounds": rounds, "wall_s": round(wall, 2),
               "accumulate": accumulate,
               "server_peak_rss_MB": round(peak("server"), 1),
               "client_job_peak_rss_MB": round(peak("client_job"), 1),
               "script_peak_rss_MB": round(peak("script"), 1),
               "tree_peak_rss_MB": round(tree, 1)}
    return figures, s


def plot(samples, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [r["t"] for r in samples]
    plt.figure(figsize=(8, 4))
    plt.plot(t, [r["server"] for r in samples], label="server (ember simulate)")
    plt.plot(t, [max(r["client_job"], default=0) for r in samples], label="client job (max of sites)")
    plt.plot(t, [max(r["script"], default=0) for r in samples], label="training script (max)")
    plt.xlabel("seconds")
    plt.ylabel("RSS (MB)")
    plt.title(title)
    plt.legend()
    plt.tight_layout()
    path.parent.mkdir(exist_ok=True)
    plt.savefig(path)


def growth(samples, key):
    """Peak RSS of `key` in the last quarter of the run minus its peak in the second."""
    n = len(samples)
    if n < 8:
        return 0.0
    peak = lambda rows: max((max(r[key]) if isinstance(r[key], list) else r[key])
                            for r in rows if not isinstance(r[key], list) or r[key])
    return round(peak(samples[3 * n // 4:]) - peak(samples[n // 4:n // 2]), 1)


def soak(spec, accumulate):
    mb, clients, rounds = (int(x) for x in spec.split("x"))
    figures, samples = run_config(mb, clients, rounds=rounds, accumulate=accumulate)
    figures.update({"soak": True,
                    "server_rss_growth_MB": growth(samples, "server"),
                    "client_job_rss_growth_MB": growth(samples, "client_job"),
                    "script_rss_growth_MB": growth(samples, "script")})
    print(f"soak {mb} MB x {clients} clients x {rounds} rounds: wall {figures['wall_s']} s, RSS growth "
          f"server {figures['server_rss_growth_MB']} MB, client job {figures['client_job_rss_growth_MB']} MB, "
          f"script {figures['script_rss_growth_MB']} MB", file=sys.stderr)
    print(json.dumps(figures), flush=True)


def main():
    configs = os.environ.get("CONFIGS", "100x2,1000x2,1000x4,4000x2")
    accumulate = os.environ.get("ACCUMULATE", "model")
    for item in filter(None, configs.split(",")):
        mb, clients = (int(x) for x in item.split("x"))
        figures, samples = run_config(mb, clients, accumulate=accumulate)
        print(f"{mb} MB x {clients} clients: wall {figures['wall_s']} s, server peak "
              f"{figures['server_peak_rss_MB']} MB, client job peak {figures['client_job_peak_rss_MB']} MB, "
              f"script peak {figures['script_peak_rss_MB']} MB, tree peak {figures['tree_peak_rss_MB']} MB",
              file=sys.stderr)
        if mb == 1000:
            plot(samples, f"RSS, {mb} MB model, {clients} clients, 3 rounds",
                 REPO / "bench" / "out" / f"rss_{mb}MB_{clients}c.png")
        print(json.dumps(figures), flush=True)
    spec = os.environ.get("SOAK", "1000x2x20")
    if spec:
        soak(spec, accumulate)


if __name__ == "__main__":
    main()
