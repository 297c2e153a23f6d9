"""The Client API state machine behind ``ember.client``'s functions.

A training script is a leaf cell ``<site>.<job_id>`` under the ember client ``<site>``
that launched it, talking over one ``Link`` (docs/wire-format.md §6): tasks come from
that parent (``link.get_task``); the task's model is fetched from the server
(``fl.get_model``) and the result sent to it (``fl.submit_result``) through the parent,
which relays both as they stream; ``link.submit`` then tells the parent the task is done.

    api = ClientAPI()            # reads EMBER_* from the environment
    while api.is_running():      # fetches the next task, False after "end"
        model = api.receive()
        api.send(FLModel(params=train(model.params), metrics={"accuracy": 0.9}))

Thread-safety: receive/send/is_running belong to one thread (the script's loop);
``log`` may be called from other threads.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import json
import math
import numbers
import os
import sys
import weakref
from typing import Any, Dict, Mapping, Optional

import numpy as np

from .. import _safetensors as st
from .. import _wire
from .model import AnalyticsDataType, FLModel, ParamsType

TRAIN_TASK = "train"
EVALUATE_TASK = "validate"
SUBMIT_MODEL_TASK = "submit_model"
END_TASK = "end"
_SERVER = "server"  # the FL server's cell name

_NOT_LAUNCHED = ("{var} is not set: ember.client talks to the ember client that launched "
                 "this script, so the script must be started by ember (`ember simulate "
                 "JOB_DIR`, a recipe's execute(), or an ember client), not run directly")


class ClientAPI:
    """One script's view of its job: the link, the current task and the config."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None):
        self._env = os.environ if environ is None else environ
        self._initialized = False
        self._rank = "0"
        self._link: Optional[_wire.Link] = None
        self._config: Optional[Dict[str, Any]] = None
        self._task: Dict[str, Any] = {}          # h of the current task
        self._model: Optional[FLModel] = None    # received, not yet answered
        self._kept: tuple = ()                   # received/sent models when clear_cache=False
        self._last: Dict[str, Any] = {}          # weakrefs to the received model's arrays
        self._pool: Dict[str, np.ndarray] = {}   # received arrays after send(), to reuse
        self._ended = False
        self._sent_torch = False
        self._sends = 0

    # -- set-up ------------------------------------------------------------------------

    def init(self, rank: Optional[Any] = None) -> None:
        """Connects to the parent cell. Only rank 0 talks to Ember (as in FLARE); other
        ranks of a multi-process script get an API whose exchange calls raise."""
        if self._initialized:
            return
        self._rank = str(rank if rank is not None else self._env.get("RANK", "0"))
        address = self._require_env("EMBER_LINK")
        site, cell = self._require_env("EMBER_SITE_NAME"), self._require_env("EMBER_CELL_NAME")
        self._require_env("EMBER_JOB_ID")
        _wire.check_fqcn(site, "EMBER_SITE_NAME")
        if self._rank == "0":
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise RuntimeError(f"EMBER_LINK={address!r} must be HOST:PORT")
            self._link = _wire.Link.connect(host, int(port), cell,
                                            token=self._env.get("EMBER_LINK_TOKEN") or None)
        self._initialized = True

    def _require_env(self, var: str) -> str:
        value = self._env.get(var)
        if not value:
            raise RuntimeError(_NOT_LAUNCHED.format(var=var))
        return value

    def _ready(self, what: str) -> None:
        """Initialises on first use and enforces rank 0 for exchange calls."""
        self.init()
        if self._rank != "0":
            raise RuntimeError(f"only rank 0 can call {what}() (this is rank {self._rank})")

    # -- task exchange -----------------------------------------------------------------

    def receive(self, timeout: Optional[float] = None) -> Optional[FLModel]:
        """The current task's model; fetches the next task if the last one was answered.
        Returns None when the job has ended (or `timeout` passed without a task)."""
        self._ready("receive")
        if self._ended:
            return None
        if self._model is not None:
            return self._model
        try:
            if self._link.pending:  # an earlier receive(timeout) gave up waiting
                head, body = self._link.wait_reply(timeout)
            else:
                head, body = self._link.request(self.get_site_name(), "link.get_task", {},
                                                timeout=timeout)
        except _wire.LinkTimeout:
            return None  # still pending: the next receive() picks the task up
        except _wire.LinkClosed as e:
            print(f"ember.client: link to the ember client closed ({e}); ending", file=sys.stderr)
            self._end()
            return None
        _check(head, "link.get_task")
        h = head.get("h") or {}
        if h.get("task_name") == END_TASK:
            self._end()
            return None
        self._task = h
        self._model = self._task_model(h, self._fetch_model(h))
        return self._model

    def _fetch_model(self, h: dict) -> Optional[Dict[str, Any]]:
        """The task's global model from the server (``fl.get_model``) as name -> array
        (or torch tensor), or None. The reply streams from the socket straight into one
        array per tensor (st.TensorSink): no whole-model buffer, each tensor owns its
        memory."""
        if not h.get("model_size"):
            return None
        try:
            sink = st.TensorSink(to_torch=self._use_torch(), recycle=self._take_unshared_pool())
        except ImportError as e:
            raise RuntimeError(f"the job's framework is 'pytorch' but {sys.executable} "
                               f"cannot import torch: {e}") from e
        what = f"fl.get_model of task '{h.get('task_id')}' (round {h.get('current_round')})"
        try:
            head, body = self._link.request(
                _SERVER, "fl.get_model",
                {"site": self.get_site_name(), "task_id": h.get("task_id", "")}, sink=sink)
        except st.SafetensorsError as e:
            raise st.SafetensorsError(f"ember.client: {what}: bad model: {e}") from e
        _check(head, what)
        # Weak until send(): a tensor the script drops while training is freed at once.
        self._last = {name: weakref.ref(a) for name, a in sink.arrays.items()}
        return body[0] if body else None  # an ok reply without a body: no params

    def _take_unshared_pool(self) -> Dict[str, np.ndarray]:
        """Last model's arrays that only the pool still references: the script let go
        of them (``send`` with clear_cache), so the next model may land in them."""
        pool, self._pool = self._pool, {}
        # getrefcount sees the dict's reference and its own argument: 2 = nobody else.
        return {name: pool[name] for name in list(pool) if sys.getrefcount(pool[name]) == 2}

    def _task_model(self, h: dict, params: Optional[Dict[str, Any]]) -> FLModel:
        return FLModel(params=params, start_round=h.get("start_round", 0),
                       current_round=h.get("current_round"),
                       total_rounds=h.get("total_rounds"), meta=dict(h.get("meta") or {}))

    def send(self, model: FLModel, clear_cache: bool = True) -> None:
        """Answers the current task with `model`: streams it to the server
        (``fl.submit_result``), then tells the parent (``link.submit``).

        With ``clear_cache=True`` (the default) the received and the sent FLModel give up
        their params (``params`` becomes None), so the next round's model does not
        arrive while this one is still held; pass False to keep them."""
        self._ready("send")
        if not isinstance(model, FLModel):
            raise TypeError(f"send() takes an FLModel, got {type(model).__name__}")
        if self._model is None:
            raise RuntimeError("send() answers a task: call receive() first "
                               "(each task takes exactly one send())")
        params = model.params if model.params is not None else {}
        if not isinstance(params, Mapping):
            raise TypeError(f"FLModel.params must be a dict of name -> tensor, "
                            f"got {type(params).__name__}")
        self._sent_torch = self._sent_torch or any(st.is_torch_tensor(v) for v in params.values())
        transfer = self._as_transfer_type(model)
        header, views = st.encode(transfer.params if transfer.params is not None else {})
        result = self._result_header(transfer)
        what = f"task '{self.get_task_name()}' (round {self._task.get('current_round')})"
        head, _ = self._link.request(_SERVER, "fl.submit_result",
                                     dict(result, site=self.get_site_name()), [header, *views])
        _check(head, f"fl.submit_result of {what}")
        del header, views
        head, _ = self._link.request(self.get_site_name(), "link.submit", result)
        _check(head, f"link.submit of {what}")
        del transfer
        self._after_send(model, clear_cache)

    def _result_header(self, model: FLModel) -> dict:
        """The result header of docs/wire-format.md §7."""
        current = model.current_round
        return {
            "task_name": self._task.get("task_name", ""),
            "task_id": self._task.get("task_id", ""),
            "current_round": self._task.get("current_round") if current is None else current,
            "params_type": (model.params_type or ParamsType.FULL).value,
            "metrics": _metrics_json(model.metrics or {}),
            "meta": _to_json(model.meta or {}, "meta"),
        }

    def _as_transfer_type(self, model: FLModel) -> FLModel:
        """Turns FULL params into DIFF against the received params when the job asks
        for DIFF (task params_type or config params_transfer_type), as FLARE does."""
        wanted = self._task.get("params_type") or self.get_config().get("params_transfer_type")
        if wanted != ParamsType.DIFF.value or model.params is None \
                or model.params_type == ParamsType.DIFF:
            return model
        received = self._model.params if self._model else None
        if not received:
            raise RuntimeError("the job wants DIFF params but the task carried no model "
                               "to subtract; send params_type=DIFF yourself")
        diff = copy.copy(model)
        diff.params = {k: _subtract(k, v, received) for k, v in model.params.items()}
        diff.params_type = ParamsType.DIFF
        return diff

    def _after_send(self, sent: FLModel, clear_cache: bool) -> None:
        if clear_cache:
            for m in (self._model, sent):
                if m is not None:
                    m.params = None
            # The received arrays still alive wait here for the next model to land in
            # them, unless the script still uses them then (see _take_unshared_pool).
            self._pool = {name: a for name, a in ((n, r()) for n, r in self._last.items()) if a is not None}
        self._last = {}
        self._kept = () if clear_cache else (self._model, sent)
        self._model = None
        self._sends += 1
        self._release_memory()

    def _release_memory(self) -> None:
        """client_memory_gc_rounds / cuda_empty_cache from the job's client config."""
        every = int(self.get_config().get("client_memory_gc_rounds") or 0)
        if every > 0 and self._sends % every == 0:
            gc.collect()
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except (OSError, AttributeError):
                pass  # not glibc: gc.collect() is all we can do
        torch = sys.modules.get("torch")
        if self.get_config().get("cuda_empty_cache") and torch is not None \
                and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _use_torch(self) -> bool:
        return self.get_config().get("framework") == "pytorch" or self._sent_torch

    def _end(self) -> None:
        self._ended = True
        self._model = None
        self._kept = ()
        self._pool = {}

    # -- state queries -------------------------------------------------------------------

    def is_running(self) -> bool:
        """True while the job has tasks. Like FLARE, this fetches the next task (which
        receive() then returns), so ``while is_running()`` ends cleanly."""
        self._ready("is_running")
        if not self._ended and self._model is None:
            self.receive()
        return not self._ended

    def is_train(self) -> bool:
        return self._task_is(TRAIN_TASK, "is_train")

    def is_evaluate(self) -> bool:
        return self._task_is(EVALUATE_TASK, "is_evaluate")

    def is_submit_model(self) -> bool:
        return self._task_is(SUBMIT_MODEL_TASK, "is_submit_model")

    def _task_is(self, name: str, caller: str) -> bool:
        self._ready(caller)
        return not self._ended and self._task.get("task_name") == name

    def get_task_name(self) -> Optional[str]:
        return self._task.get("task_name")

    def system_info(self) -> Dict[str, str]:
        return {"site_name": self.get_site_name(), "job_id": self.get_job_id()}

    def get_site_name(self) -> str:
        return self._require_env("EMBER_SITE_NAME")

    def get_job_id(self) -> str:
        return self._require_env("EMBER_JOB_ID")

    def get_config(self) -> Dict[str, Any]:
        """The JSON file named by EMBER_CLIENT_CONFIG (the site's client config), or {}."""
        if self._config is None:
            self._config = _load_config(self._env.get("EMBER_CLIENT_CONFIG"))
        return self._config

    # -- logging and shutdown ------------------------------------------------------------

    def log(self, key: str, value: Any, data_type: Any = AnalyticsDataType.SCALAR,
            **kwargs) -> None:
        """Sends a value to the ember client (fire ``link.log``); never waits."""
        self._ready("log")
        h = _log_header(key, value, data_type, kwargs)
        try:
            self._link.fire(self.get_site_name(), "link.log", h)
        except _wire.LinkClosed:
            if not self._ended:
                raise
            # After the job's end the ember client may be gone; a final log line
            # must not crash a script that finished its work.
            print(f"ember.client: job ended, log '{key}' dropped", file=sys.stderr)

    def clear(self) -> None:
        """Drops the models kept by ``send(..., clear_cache=False)``. The current
        task's model stays until it is answered: the parent is waiting for that."""
        self._kept = ()
        self._pool = {}

    def shutdown(self) -> None:
        """Closes the link; later calls behave as after the job's end."""
        self._end()
        if self._link is not None:
            self._link.close()


# --- helpers -----------------------------------------------------------------------------

def _check(head: dict, what: str) -> None:
    try:
        _wire.check_reply(head, what)
    except _wire.RemoteError as e:
        raise RuntimeError(f"ember.client: {e}") from e


def _load_config(path: Optional[str]) -> Dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise RuntimeError(f"cannot read the client config EMBER_CLIENT_CONFIG={path}: {e}") from e
    if not isinstance(config, dict):
        raise RuntimeError(f"client config {path} must hold a JSON object")
    return config


def _subtract(name: str, new: Any, received: Mapping[str, Any]) -> Any:
    if name not in received:
        raise RuntimeError(f"cannot send DIFF: tensor '{name}' was not in the received model")
    old = received[name]
    try:
        if st.is_torch_tensor(new) or st.is_torch_tensor(old):
            import torch
            return torch.as_tensor(new).detach().cpu() - torch.as_tensor(old).detach().cpu()
        return np.asarray(new) - np.asarray(old)
    except (TypeError, ValueError, RuntimeError) as e:
        raise RuntimeError(f"cannot send DIFF: tensor '{name}': {e}") from e


def _number(value: Any, what: str):
    """A JSON number from Python, numpy or torch scalars; bools become 0/1."""
    if not isinstance(value, (int, float)) and hasattr(value, "item"):
        try:
            value = value.item()  # numpy scalar, 0-dim array, 1-element torch tensor
        except (ValueError, RuntimeError):
            raise TypeError(f"{what} must be a single number, got a "
                            f"{type(value).__name__} with several elements") from None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{what} is {value}, which JSON cannot carry")
        return value
    raise TypeError(f"{what} must be a number, got {type(value).__name__}")


def _metrics_json(metrics: Mapping) -> Dict[str, Any]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"FLModel.metrics must be a dict, got {type(metrics).__name__}")
    return {str(k): _number(v, f"metric '{k}'") for k, v in metrics.items()}


def _to_json(value: Any, what: str) -> Any:
    """Makes meta JSON-safe (numpy scalars/arrays become numbers/lists)."""
    if isinstance(value, Mapping):
        return {str(k): _to_json(v, f"{what}['{k}']") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return _to_json(value.tolist(), what)
    return _number(value, what)


_LOG_KINDS = {AnalyticsDataType.SCALAR: "scalar", AnalyticsDataType.METRIC: "scalar",
              AnalyticsDataType.SCALARS: "scalars", AnalyticsDataType.METRICS: "scalars"}


def _log_header(key: str, value: Any, data_type: Any, kwargs: dict) -> dict:
    """The ``link.log`` header: a scalar/scalars record or a text line (§6)."""
    try:
        data_type = AnalyticsDataType(getattr(data_type, "value", data_type))
    except ValueError:
        raise ValueError(f"log(): unknown data_type {data_type!r}") from None
    step = kwargs.get("global_step", kwargs.get("step"))
    step = None if step is None else _number(step, "log() global_step")
    if data_type == AnalyticsDataType.TEXT:
        return {"level": str(kwargs.get("level", "info")), "msg": f"{key}: {value}"}
    kind = _LOG_KINDS.get(data_type)
    if kind is None:
        raise ValueError(f"log(): data_type {data_type.value} is not supported by ember "
                         "(use SCALAR, SCALARS, METRIC, METRICS or TEXT)")
    if kind == "scalars":
        if not isinstance(value, Mapping):
            raise TypeError(f"log('{key}'): {data_type.value} needs a dict of name -> number")
        value = {str(k): _number(v, f"log('{key}')['{k}']") for k, v in value.items()}
    else:
        value = _number(value, f"log('{key}') value")
    return {"tag": str(key), "value": value, "step": step, "kind": kind}
