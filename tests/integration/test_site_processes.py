"""`ember simulate` runs each site as its own `ember site` process: a site that dies fails
the job at once naming it, and `-t` limits the tasks out at once across the processes."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import REPO, ember_bin, read_result
from ember.recipe import FedAvgRecipe

MODEL = {"w": np.zeros(4, np.float32)}

# site-N sleeps SLEEP_<N> seconds (default SLEEP) per task, records when it held its task
# in spans.txt, and writes sent-r<round> once its result is handed over.
SCRIPT = """\
import os, time
import ember.client as flare
flare.init()
site = flare.system_info()["site_name"]
sleep = float(os.environ.get("SLEEP_" + site.split("-")[1], os.environ.get("SLEEP", "0")))
while flare.is_running():
    m = flare.receive()
    if m is None:
        break
    start = time.time()
    time.sleep(sleep)
    with open("spans.txt", "a") as f:
        f.write(f"{m.current_round} {start} {time.time()}\\n")
    flare.send(flare.FLModel(params=m.params, metrics={"accuracy": 0.5}))
    open(f"sent-r{m.current_round}", "w").close()
"""


def export(tmp_path, num_rounds, min_clients=2):
    script = tmp_path / "timed.py"
    script.write_text(SCRIPT)
    return FedAvgRecipe(name="procs", min_clients=min_clients, num_rounds=num_rounds, model=MODEL,
                        train_script=str(script)).export(str(tmp_path / "job"))


def start_simulate(job, ws, n, env_extra=None, extra=()):
    env = dict(os.environ, EMBER_PYTHON=sys.executable, PYTHONPATH=str(REPO / "python"), **(env_extra or {}))
    return subprocess.Popen([ember_bin(), "simulate", str(job), "-n", str(n), "-w", str(ws), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def processes_mentioning(text):
    """pid -> argv of every process whose command line mentions `text`."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if any(text in a for a in argv):
            found[int(entry)] = argv
    return found


def site_pid(ws, site):
    for pid, argv in processes_mentioning(str(ws)).items():
        if argv[1:2] == ["site"] and "--name" in argv and argv[argv.index("--name") + 1] == site:
            return pid
    return None


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def finish(proc, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"ember simulate still running after {timeout} s:\n{err[-3000:]}")
    return out, err


def last_line(text):
    return text.strip().splitlines()[-1]


def spans(ws, n_sites):
    out = []
    for k in range(1, n_sites + 1):
        for line in (ws / f"site-{k}" / "spans.txt").read_text().splitlines():
            r, start, end = line.split()
            out.append((float(start), float(end), f"site-{k} round {r}"))
    return sorted(out)


def max_running(intervals):
    events = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals])
    running = peak = 0
    for _, delta in events:  # at equal times an end (-1) sorts before a start (+1)
        running += delta
        peak = max(peak, running)
    return peak


def test_site_help_exits_zero():
    proc = subprocess.run([ember_bin(), "site", "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "--server" in proc.stdout and "--name" in proc.stdout


def test_each_site_is_its_own_process(tmp_path):
    job = export(tmp_path, num_rounds=2)
    ws = tmp_path / "ws"
    proc = start_simulate(job, ws, 2, {"SLEEP": "1"})
    try:
        pids = wait_for(lambda: (site_pid(ws, "site-1"), site_pid(ws, "site-2"))
                        if site_pid(ws, "site-1") and site_pid(ws, "site-2") else None, 20, "site processes")
        assert len({proc.pid, *pids}) == 3
        with open(f"/proc/{pids[0]}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == proc.pid  # parent is simulate
    finally:
        out, err = finish(proc, 60)
    assert proc.returncode == 0, err[-3000:]
    assert "site-1: registered for job" in (ws / "site-1" / "log.txt").read_text()
    assert "[site-2] [info] site-2: registered for job" in err  # the site's lines reach our console


def test_a_site_killed_mid_round_fails_the_job_naming_it(tmp_path):
    job = export(tmp_path, num_rounds=50)
    ws = tmp_path / "ws"
    proc = start_simulate(job, ws, 2, {"SLEEP": "0.5"})
    try:
        wait_for(lambda: (ws / "site-2" / "sent-r0").exists(), 30, "site-2 to finish round 0")
        pid = site_pid(ws, "site-2")
        assert pid, processes_mentioning(str(ws))
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        out, err = finish(proc, 30)
    elapsed = time.monotonic() - killed
    assert proc.returncode == 1, err[-3000:]
    assert elapsed < 10, f"failure took {elapsed:.1f} s to surface"
    assert "site-2" in last_line(err), err[-3000:]
    result = read_result(ws)
    assert result["status"] == "failed" and "site-2" in result["error"]
    # No site process or training script outlives the simulation.
    wait_for(lambda: not processes_mentioning(str(tmp_path)), 5, "leftover processes to exit")


def test_a_site_killed_while_it_owes_nothing_fails_the_job_at_once(tmp_path):
    # site-1 is done with round 0 while site-2 still trains for 30 s: the server is not
    # waiting for site-1, so only the watch on its process can notice it died.
    job = export(tmp_path, num_rounds=3)
    ws = tmp_path / "ws"
    proc = start_simulate(job, ws, 2, {"SLEEP_2": "30"})
    try:
        wait_for(lambda: (ws / "site-1" / "sent-r0").exists(), 30, "site-1 to finish round 0")
        time.sleep(0.5)  # its result reaches the server
        os.kill(site_pid(ws, "site-1"), signal.SIGKILL)
        killed = time.monotonic()
    finally:
        out, err = finish(proc, 40)
    elapsed = time.monotonic() - killed
    assert proc.returncode == 1, err[-3000:]
    assert elapsed < 10, f"failure took {elapsed:.1f} s to surface"
    line = last_line(err)
    assert "site-1" in line and "killed by signal 9" in line, err[-3000:]
    wait_for(lambda: not processes_mentioning(str(tmp_path)), 5, "leftover processes to exit")


def test_threads_limit_holds_across_site_processes(tmp_path):
    job = export(tmp_path, num_rounds=2, min_clients=3)
    ws = tmp_path / "ws"
    proc = start_simulate(job, ws, 3, {"SLEEP": "0.3"}, extra=("-t", "1"))
    out, err = finish(proc, 120)
    assert proc.returncode == 0, err[-3000:]
    assert read_result(ws)["rounds_completed"] == 2
    intervals = spans(ws, 3)
    assert len(intervals) == 6
    for (s0, e0, a), (s1, e1, b) in zip(intervals, intervals[1:]):
        assert s1 >= e0, f"{b} started before {a} ended"
    assert "at most 1 task(s) run at once" in (ws / "server" / "log.txt").read_text()


def test_threads_limit_of_two_runs_two_at_a_time(tmp_path):
    job = export(tmp_path, num_rounds=2, min_clients=3)
    ws = tmp_path / "ws"
    proc = start_simulate(job, ws, 3, {"SLEEP": "1"}, extra=("-t", "2"))
    out, err = finish(proc, 120)
    assert proc.returncode == 0, err[-3000:]
    intervals = spans(ws, 3)
    assert len(intervals) == 6
    # Never three at once; and the limit is a limit, not a serialization.
    assert max_running(intervals) == 2, intervals
