"""Run: a handle on one job executed by an execution environment (FLARE's
``nvflare.recipe.Run``).

    run = recipe.execute(SimEnv(num_clients=2))
    print(run.get_status(), run.get_result())

Thread-safety: methods delegate to the environment, which guards its own state.
"""

from __future__ import annotations

from typing import Optional


class Run:
    """Job id plus the environment that knows its status and results."""

    def __init__(self, exec_env, job_id: str):
        if exec_env is None:
            raise ValueError("Run needs the execution environment that ran the job")
        if not job_id:
            raise ValueError("Run needs a job id")
        self._env = exec_env
        self._job_id = job_id

    def get_job_id(self) -> str:
        return self._job_id

    def get_status(self) -> Optional[str]:
        """"completed", "failed", "stopped_early", "running", or None if unknown."""
        return self._env.get_job_status(self._job_id)

    def get_result(self, timeout: Optional[float] = None) -> Optional[str]:
        """The folder with the global model (the server's workspace), or None."""
        return self._env.get_job_result(self._job_id, timeout)

    def abort(self) -> None:
        self._env.abort_job(self._job_id)

    def __repr__(self) -> str:
        return f"Run(job_id={self._job_id!r})"
