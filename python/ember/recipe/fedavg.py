"""FedAvgRecipe: FLARE's recipe signature, producing an Ember job folder
(docs/job-format.md). Python only validates and writes files; the C++ runtime runs
the workflow.

    recipe = FedAvgRecipe(name="hello-numpy", model={"w": np.zeros(3)}, min_clients=2,
                          num_rounds=3, train_script="client.py")
    recipe.export("/tmp/jobs/hello-numpy")      # or: run = recipe.execute(SimEnv())

Thread-safety: a recipe is a value built once; do not mutate it while exporting.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import shutil
import sys
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from .. import _safetensors as st

JOB_FORMAT = "ember-job-1"
INITIAL_MODEL = "model/initial.safetensors"
CUSTOM_DIR = "custom"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_SITE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_STOP_COND_RE = re.compile(r"^\s*(\S+?)\s*(>=|<=|==|>|<)\s*(\S+)\s*$")
# FLARE's conventional key when a NumPy model is a single array.
NUMPY_KEY = "numpy_key"


class FrameworkType(str, enum.Enum):
    """FLARE's framework names; Ember runs PYTORCH and NUMPY scripts."""
    PYTORCH = "pytorch"
    NUMPY = "numpy"
    TENSORFLOW = "tensorflow"
    RAW = "raw"


class TransferType(str, enum.Enum):
    """What clients send back: the whole model or its change."""
    FULL = "FULL"
    DIFF = "DIFF"


_SUPPORTED_FRAMEWORKS = ("numpy", "pytorch")
_ACCUMULATE = ("model", "F32", "F64")  # server.json aggregation_accumulate (docs/job-format.md)
# client.json keys a site may override, and FLARE's per-site keys Ember has no use for.
_SITE_KEYS = ("train_script", "train_args", "command", "launch_once", "shutdown_timeout",
              "framework", "client_memory_gc_rounds", "init_timeout")
_SITE_KEYS_IGNORED = ("launch_external_process", "server_expected_format")


class FedAvgRecipe:
    """Federated averaging over `min_clients` sites for `num_rounds` rounds.

    Parameters mirror ``nvflare.recipe.FedAvgRecipe``. `model` is a dict of numpy
    arrays / torch tensors, a torch ``nn.Module`` (its state_dict), or a list / array
    (stored as "numpy_key" as FLARE's NumPy recipe does); `initial_ckpt` is a
    .safetensors file. Options Ember cannot honour raise NotImplementedError naming
    the option. Ember always runs the script as a subprocess, so
    `launch_external_process` is accepted either way.
    """

    def __init__(self, *, name: str = "fedavg", model: Any = None,
                 initial_ckpt: Optional[str] = None, min_clients: int, num_rounds: int = 2,
                 train_script: str, train_args: str = "", aggregator: Any = None,
                 aggregator_data_kind: Any = None, launch_external_process: bool = False,
                 command: str = "python3 -u", framework: Any = None,
                 server_expected_format: Any = None, params_transfer_type: Any = "FULL",
                 model_persistor: Any = None,
                 per_site_config: Optional[Dict[str, Dict]] = None, launch_once: bool = True,
                 shutdown_timeout: float = 0.0, key_metric: str = "accuracy",
                 stop_cond: Optional[str] = None, patience: Optional[int] = None,
                 best_model_filename: Optional[str] = None,
                 save_filename: Optional[str] = "FL_global_model.safetensors",
                 exclude_vars: Optional[str] = None,
                 aggregation_weights: Optional[Dict[str, float]] = None,
                 server_memory_gc_rounds: int = 0, enable_tensor_disk_offload: bool = False,
                 client_memory_gc_rounds: int = 0, cuda_empty_cache: bool = False,
                 aggregation_accumulate: str = "model"):
        _unsupported("aggregator", aggregator,
                     "Ember aggregates in C++ (weighted FedAvg, see exclude_vars and "
                     "aggregation_weights)")
        _unsupported("model_persistor", model_persistor,
                     "pass model= or initial_ckpt= (a .safetensors file)")
        _unsupported("enable_tensor_disk_offload", enable_tensor_disk_offload,
                     "the C++ server already streams results into the running average")
        _choice("aggregator_data_kind", aggregator_data_kind, (None, "WEIGHTS", "WEIGHT_DIFF"))
        fmt = _value(server_expected_format)
        if fmt not in (None, "numpy", "pytorch"):
            raise NotImplementedError(f"server_expected_format={fmt!r}: Ember always exchanges "
                                      "safetensors; use None, 'numpy' or 'pytorch'")
        self.name = _job_name(name)
        self.min_clients = _int("min_clients", min_clients, 1)
        self.num_rounds = _int("num_rounds", num_rounds, 1)
        self.params, self.initial_ckpt = _initial_model(model, initial_ckpt)
        self.framework = _framework(framework, model)
        self.train_script = _script("train_script", train_script)
        self.train_args = _str("train_args", train_args)
        self.command = _str("command", command)  # "" runs train_script itself (a binary)
        self.launch_external_process = bool(launch_external_process)
        self.launch_once = _bool("launch_once", launch_once)
        self.shutdown_timeout = _float("shutdown_timeout", shutdown_timeout, 0.0)
        self.params_transfer_type = _choice("params_transfer_type", params_transfer_type,
                                            ("FULL", "DIFF"))
        self.per_site_config = _per_site_config(per_site_config)
        self.key_metric = _nonempty("key_metric", key_metric)
        self.stop_cond = _stop_cond(stop_cond)
        self.patience = None if patience is None else _int("patience", patience, 1)
        self.save_filename = _filename("save_filename", save_filename or "FL_global_model.safetensors")
        self.best_model_filename = _filename(
            "best_model_filename", best_model_filename or "best_FL_global_model.safetensors")
        self.exclude_vars = _regex("exclude_vars", exclude_vars)
        self.aggregation_weights = _weights(aggregation_weights)
        self.server_memory_gc_rounds = _int("server_memory_gc_rounds", server_memory_gc_rounds, 0)
        if not isinstance(aggregation_accumulate, str) or aggregation_accumulate not in _ACCUMULATE:
            raise ValueError("aggregation_accumulate must be one of "
                             f"{', '.join(repr(a) for a in _ACCUMULATE)}, got {aggregation_accumulate!r}")
        # Ember's own: the round sum's float type. "model" sums each tensor in its own
        # precision (F32 for float32/16/bfloat16, F64 for float64), as FLARE's numpy sums do.
        self.aggregation_accumulate = aggregation_accumulate
        self.client_memory_gc_rounds = _int("client_memory_gc_rounds", client_memory_gc_rounds, 0)
        self.cuda_empty_cache = _bool("cuda_empty_cache", cuda_empty_cache)
        self.tracking: Optional[Dict[str, Any]] = None  # set by add_experiment_tracking

    # -- the job folder ------------------------------------------------------------------

    def server_config(self) -> Dict[str, Any]:
        """server.json (docs/job-format.md)."""
        return {
            "workflow": "fedavg",
            "min_clients": self.min_clients,
            "num_rounds": self.num_rounds,
            "key_metric": self.key_metric,
            "stop_cond": self.stop_cond,
            "patience": self.patience,
            "exclude_vars": self.exclude_vars,
            "aggregation_weights": self.aggregation_weights,
            "params_transfer_type": self.params_transfer_type,
            "save_filename": self.save_filename,
            "best_filename": self.best_model_filename,
            "initial_model": INITIAL_MODEL,
            "task_timeout_s": 0,
            "server_memory_gc_rounds": self.server_memory_gc_rounds,
            "aggregation_accumulate": self.aggregation_accumulate,
        }

    def client_config(self) -> Dict[str, Any]:
        """client.json (docs/job-format.md); script paths become paths inside custom/."""
        config = {
            "executor": "launcher",
            "train_script": os.path.basename(self.train_script),
            "train_args": self.train_args,
            "command": self.command,
            "launch_once": self.launch_once,
            "shutdown_timeout": self.shutdown_timeout,
            "framework": self.framework,
            "client_memory_gc_rounds": self.client_memory_gc_rounds,
            "per_site_config": {
                site: {k: (os.path.basename(v) if k == "train_script" else v)
                       for k, v in overrides.items()}
                for site, overrides in self.per_site_config.items()},
        }
        # Read by the Python Client API only; written when set so the defaults stay exact.
        if self.cuda_empty_cache:
            config["cuda_empty_cache"] = True
        if self.tracking:
            config["tracking"] = self.tracking
        return config

    def export(self, job_dir: str) -> str:
        """Writes the job folder at `job_dir` and returns its absolute path. An existing
        Ember job folder there is replaced; any other non-empty folder is refused."""
        job_dir = os.path.abspath(job_dir)
        scripts = self._scripts_to_bundle()  # before touching the disk: may raise
        _prepare_job_dir(job_dir)
        _write_json(os.path.join(job_dir, "meta.json"),
                    {"format": JOB_FORMAT, "name": self.name, "min_clients": self.min_clients})
        _write_json(os.path.join(job_dir, "server.json"), self.server_config())
        _write_json(os.path.join(job_dir, "client.json"), self.client_config())
        self._write_initial_model(os.path.join(job_dir, INITIAL_MODEL))
        custom = os.path.join(job_dir, CUSTOM_DIR)
        os.makedirs(custom)
        for name, src in scripts.items():
            shutil.copy2(src, os.path.join(custom, name))
        return job_dir

    def execute(self, env) -> "Run":
        """Runs the job in `env` (e.g. SimEnv) and returns its Run, as FLARE does."""
        from .run import Run
        return Run(env, env.deploy(self))

    def _write_initial_model(self, path: str) -> None:
        os.makedirs(os.path.dirname(path))
        if self.initial_ckpt is not None:
            shutil.copyfile(self.initial_ckpt, path)
        else:
            st.save_file(self.params, path)

    def _scripts_to_bundle(self) -> Dict[str, str]:
        """custom/ name -> source: every train script and the .py files beside it.
        Two different files that would land on the same name are an error."""
        bundle: Dict[str, str] = {}
        scripts = [self.train_script] + [o["train_script"] for o in self.per_site_config.values()
                                         if "train_script" in o]
        for script in scripts:
            folder = os.path.dirname(script)
            for entry in sorted(os.listdir(folder)):
                src = os.path.join(folder, entry)
                if (entry.endswith(".py") and os.path.isfile(src)) or src == script:
                    _add_to_bundle(bundle, entry, src)
        return bundle

    def __repr__(self) -> str:
        return (f"FedAvgRecipe(name={self.name!r}, min_clients={self.min_clients}, "
                f"num_rounds={self.num_rounds}, train_script={self.train_script!r})")


# --- validation helpers (each error names the argument) --------------------------------

def _value(x: Any) -> Any:
    """Enum members (FLARE's or ours) compare by their value."""
    return getattr(x, "value", x)


def _unsupported(name: str, value: Any, hint: str) -> None:
    """Options whose default (None or False) is the only thing Ember can do."""
    if value is not None and value is not False:
        raise NotImplementedError(f"{name}={value!r} is not supported by Ember: {hint}")


def _choice(name: str, value: Any, allowed: tuple) -> Any:
    value = _value(value)
    if isinstance(value, str):
        value = value.upper()
    if value not in allowed:
        raise ValueError(f"{name}={value!r} must be one of {list(allowed)}")
    return value


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _float(name: str, value: Any, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    return value


def _nonempty(name: str, value: Any) -> str:
    if not _str(name, value).strip():
        raise ValueError(f"{name} must not be empty")
    return value


def _job_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"name={name!r} must be letters, digits, '_', '-' or '.' (it names "
                         "the job and its workspace folder)")
    return name


def _filename(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or os.path.basename(value) != value \
            or value in (".", ".."):
        raise ValueError(f"{name}={value!r} must be a plain file name (it is written in "
                         "the server's workspace)")
    return value


def _script(name: str, path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise TypeError(f"{name} must be a path to the training script, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name} {path!r} does not exist (resolved to "
                                f"{os.path.abspath(path)})")
    return os.path.abspath(path)


def _framework(framework: Any, model: Any) -> str:
    """Explicit framework wins; otherwise a torch model means pytorch."""
    value = _value(framework)
    if value is None:
        return "pytorch" if _is_torch_model(model) else "numpy"
    value = str(value).lower()
    if value not in _SUPPORTED_FRAMEWORKS:
        raise NotImplementedError(f"framework={value!r} is not supported by Ember "
                                  f"(supported: {list(_SUPPORTED_FRAMEWORKS)})")
    return value


def _is_torch_model(model: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is None or model is None:
        return False
    if isinstance(model, torch.nn.Module):
        return True
    return isinstance(model, Mapping) and any(isinstance(v, torch.Tensor) for v in model.values())


def _initial_model(model: Any, initial_ckpt: Optional[str]):
    """(params dict or None, checkpoint path or None): exactly one is given."""
    if (model is None) == (initial_ckpt is None):
        raise ValueError("give exactly one of model= (the initial weights) and "
                         "initial_ckpt= (a .safetensors file)")
    if initial_ckpt is not None:
        return None, _checkpoint(initial_ckpt)
    params = _model_params(model)
    try:
        st.encode(params)  # catches unsupported dtypes now, not at export
    except st.SafetensorsError as e:
        raise ValueError(f"model: {e}") from None
    return params, None


def _model_params(model: Any) -> Dict[str, Any]:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return dict(model.state_dict())
    if isinstance(model, Mapping):
        if "class_path" in model:
            raise NotImplementedError("model={'class_path': ..., 'args': ...} is not supported "
                                      "by Ember: pass a model instance, a dict of tensors, or "
                                      "initial_ckpt=")
        bad = [k for k in model if not isinstance(k, str)]
        if bad:
            raise TypeError(f"model dict keys must be tensor names (str), got {bad[0]!r}")
        return dict(model)
    if isinstance(model, (list, tuple, np.ndarray)):
        return {NUMPY_KEY: np.asarray(model)}
    raise TypeError(f"model must be a dict of numpy arrays / torch tensors, a torch "
                    f"nn.Module or a list, got {type(model).__name__}")


def _checkpoint(path: Any) -> str:
    if not isinstance(path, str) or not os.path.isfile(path):
        raise FileNotFoundError(f"initial_ckpt {path!r} does not exist")
    try:
        st.read_file_header(path)
    except (st.SafetensorsError, OSError) as e:
        raise ValueError(f"initial_ckpt {path!r} is not a valid safetensors file: {e}") from None
    return os.path.abspath(path)


def _stop_cond(cond: Optional[str]) -> Optional[str]:
    if cond is None:
        return None
    match = _STOP_COND_RE.match(cond) if isinstance(cond, str) else None
    try:
        ok = match is not None and math.isfinite(float(match.group(3)))
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"stop_cond={cond!r} must look like '<metric> <op> <number>' with "
                         "op one of >= > <= < ==, e.g. 'accuracy >= 0.9'")
    return f"{match.group(1)} {match.group(2)} {match.group(3)}"


def _regex(name: str, pattern: Optional[str]) -> Optional[str]:
    if pattern is None:
        return None
    try:
        re.compile(_str(name, pattern))
    except re.error as e:
        raise ValueError(f"{name}={pattern!r} is not a valid regular expression: {e}") from None
    return pattern


def _weights(weights: Optional[Mapping]) -> Dict[str, float]:
    if weights is None:
        return {}
    if not isinstance(weights, Mapping):
        raise TypeError(f"aggregation_weights must map site name to weight, got {weights!r}")
    out = {}
    for site, w in weights.items():
        _site_name("aggregation_weights", site)
        out[site] = _float(f"aggregation_weights[{site!r}]", w, 0.0)
    return out


def _site_name(where: str, site: Any) -> str:
    if not isinstance(site, str) or not _SITE_RE.match(site):
        raise ValueError(f"{where}: site name {site!r} must be letters, digits, '_' or '-'")
    return site


def _per_site_config(config: Optional[Mapping]) -> Dict[str, Dict[str, Any]]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"per_site_config must map site name to a dict, got {config!r}")
    return {_site_name("per_site_config", site): _site_overrides(site, overrides)
            for site, overrides in config.items()}


def _site_overrides(site: str, overrides: Any) -> Dict[str, Any]:
    if not isinstance(overrides, Mapping):
        raise TypeError(f"per_site_config[{site!r}] must be a dict, got {overrides!r}")
    checks = {"train_script": _script, "train_args": _str, "command": _str,
              "launch_once": _bool,
              "shutdown_timeout": lambda n, v: _float(n, v, 0.0),
              "framework": lambda n, v: _framework(v, None),
              "client_memory_gc_rounds": lambda n, v: _int(n, v, 0),
              "init_timeout": lambda n, v: _float(n, v, 0.0)}
    out = {}
    for key, value in overrides.items():
        where = f"per_site_config[{site!r}][{key!r}]"
        if key in _SITE_KEYS_IGNORED:
            continue
        if key == "params_transfer_type":
            raise NotImplementedError(f"{where}: Ember sets the transfer type for the whole "
                                      "job; use params_transfer_type=")
        if key not in checks:
            raise ValueError(f"{where}: unknown key (allowed: {list(_SITE_KEYS)})")
        out[key] = checks[key](where, value)
    return out


# --- file helpers ------------------------------------------------------------------------

def _add_to_bundle(bundle: Dict[str, str], name: str, src: str) -> None:
    if name in bundle and os.path.realpath(bundle[name]) != os.path.realpath(src):
        raise ValueError(f"two files would both be custom/{name}: {bundle[name]} and {src}")
    bundle[name] = src


def _prepare_job_dir(job_dir: str) -> None:
    """Creates an empty job folder, replacing a previous export but nothing else."""
    if os.path.isdir(job_dir) and os.listdir(job_dir):
        if not _is_ember_job(job_dir):
            raise FileExistsError(f"{job_dir} exists and is not an Ember job folder; "
                                  "export to a new or empty folder")
        shutil.rmtree(job_dir)
    os.makedirs(job_dir, exist_ok=True)


def _is_ember_job(job_dir: str) -> bool:
    try:
        with open(os.path.join(job_dir, "meta.json"), encoding="utf-8") as f:
            return json.load(f).get("format") == JOB_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
