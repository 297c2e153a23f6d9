"""SimEnv: runs a recipe's job on this machine with the C++ ``ember simulate``
(FLARE's ``nvflare.recipe.SimEnv``). Python exports the job folder, starts the binary,
streams its output, and reads the workspace it leaves (docs/job-format.md).

    run = recipe.execute(SimEnv(num_clients=2, workspace_root="/tmp/ember/simulation"))

Thread-safety: deploy() blocks until the simulation ends; abort_job() may be called
from another thread meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Dict, List, Optional

from .fedavg import _SITE_RE

_REPO_BINARY = os.path.join("build", "apps", "ember", "ember")


def find_ember_binary() -> str:
    """EMBER_BIN, else ``ember`` on PATH, else the build tree of this source checkout."""
    explicit = os.environ.get("EMBER_BIN")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise FileNotFoundError(f"EMBER_BIN={explicit} is not an executable file")
        return explicit
    on_path = shutil.which("ember")
    if on_path:
        return on_path
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    built = os.path.join(repo, _REPO_BINARY)
    if os.path.isfile(built) and os.access(built, os.X_OK):
        return built
    raise FileNotFoundError("cannot find the ember binary: set EMBER_BIN, put `ember` on "
                            f"PATH, or build it (expected at {built})")


class _SimJob:
    """What SimEnv remembers about one job."""

    def __init__(self, workspace: str):
        self.workspace = workspace
        self.process: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None


class SimEnv:
    """Simulation on this machine: one server and N client sites, all local processes.

    With neither `num_clients` nor `clients`, the recipe's min_clients sites run.
    `clients` names the sites (and fixes their number).
    """

    def __init__(self, *, num_clients: Optional[int] = None, clients: Optional[List[str]] = None,
                 num_threads: Optional[int] = None, gpu_config: Optional[str] = None,
                 log_config: Optional[str] = None,
                 workspace_root: str = "/tmp/ember/simulation", extra: Optional[dict] = None):
        if gpu_config is not None:
            raise NotImplementedError("gpu_config is not supported by Ember's SimEnv; set "
                                      "CUDA_VISIBLE_DEVICES in the training script's environment")
        if log_config is not None:
            raise NotImplementedError("log_config is not supported by Ember's SimEnv; logs go "
                                      "to <workspace>/*/log.txt and the console")
        self.clients = _clients(clients)
        if num_clients is not None and (isinstance(num_clients, bool)
                                        or not isinstance(num_clients, int) or num_clients < 0):
            raise ValueError(f"num_clients must be a non-negative integer, got {num_clients!r}")
        if self.clients and num_clients and num_clients != len(self.clients):
            raise ValueError(f"num_clients={num_clients} but clients names {len(self.clients)} "
                             "sites; give one of them")
        self.num_clients = len(self.clients) if self.clients else (num_clients or None)
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
        self.num_threads = num_threads
        self.workspace_root = os.path.abspath(workspace_root)
        self.extra = extra or {}
        self._jobs: Dict[str, _SimJob] = {}
        self._lock = threading.Lock()

    # -- ExecEnv -----------------------------------------------------------------------

    def deploy(self, recipe) -> str:
        """Exports the job, runs ``ember simulate`` to the end, returns the job id."""
        binary = find_ember_binary()
        n = self.num_clients or recipe.min_clients
        if n < recipe.min_clients:
            raise ValueError(f"SimEnv runs {n} client(s) but the recipe needs "
                             f"min_clients={recipe.min_clients}")
        job = _SimJob(os.path.join(self.workspace_root, recipe.name))
        _forget_old_result(job.workspace)
        with tempfile.TemporaryDirectory(prefix="ember-job-") as tmp:
            job_dir = recipe.export(os.path.join(tmp, recipe.name))
            job.returncode = self._simulate(job, self._command(binary, job_dir, n, job.workspace))
        job_id = str(_read_result(job.workspace).get("job_id") or recipe.name)
        with self._lock:
            self._jobs[job_id] = job
        return job_id

    def get_job_status(self, job_id: str) -> Optional[str]:
        job = self._job(job_id)
        status = _read_result(job.workspace).get("status")
        if status:
            return str(status)
        if job.returncode is None:
            return "running"
        return "failed" if job.returncode != 0 else None

    def get_job_result(self, job_id: str, timeout: Optional[float] = None) -> Optional[str]:
        """The server workspace (global model, metrics, result.json), or None if absent.
        deploy() already waited for the end, so `timeout` has nothing to wait for."""
        server = os.path.join(self._job(job_id).workspace, "server")
        return server if os.path.isdir(server) else None

    def abort_job(self, job_id: str) -> None:
        """Stops the simulation if it is still running; otherwise nothing to do."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None and job.process is not None and job.process.poll() is None:
            _stop(job.process)

    def stop(self, clean_up: bool = False) -> None:
        """Forgets the jobs; with `clean_up`, deletes their workspaces."""
        with self._lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs if clean_up else ():
            shutil.rmtree(job.workspace, ignore_errors=True)

    # -- internals -----------------------------------------------------------------------

    def _command(self, binary: str, job_dir: str, n: int, workspace: str) -> List[str]:
        cmd = [binary, "simulate", job_dir, "-n", str(n)]
        if self.clients:
            cmd += ["-c", ",".join(self.clients)]
        if self.num_threads:
            cmd += ["-t", str(self.num_threads)]
        return cmd + ["-w", workspace]

    def _simulate(self, job: _SimJob, cmd: List[str]) -> int:
        """Runs `cmd`, copying its output to our stdout line by line (so notebooks see
        it too). Ctrl-C stops the simulation before propagating."""
        os.makedirs(job.workspace, exist_ok=True)
        print("ember: " + " ".join(cmd), flush=True)
        job.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=_child_env())
        with self._lock:
            self._jobs[os.path.basename(job.workspace)] = job
        try:
            for line in iter(job.process.stdout.readline, b""):
                sys.stdout.write(line.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            return job.process.wait()
        except BaseException:
            _stop(job.process)
            raise
        finally:
            job.process.stdout.close()

    def _job(self, job_id: str) -> _SimJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"SimEnv has no job {job_id!r}")
        return job


def _child_env() -> Dict[str, str]:
    """The launcher runs scripts with this Python (EMBER_PYTHON) and this copy of the
    ember package (EMBER_PYTHONPATH), so a script sees what job.py saw. Values the
    user set win."""
    env = dict(os.environ)
    env.setdefault("EMBER_PYTHON", sys.executable)
    env.setdefault("EMBER_PYTHONPATH", os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    return env


def _clients(clients: Optional[List[str]]) -> Optional[List[str]]:
    if clients is None:
        return None
    if isinstance(clients, str) or not all(isinstance(c, str) and _SITE_RE.match(c)
                                           for c in clients):
        raise ValueError(f"clients must be a list of site names (letters, digits, '_', '-'), "
                         f"got {clients!r}")
    if len(set(clients)) != len(clients) or not clients:
        raise ValueError(f"clients must be a non-empty list of distinct names, got {clients!r}")
    return list(clients)


def _read_result(workspace: str) -> dict:
    try:
        with open(os.path.join(workspace, "server", "result.json"), encoding="utf-8") as f:
            result = json.load(f)
        return result if isinstance(result, dict) else {}
    except (OSError, ValueError):
        return {}


def _forget_old_result(workspace: str) -> None:
    """A result.json from an earlier run must not be mistaken for this run's."""
    try:
        os.remove(os.path.join(workspace, "server", "result.json"))
    except FileNotFoundError:
        pass


def _stop(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGINT the simulation's process group, then SIGKILL it after `grace_s`."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
