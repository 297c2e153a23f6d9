"""The Client API end to end against a fake parent cell (docs/wire-format.md §6-§7)."""

import gc
import json
import os
import subprocess
import sys
import struct
import textwrap
import threading
import weakref

import numpy as np
import pytest

import ember.client as flare
from ember import _safetensors as st
from ember.client import ClientAPI, FLModel, ParamsType
from ember.client.tracking import SummaryWriter

from fake_parent import FakeParent
from test_tensor_sink import assert_own_memory

PYTHON_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "python"))

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def task(round_, total=2, name="train", params=None, **extra):
    h = {"task_name": name, "task_id": f"r{round_}-site-1", "job_id": "job-1",
         "current_round": round_, "total_rounds": total, "params_type": "FULL",
         "meta": {"origin": "test"}}
    h.update(extra)
    body = st.dumps(params) if params is not None else b""
    return h, body


def write_config(tmp_path, **config):
    path = tmp_path / "client_config.json"
    path.write_text(json.dumps(config))
    return path


# --- the training loop ---------------------------------------------------------------------

def test_receive_train_send_until_end():
    big = np.arange(300_000, dtype=np.float32)  # > 1 MiB: several DATA frames both ways
    parent = FakeParent(tasks=[task(0, params={"w": big, "b": np.zeros(2)}),
                               task(1, params={"w": big + 1, "b": np.ones(2)})],
                        ping_first=True)
    api = ClientAPI(parent.env())
    api.init()
    seen = []
    while api.is_running():
        model = api.receive()
        assert api.receive() is model  # cached until answered
        assert api.is_train() and not api.is_evaluate() and not api.is_submit_model()
        seen.append((model.current_round, model.total_rounds, model.params_type, model.meta))
        assert isinstance(model.params["w"], np.ndarray) and model.params["w"].flags.writeable
        new = {k: v + 1 for k, v in model.params.items()}
        api.send(FLModel(params=new, metrics={"accuracy": np.float32(0.5), "loss": 2},
                         meta={"NUM_STEPS_CURRENT_ROUND": np.int64(10)}))
    assert api.receive() is None and not api.is_running()
    parent.join()
    assert seen == [(0, 2, ParamsType.FULL, {"origin": "test"}),
                    (1, 2, ParamsType.FULL, {"origin": "test"})]
    assert parent.pongs == 1
    head, body = parent.results[0]
    assert head["kind"] == "req" and head["dst"] == "server" and head["src"] == "site-1.job-1"
    result = {"task_name": "train", "task_id": "r0-site-1", "current_round": 0,
              "params_type": "FULL", "metrics": {"accuracy": 0.5, "loss": 2},
              "meta": {"NUM_STEPS_CURRENT_ROUND": 10}}
    assert head["h"] == dict(result, site="site-1")
    report = parent.reports[0]  # link.submit after the server took the result
    assert report["dst"] == "site-1" and report["h"] == result and report["body_size"] == 0
    sent = st.decode(bytearray(body))
    np.testing.assert_array_equal(sent["w"], big + 1)
    np.testing.assert_array_equal(st.decode(bytearray(parent.results[1][1]))["b"], np.full(2, 2.0))


def _multi_tensor_model():
    return {"conv.weight": np.arange(400_000, dtype=np.float32).reshape(100, 4000),  # 1.6 MB
            "conv.bias": np.linspace(0, 1, 100, dtype=np.float64),
            "steps": np.array(12, np.int64), "mask": np.arange(10) % 2 == 0,
            "half": np.arange(7, dtype=np.float16), "none": np.zeros((0, 3), np.float32)}


def test_receive_gives_each_tensor_its_own_array_filled_from_the_socket():
    sent = _multi_tensor_model()
    parent = FakeParent(tasks=[task(0, params=sent)])
    api = ClientAPI(parent.env())
    params = api.receive().params
    assert list(params) == list(sent)
    for name, value in sent.items():
        assert type(params[name]) is np.ndarray and params[name].dtype == value.dtype
        np.testing.assert_array_equal(params[name], value)
    assert_own_memory(params)
    api.send(FLModel(params=params))
    api.shutdown()
    parent.join()


def test_a_bad_model_names_the_task_and_round():
    parent = FakeParent(tasks=[task(4, params={"w": np.ones(2)})])
    parent.tasks[0] = (parent.tasks[0][0], struct.pack("<Q", 200_000_000) + bytes(8))
    api = ClientAPI(parent.env())
    with pytest.raises(st.SafetensorsError, match="fl.get_model of task 'r4-site-1' \\(round 4\\)"
                                                  ".*header size 200000000 exceeds the limit"):
        api.receive()
    api.shutdown()
    parent.join()


def test_a_failed_model_fetch_names_the_task_and_round():
    def fail(parent, conn, head, sid):
        if head["topic"] != "fl.get_model":
            return False
        parent.reply(conn, head, {}, status="unreachable", error="server gone")
        return True
    parent = FakeParent(tasks=[task(2, params={"w": np.ones(2)})], on_head=fail)
    api = ClientAPI(parent.env())
    with pytest.raises(RuntimeError, match="fl.get_model of task 'r2-site-1' \\(round 2\\) "
                                           "failed with status 'unreachable': server gone"):
        api.receive()
    api.shutdown()
    parent.join()


RSS_SCRIPT = """
import gc, json
import ember.client as flare

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

flare.init()
gc.collect()
before = status("VmRSS:")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
except OSError:
    pass  # then VmHWM may include the import peak: the figure only gets larger
model = flare.receive()
peak = status("VmHWM:")
held = status("VmRSS:")
dropped = model.params.pop("big").nbytes
gc.collect()
after_drop = status("VmRSS:")
flare.send(flare.FLModel(params={}))
assert not flare.is_running()
print(json.dumps({"before": before, "peak": peak, "held": held, "after_drop": after_drop,
                  "dropped": dropped}))
"""


def test_a_64_mib_model_costs_the_script_about_one_model_and_tensors_free_one_by_one(tmp_path):
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (Linux)")
    model = {"big": np.ones(12 << 20, np.float32),      # 48 MiB
             "mid": np.ones(2 << 20, np.int64),         # 16 MiB
             "small": np.ones(1000, np.float16)}
    size = sum(v.nbytes for v in model.values())
    parent = FakeParent(tasks=[task(0, params=model)])
    del model
    script = tmp_path / "rss.py"
    script.write_text(RSS_SCRIPT)
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR, **parent.env())
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=120)
    parent.join(30)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    growth = r["peak"] - r["before"]
    print(f"model {size / 2**20:.1f} MiB, script peak RSS growth {growth / 2**20:.1f} MiB "
          f"({growth / size:.2f}x), freed by dropping 'big': "
          f"{(r['held'] - r['after_drop']) / 2**20:.1f} MiB")
    assert growth < 1.3 * size
    assert r["held"] - r["after_drop"] > 0.9 * r["dropped"]  # its own buffer went back


def test_a_script_using_the_module_api_runs_as_a_subprocess(tmp_path):
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent("""
        import ember.client as flare
        from ember.client.tracking import SummaryWriter

        flare.init()
        info = flare.system_info()
        writer = SummaryWriter()
        while flare.is_running():
            model = flare.receive()
            params = {k: v * 2 for k, v in model.params.items()}
            writer.add_scalar("loss", 1.0 / (model.current_round + 1), global_step=model.current_round)
            flare.send(flare.FLModel(params=params, metrics={"accuracy": 0.1 * model.current_round},
                                     meta={"NUM_STEPS_CURRENT_ROUND": 5, "site": info["site_name"]}))
        print("done", flare.get_job_id())
    """))
    parent = FakeParent(tasks=[task(r, total=3, params={"w": np.full(4, r, np.float64)})
                               for r in range(3)])
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR, **parent.env())
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=60)
    parent.join()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done job-1"
    assert [h["h"]["metrics"]["accuracy"] for h, _ in parent.results] == pytest.approx([0, 0.1, 0.2])
    assert [h["h"]["meta"]["site"] for h, _ in parent.results] == ["site-1"] * 3
    for r, (_, body) in enumerate(parent.results):
        np.testing.assert_array_equal(st.decode(bytearray(body))["w"], np.full(4, 2.0 * r))
    assert parent.logs == [{"tag": "loss", "value": 1.0 / (r + 1), "step": r, "kind": "scalar"}
                           for r in range(3)]


def test_evaluate_task_sends_metrics_only_as_an_empty_model():
    parent = FakeParent(tasks=[task(0, name="validate", params={"w": np.ones(2)})])
    api = ClientAPI(parent.env())
    model = api.receive()
    assert api.is_evaluate() and api.get_task_name() == "validate"
    api.send(FLModel(metrics={"accuracy": True}))
    assert not api.is_running()
    parent.join()
    head, body = parent.results[0]
    assert body == st.EMPTY_IMAGE and head["h"]["metrics"] == {"accuracy": 1}
    assert model.params is None  # clear_cache (the default) released the received params


def test_receive_timeout_returns_none_and_the_task_is_not_lost():
    def slow(parent, conn, head, sid):
        if head["topic"] != "link.get_task" or parent.tasks == []:
            return False
        h, body = parent.tasks.pop(0)
        parent.models[h["task_id"]] = body
        threading.Timer(0.4, parent.reply, (conn, head, dict(h, model_size=len(body)))).start()
        return True
    parent = FakeParent(tasks=[task(0, params={"w": np.ones(2)})], on_head=slow)
    api = ClientAPI(parent.env())
    assert api.receive(timeout=0.05) is None
    model = api.receive(timeout=5)
    assert model.current_round == 0 and model.params["w"].tolist() == [1.0, 1.0]
    api.send(FLModel(params=model.params))
    assert not api.is_running()
    parent.join()


def test_task_without_a_body_has_no_params():
    parent = FakeParent(tasks=[task(0, name="submit_model")])
    api = ClientAPI(parent.env())
    model = api.receive()
    assert api.is_submit_model() and model.params is None and model.params_type is None
    api.send(FLModel(params={"w": np.ones(1)}))
    api.shutdown()
    parent.join()


def test_diff_transfer_sends_the_change_against_the_received_model():
    parent = FakeParent(tasks=[task(0, params={"w": np.array([1.0, 2.0])}, params_type="DIFF")])
    api = ClientAPI(parent.env())
    model = api.receive()
    mine = FLModel(params={"w": model.params["w"] + 0.5})
    api.send(mine)
    api.shutdown()
    parent.join()
    head, body = parent.results[0]
    assert head["h"]["params_type"] == "DIFF"
    assert st.decode(bytearray(body))["w"].tolist() == [0.5, 0.5]
    assert mine.params_type == ParamsType.FULL  # the caller's model is left alone


def test_clear_cache_releases_the_received_model():
    parent = FakeParent(tasks=[task(0, params={"w": np.ones(10)}), task(1, params={"w": np.ones(10)})])
    api = ClientAPI(parent.env())
    model = api.receive()
    ref = weakref.ref(model)
    api.send(FLModel(params=dict(model.params)), clear_cache=True)
    del model
    gc.collect()
    assert ref() is None
    model = api.receive()
    ref = weakref.ref(model)
    api.send(FLModel(params=dict(model.params)), clear_cache=False)
    del model
    gc.collect()
    assert ref() is not None  # kept, as asked
    api.shutdown()
    parent.join()


def test_the_next_model_lands_in_the_arrays_the_script_let_go_of():
    tasks = [task(r, total=3, params={"w": np.full(1000, float(r)), "b": np.ones(3)}) for r in range(3)]
    parent = FakeParent(tasks=tasks)
    api = ClientAPI(parent.env())
    address = lambda a: a.__array_interface__["data"][0]
    m = api.receive()
    w0 = address(m.params["w"])
    api.send(FLModel(params=m.params))  # clear_cache: the script holds nothing of round 0
    del m
    m = api.receive()
    assert address(m.params["w"]) == w0  # recycled: no fresh pages
    assert m.params["w"].tolist() == [1.0] * 1000
    kept = m.params["w"]                 # the script keeps round 1's tensor
    api.send(FLModel(params=m.params))
    del m
    m = api.receive()
    assert address(m.params["w"]) != address(kept)  # never overwritten while referenced
    assert kept.tolist() == [1.0] * 1000 and m.params["w"].tolist() == [2.0] * 1000
    api.send(FLModel(params=m.params))
    assert api.receive() is None
    parent.join()


# --- frameworks --------------------------------------------------------------------------------

@needs_torch
def test_pytorch_framework_receives_torch_tensors(tmp_path):
    config = write_config(tmp_path, framework="pytorch")
    parent = FakeParent(tasks=[task(0, params={"w": np.arange(3, dtype=np.float32)})])
    api = ClientAPI(parent.env(config))
    model = api.receive()
    assert isinstance(model.params["w"], torch.Tensor)
    api.send(FLModel(params={"w": model.params["w"] * 2, "h": torch.ones(2, dtype=torch.bfloat16)}))
    api.shutdown()
    parent.join()
    sent = st.decode(bytearray(parent.results[0][1]))
    assert sent["w"].tolist() == [0, 2, 4] and sent["h"].dtype == torch.bfloat16


@needs_torch
def test_pytorch_framework_gets_one_tensor_per_buffer_bf16_included(tmp_path):
    sent = dict(_multi_tensor_model(), bf=torch.linspace(0, 1, 9, dtype=torch.bfloat16))
    parent = FakeParent(tasks=[task(0, params=sent)])
    api = ClientAPI(parent.env(write_config(tmp_path, framework="pytorch")))
    params = api.receive().params
    assert list(params) == list(sent)
    assert all(isinstance(t, torch.Tensor) for t in params.values())
    assert params["bf"].dtype == torch.bfloat16 and torch.equal(params["bf"], sent["bf"])
    assert torch.equal(params["conv.weight"], torch.from_numpy(sent["conv.weight"]))
    assert_own_memory(params)
    api.send(FLModel(params=params))
    api.shutdown()
    parent.join()


@needs_torch
def test_sending_torch_switches_later_receives_to_torch():
    parent = FakeParent(tasks=[task(0, params={"w": np.ones(2, np.float32)}),
                               task(1, params={"w": np.ones(2, np.float32)})])
    api = ClientAPI(parent.env())
    assert isinstance(api.receive().params["w"], np.ndarray)
    api.send(FLModel(params={"w": torch.zeros(2, requires_grad=True)}))
    assert isinstance(api.receive().params["w"], torch.Tensor)
    api.shutdown()
    parent.join()


# --- errors ---------------------------------------------------------------------------------------

def test_init_outside_ember_says_how_to_start_the_script():
    api = ClientAPI({})
    with pytest.raises(RuntimeError, match="EMBER_LINK is not set.*started by ember"):
        api.init()


def test_send_before_receive_and_twice_are_errors():
    parent = FakeParent(tasks=[task(0, params={"w": np.ones(1)})])
    api = ClientAPI(parent.env())
    with pytest.raises(RuntimeError, match="call receive\\(\\) first"):
        api.send(FLModel(params={"w": np.ones(1)}))
    api.receive()
    api.send(FLModel(params={"w": np.ones(1)}))
    with pytest.raises(RuntimeError, match="call receive\\(\\) first"):
        api.send(FLModel(params={"w": np.ones(1)}))
    api.shutdown()
    parent.join()


def test_rejected_result_raises_with_the_status():
    parent = FakeParent(tasks=[task(3, params={"w": np.ones(1)})], submit_status="invalid_request")
    api = ClientAPI(parent.env())
    api.receive()
    with pytest.raises(RuntimeError, match="task 'train' \\(round 3\\).*invalid_request.*result rejected"):
        api.send(FLModel(params={"w": np.ones(1)}))
    api.shutdown()
    parent.join()


@pytest.mark.parametrize("metrics, error", [({"acc": "high"}, "metric 'acc' must be a number"),
                                            ({"acc": float("nan")}, "metric 'acc' is nan"),
                                            ({"acc": np.ones(3)}, "metric 'acc' must be a single")])
def test_metrics_must_be_json_numbers(metrics, error):
    parent = FakeParent(tasks=[task(0, params={"w": np.ones(1)})])
    api = ClientAPI(parent.env())
    api.receive()
    with pytest.raises((TypeError, ValueError), match=error):
        api.send(FLModel(params={"w": np.ones(1)}, metrics=metrics))
    api.shutdown()
    parent.join()


def test_parent_going_away_ends_the_loop(capsys):
    def hang_up(parent, conn, head, sid):
        conn.close()
        raise SystemExit  # stop serving
    parent = FakeParent(on_head=hang_up)
    api = ClientAPI(parent.env())
    assert api.is_running() is False
    assert "closed" in capsys.readouterr().err
    parent._thread.join(5)


def test_other_ranks_do_not_talk_to_ember():
    parent = FakeParent()
    api = ClientAPI(parent.env())
    api.init(rank=1)
    with pytest.raises(RuntimeError, match="only rank 0 can call receive"):
        api.receive()
    # Rank 0 still connects as usual.
    api0 = ClientAPI(parent.env())
    assert api0.is_running() is False
    parent.join()


def test_fl_model_mirrors_flare():
    m = FLModel(params={"w": 1}, metrics={"a": 1}, current_round=2)
    assert m.params_type == ParamsType.FULL and m.meta == {} and m.start_round == 0
    assert "current_round': 2" in repr(m) and m.summary()["params"] == 1
    assert FLModel().params_type is None
    with pytest.raises(ValueError, match="params_type is DIFF but params is None"):
        FLModel(params_type="DIFF")
    with pytest.raises(ValueError, match="not one of"):
        FLModel(params_type="HALF", params={})
    assert ParamsType.DIFF == "DIFF"


# --- config, info, logging ---------------------------------------------------------------------

def test_config_and_system_info(tmp_path):
    config = write_config(tmp_path, framework="numpy", train_args="--lr 0.1")
    parent = FakeParent()
    api = ClientAPI(parent.env(config))
    assert api.get_config()["train_args"] == "--lr 0.1"
    assert api.system_info() == {"site_name": "site-1", "job_id": "job-1"}
    assert ClientAPI(parent.env()).get_config() == {}
    api.shutdown()
    ClientAPI(parent.env()).is_running()  # lets the fake parent finish
    parent.join()


def test_unreadable_config_names_the_file(tmp_path):
    api = ClientAPI({"EMBER_CLIENT_CONFIG": str(tmp_path / "missing.json")})
    with pytest.raises(RuntimeError, match="missing.json"):
        api.get_config()


def test_log_and_summary_writer_send_link_log(monkeypatch):
    parent = FakeParent()
    api = ClientAPI(parent.env())
    monkeypatch.setattr(flare, "_api", api)
    writer = SummaryWriter()
    writer.add_scalar("loss", np.float64(0.25), global_step=3)
    writer.add_scalars("acc", {"train": 0.9, "val": np.float32(0.5)}, global_step=4)
    flare.log("note", "hello", flare.AnalyticsDataType.TEXT)
    flare.log("lr", 0.1, "METRIC")
    with pytest.raises(ValueError, match="IMAGE is not supported"):
        flare.log("img", 1, flare.AnalyticsDataType.IMAGE)
    assert flare.is_running() is False  # an "end" reply orders everything before it
    parent.join()
    assert parent.logs == [
        {"tag": "loss", "value": 0.25, "step": 3, "kind": "scalar"},
        {"tag": "acc", "value": {"train": 0.9, "val": 0.5}, "step": 4, "kind": "scalars"},
        {"level": "info", "msg": "note: hello"},
        {"tag": "lr", "value": 0.1, "step": None, "kind": "scalar"},
    ]
