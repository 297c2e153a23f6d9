"""Ember's Client API, with the names of ``nvflare.client``: a FLARE training script
changes only its import (``import ember.client as flare``).

    import ember.client as flare
    flare.init()
    while flare.is_running():
        model = flare.receive()
        params = {k: v + 1 for k, v in model.params.items()}
        flare.send(flare.FLModel(params=params, metrics={"accuracy": 0.5},
                                 meta={"NUM_STEPS_CURRENT_ROUND": 10}))

The script must be launched by Ember (``ember simulate``, a recipe's ``execute()`` or an
ember client), which sets EMBER_LINK, EMBER_LINK_TOKEN, EMBER_SITE_NAME, EMBER_JOB_ID,
EMBER_CELL_NAME and optionally EMBER_CLIENT_CONFIG. Params are numpy arrays, or torch
tensors when the job's framework is "pytorch" or the script sends torch tensors.

Thread-safety: one thread runs the receive/send loop; ``log`` may come from others.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .api import ClientAPI
from .model import AnalyticsDataType, FLModel, ParamsType

__all__ = [
    "AnalyticsDataType", "ClientAPI", "FLModel", "ParamsType", "clear", "get_config",
    "get_job_id", "get_site_name", "get_task_name", "init", "is_evaluate", "is_running",
    "is_submit_model", "is_train", "log", "receive", "send", "shutdown", "system_info",
]

# The process-wide API, as FLARE keeps one per script process.
_api = ClientAPI()


def init(rank: Optional[Any] = None) -> None:
    """Connects to the ember client that launched this script (idempotent)."""
    _api.init(rank)


def receive(timeout: Optional[float] = None) -> Optional[FLModel]:
    """The current task's model, or None once the job has ended."""
    return _api.receive(timeout)


def send(model: FLModel, clear_cache: bool = True) -> None:
    """Answers the current task. With `clear_cache` (default) the received and the sent
    FLModel give up their params (set to None) so their memory is freed before the next
    round's model arrives; pass False to keep them."""
    _api.send(model, clear_cache)


def is_running() -> bool:
    """True while the job has tasks (fetches the next task if needed)."""
    return _api.is_running()


def is_train() -> bool:
    return _api.is_train()


def is_evaluate() -> bool:
    return _api.is_evaluate()


def is_submit_model() -> bool:
    return _api.is_submit_model()


def get_task_name() -> Optional[str]:
    return _api.get_task_name()


def system_info() -> Dict[str, str]:
    """{"site_name", "job_id"} of this script."""
    return _api.system_info()


def get_site_name() -> str:
    return _api.get_site_name()


def get_job_id() -> str:
    return _api.get_job_id()


def get_config() -> Dict[str, Any]:
    """The site's client config (EMBER_CLIENT_CONFIG), or {} when none was given."""
    return _api.get_config()


def log(key: str, value: Any, data_type: Any = AnalyticsDataType.SCALAR, **kwargs) -> None:
    """Records a metric with the ember client; `global_step=` sets its step."""
    _api.log(key, value, data_type, **kwargs)


def clear() -> None:
    """Drops models kept by ``send(..., clear_cache=False)``."""
    _api.clear()


def shutdown() -> None:
    _api.shutdown()
