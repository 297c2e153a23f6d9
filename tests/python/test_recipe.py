"""FedAvgRecipe export (docs/job-format.md), argument validation, and SimEnv driving
a stand-in `ember simulate`."""

import json
import os
import stat
import sys
import textwrap

import numpy as np
import pytest

from ember import _safetensors as st
from ember.recipe import FedAvgRecipe, Run, SimEnv, add_experiment_tracking, find_ember_binary

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


@pytest.fixture
def scripts(tmp_path):
    """A training script with a helper module and a non-Python file beside it."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "client.py").write_text("import ember.client as flare\n")
    (src / "helpers.py").write_text("X = 1\n")
    (src / "notes.txt").write_text("not bundled\n")
    return src


def _recipe(scripts, **kwargs):
    args = dict(name="hello-numpy", model={"w": np.arange(3, dtype=np.float32)},
                min_clients=2, train_script=str(scripts / "client.py"))
    args.update(kwargs)
    return FedAvgRecipe(**args)


def _read(path):
    with open(path) as f:
        return json.load(f)


# --- export --------------------------------------------------------------------------------------

def test_export_writes_the_documented_job_folder(scripts, tmp_path):
    job = _recipe(scripts, num_rounds=3).export(str(tmp_path / "job"))
    assert job == str(tmp_path / "job")
    assert sorted(os.listdir(job)) == ["client.json", "custom", "meta.json", "model", "server.json"]
    assert _read(os.path.join(job, "meta.json")) == {"format": "ember-job-1", "name": "hello-numpy",
                                                     "min_clients": 2}
    assert _read(os.path.join(job, "server.json")) == {
        "workflow": "fedavg", "min_clients": 2, "num_rounds": 3, "key_metric": "accuracy",
        "stop_cond": None, "patience": None, "exclude_vars": None, "aggregation_weights": {},
        "params_transfer_type": "FULL", "save_filename": "FL_global_model.safetensors",
        "best_filename": "best_FL_global_model.safetensors",
        "initial_model": "model/initial.safetensors", "task_timeout_s": 0,
        "server_memory_gc_rounds": 0, "aggregation_accumulate": "model"}
    assert _read(os.path.join(job, "client.json")) == {
        "executor": "launcher", "train_script": "client.py", "train_args": "", "command": "python3 -u",
        "launch_once": True, "shutdown_timeout": 0.0, "framework": "numpy",
        "client_memory_gc_rounds": 0, "per_site_config": {}}
    assert sorted(os.listdir(os.path.join(job, "custom"))) == ["client.py", "helpers.py"]
    model = st.load_file(os.path.join(job, "model", "initial.safetensors"))
    assert model["w"].tolist() == [0, 1, 2] and model["w"].dtype == np.float32


def test_export_carries_every_option(scripts, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "site2.py").write_text("pass\n")
    recipe = _recipe(scripts, num_rounds=5, train_args="--lr 0.1", command="python3",
                     params_transfer_type="diff", launch_once=False, shutdown_timeout=2,
                     key_metric="val_acc", stop_cond="val_acc>=0.9", patience=2,
                     save_filename="g.safetensors", best_model_filename="b.safetensors",
                     exclude_vars="bn\\..*", aggregation_weights={"site-1": 2, "site-2": 0.5},
                     server_memory_gc_rounds=1, client_memory_gc_rounds=2, cuda_empty_cache=True,
                     per_site_config={"site-2": {"train_script": str(other / "site2.py"),
                                                 "train_args": "--fast",
                                                 "launch_external_process": True}})
    job = recipe.export(str(tmp_path / "job"))
    server, client = _read(os.path.join(job, "server.json")), _read(os.path.join(job, "client.json"))
    assert (server["params_transfer_type"], server["stop_cond"], server["patience"]) == ("DIFF", "val_acc >= 0.9", 2)
    assert server["aggregation_weights"] == {"site-1": 2.0, "site-2": 0.5}
    assert (server["save_filename"], server["best_filename"]) == ("g.safetensors", "b.safetensors")
    assert (server["exclude_vars"], server["key_metric"], server["server_memory_gc_rounds"]) == \
        ("bn\\..*", "val_acc", 1)
    assert client["per_site_config"] == {"site-2": {"train_script": "site2.py", "train_args": "--fast"}}
    assert (client["train_args"], client["command"], client["launch_once"], client["shutdown_timeout"],
            client["client_memory_gc_rounds"], client["cuda_empty_cache"]) == \
        ("--lr 0.1", "python3", False, 2.0, 2, True)
    assert sorted(os.listdir(os.path.join(job, "custom"))) == ["client.py", "helpers.py", "site2.py"]


@pytest.mark.parametrize("choice", ["F64", "F32", "model"])
def test_aggregation_accumulate_is_exported_as_chosen(scripts, tmp_path, choice):
    job = _recipe(scripts, aggregation_accumulate=choice).export(str(tmp_path / "job"))
    assert _read(os.path.join(job, "server.json"))["aggregation_accumulate"] == choice


def test_initial_ckpt_is_copied(scripts, tmp_path):
    ckpt = tmp_path / "init.safetensors"
    st.save_file({"a": np.ones((2, 2))}, str(ckpt))
    job = _recipe(scripts, model=None, initial_ckpt=str(ckpt)).export(str(tmp_path / "job"))
    with open(os.path.join(job, "model", "initial.safetensors"), "rb") as f:
        assert f.read() == ckpt.read_bytes()


def test_list_model_is_stored_under_numpy_key_as_in_flare(scripts, tmp_path):
    job = _recipe(scripts, model=[1.0, 2.0, 3.0]).export(str(tmp_path / "job"))
    assert st.load_file(os.path.join(job, "model", "initial.safetensors"))["numpy_key"].tolist() == [1, 2, 3]


@needs_torch
def test_torch_module_model_implies_pytorch(scripts, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    recipe = _recipe(scripts, model=net)
    assert recipe.framework == "pytorch"
    job = recipe.export(str(tmp_path / "job"))
    params = st.load_file(os.path.join(job, "model", "initial.safetensors"), to_torch=True)
    assert list(params) == list(net.state_dict())
    assert torch.equal(params["0.weight"], net.state_dict()["0.weight"])
    assert _read(os.path.join(job, "client.json"))["framework"] == "pytorch"
    assert _recipe(scripts, model={"w": torch.zeros(2)}).framework == "pytorch"
    assert _recipe(scripts, model=net, framework="numpy").framework == "numpy"


def test_reexport_replaces_a_job_but_never_another_folder(scripts, tmp_path):
    job = tmp_path / "job"
    _recipe(scripts).export(str(job))
    (job / "custom" / "stale.py").write_text("")
    _recipe(scripts).export(str(job))
    assert not (job / "custom" / "stale.py").exists()
    with pytest.raises(FileExistsError, match="not an Ember job folder"):
        _recipe(scripts).export(str(scripts))
    assert (scripts / "notes.txt").exists()


def test_add_experiment_tracking_is_recorded_in_client_json(scripts, tmp_path):
    recipe = _recipe(scripts)
    add_experiment_tracking(recipe, "tensorboard")
    with pytest.raises(RuntimeError, match="already added"):
        add_experiment_tracking(recipe, "mlflow")
    with pytest.raises(ValueError, match="tracking_type"):
        add_experiment_tracking(_recipe(scripts), "comet")
    job = recipe.export(str(tmp_path / "job"))
    assert _read(os.path.join(job, "client.json"))["tracking"] == {
        "type": "tensorboard", "config": {}, "client_side": False, "server_side": True}


# --- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"min_clients": 0}, ValueError, "min_clients must be >= 1"),
    ({"min_clients": 1.5}, TypeError, "min_clients must be an integer"),
    ({"num_rounds": 0}, ValueError, "num_rounds must be >= 1"),
    ({"initial_ckpt": "x.safetensors"}, ValueError, "exactly one of model="),
    ({"model": None}, ValueError, "exactly one of model="),
    ({"train_script": "nope.py"}, FileNotFoundError, "train_script 'nope.py' does not exist"),
    ({"aggregator": object()}, NotImplementedError, "aggregator=.*not supported"),
    ({"model_persistor": object()}, NotImplementedError, "model_persistor"),
    ({"enable_tensor_disk_offload": True}, NotImplementedError, "enable_tensor_disk_offload"),
    ({"framework": "tensorflow"}, NotImplementedError, "framework='tensorflow'"),
    ({"server_expected_format": "keras_layer_weights"}, NotImplementedError, "server_expected_format"),
    ({"params_transfer_type": "HALF"}, ValueError, "params_transfer_type='HALF'"),
    ({"aggregator_data_kind": "SOMETHING"}, ValueError, "aggregator_data_kind"),
    ({"stop_cond": "accuracy is high"}, ValueError, "stop_cond='accuracy is high'"),
    ({"stop_cond": "accuracy >= x"}, ValueError, "stop_cond"),
    ({"patience": 0}, ValueError, "patience must be >= 1"),
    ({"exclude_vars": "bn.("}, ValueError, "exclude_vars='bn.\\(' is not a valid regular"),
    ({"aggregation_weights": {"site-1": -1}}, ValueError, "aggregation_weights\\['site-1'\\]"),
    ({"aggregation_weights": {"a.b": 1}}, ValueError, "site name 'a.b'"),
    ({"per_site_config": {"site-1": {"lr": 1}}}, ValueError, "per_site_config\\['site-1'\\]\\['lr'\\]: unknown key"),
    ({"per_site_config": {"site-1": {"params_transfer_type": "DIFF"}}}, NotImplementedError, "whole job"),
    ({"per_site_config": {"site-1": {"train_script": "gone.py"}}}, FileNotFoundError, "gone.py"),
    ({"name": "a/b"}, ValueError, "name='a/b'"),
    ({"save_filename": "../x.safetensors"}, ValueError, "save_filename"),
    ({"shutdown_timeout": -1}, ValueError, "shutdown_timeout must be >= 0"),
    ({"launch_once": "yes"}, TypeError, "launch_once must be True or False"),
    ({"model": {"w": np.zeros(2, np.uint32)}}, ValueError, "model: tensor 'w'"),
    ({"model": {"class_path": "net.Net", "args": {}}}, NotImplementedError, "class_path"),
    ({"model": 3}, TypeError, "model must be"),
    ({"aggregation_accumulate": "f64"}, ValueError, "aggregation_accumulate must be one of 'model', 'F32', 'F64', got 'f64'"),
    ({"aggregation_accumulate": 64}, ValueError, "aggregation_accumulate must be one of"),
])
def test_bad_arguments_are_refused_naming_the_argument(scripts, kwargs, error, message):
    with pytest.raises(error, match=message):
        _recipe(scripts, **kwargs)


def test_initial_ckpt_must_be_a_valid_safetensors_file(scripts, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10" + bytes(7) + b"not json")
    with pytest.raises(ValueError, match="initial_ckpt .* is not a valid safetensors file"):
        _recipe(scripts, model=None, initial_ckpt=str(bad))
    with pytest.raises(FileNotFoundError, match="initial_ckpt"):
        _recipe(scripts, model=None, initial_ckpt=str(tmp_path / "none.safetensors"))


def test_two_scripts_with_one_name_are_refused_at_export(scripts, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "client.py").write_text("pass\n")
    recipe = _recipe(scripts, per_site_config={"site-2": {"train_script": str(other / "client.py")}})
    with pytest.raises(ValueError, match="both be custom/client.py"):
        recipe.export(str(tmp_path / "job"))
    assert not (tmp_path / "job").exists()


# --- SimEnv -----------------------------------------------------------------------------------------

FAKE_EMBER = textwrap.dedent("""\
    #!{python}
    # Stand-in for `ember simulate`: checks the job folder, writes the workspace.
    import json, os, shutil, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_EMBER_ARGS"], "w") as f:
        json.dump({{"argv": args, "python": os.environ.get("EMBER_PYTHON"),
                   "pythonpath": os.environ.get("EMBER_PYTHONPATH")}}, f)
    assert args[0] == "simulate"
    job, ws = args[1], args[args.index("-w") + 1]
    meta = json.load(open(os.path.join(job, "meta.json")))
    assert os.path.isfile(os.path.join(job, "custom", "client.py"))
    print("simulating", meta["name"], flush=True)
    if os.environ.get("FAKE_EMBER_FAIL"):
        sys.exit(3)
    os.makedirs(os.path.join(ws, "server"), exist_ok=True)
    shutil.copy(os.path.join(job, "model", "initial.safetensors"),
                os.path.join(ws, "server", "FL_global_model.safetensors"))
    json.dump({{"status": "completed", "job_id": "sim-123", "rounds_completed": 2, "error": "",
               "best": {{}}}}, open(os.path.join(ws, "server", "result.json"), "w"))
""")


@pytest.fixture
def fake_ember(tmp_path, monkeypatch):
    path = tmp_path / "bin" / "ember"
    path.parent.mkdir()
    path.write_text(FAKE_EMBER.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("EMBER_BIN", str(path))
    monkeypatch.setenv("FAKE_EMBER_ARGS", str(tmp_path / "args.json"))
    return path


def test_execute_runs_ember_simulate_and_reports_the_result(scripts, tmp_path, fake_ember, capsys):
    env = SimEnv(clients=["a", "b", "c"], num_threads=2, workspace_root=str(tmp_path / "ws"))
    run = _recipe(scripts).execute(env)
    assert isinstance(run, Run) and run.get_job_id() == "sim-123"
    assert run.get_status() == "completed"
    server = run.get_result()
    assert server == str(tmp_path / "ws" / "hello-numpy" / "server")
    assert st.load_file(os.path.join(server, "FL_global_model.safetensors"))["w"].tolist() == [0, 1, 2]
    recorded = _read(tmp_path / "args.json")
    args = recorded["argv"]
    assert recorded["python"] == sys.executable  # scripts run with the Python of job.py
    assert os.path.isfile(os.path.join(recorded["pythonpath"], "ember", "client", "__init__.py"))
    assert args[0] == "simulate" and os.path.basename(args[1]) == "hello-numpy"
    assert args[2:] == ["-n", "3", "-c", "a,b,c", "-t", "2", "-w", str(tmp_path / "ws" / "hello-numpy")]
    assert "simulating hello-numpy" in capsys.readouterr().out
    assert not os.path.exists(args[1])  # the temporary job folder is cleaned up
    run.abort()  # finished: nothing to stop


def test_default_client_count_is_min_clients(scripts, tmp_path, fake_ember):
    _recipe(scripts, min_clients=3).execute(SimEnv(workspace_root=str(tmp_path / "ws")))
    assert _read(tmp_path / "args.json")["argv"][2:4] == ["-n", "3"]


def test_failed_simulation_reports_failed_without_a_stale_result(scripts, tmp_path, fake_ember,
                                                                 monkeypatch):
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"))
    _recipe(scripts).execute(env)  # leaves a completed result.json behind
    monkeypatch.setenv("FAKE_EMBER_FAIL", "1")
    run = _recipe(scripts).execute(env)
    assert run.get_job_id() == "hello-numpy" and run.get_status() == "failed"


def test_sim_env_validates_its_arguments(scripts, tmp_path, fake_ember):
    with pytest.raises(NotImplementedError, match="gpu_config"):
        SimEnv(gpu_config="0,1")
    with pytest.raises(ValueError, match="distinct"):
        SimEnv(clients=["a", "a"])
    with pytest.raises(ValueError, match="site names"):
        SimEnv(clients="site-1")
    with pytest.raises(ValueError, match="num_clients=3 but clients names 2"):
        SimEnv(num_clients=3, clients=["a", "b"])
    with pytest.raises(ValueError, match="runs 1 client.*min_clients=2"):
        _recipe(scripts).execute(SimEnv(num_clients=1, workspace_root=str(tmp_path)))


def test_binary_lookup_order(tmp_path, monkeypatch, fake_ember):
    assert find_ember_binary() == str(fake_ember)
    monkeypatch.setenv("EMBER_BIN", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="EMBER_BIN=.*missing"):
        find_ember_binary()
    monkeypatch.delenv("EMBER_BIN")
    monkeypatch.setenv("PATH", str(fake_ember.parent))
    assert find_ember_binary() == str(fake_ember)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    try:
        found = find_ember_binary()  # the checkout's build, if it has been built
        assert found.endswith(os.path.join("build", "apps", "ember", "ember"))
    except FileNotFoundError as e:
        assert "set EMBER_BIN" in str(e)
