"""FedAvg end to end: the C++ server and sites, Python training scripts, real sockets."""
import pathlib
import time

import numpy as np
import pytest

from conftest import read_metrics, read_result
from ember.recipe import FedAvgRecipe

HERE = pathlib.Path(__file__).parent
SCRIPT = str(HERE / "known_update_client.py")
MODEL = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(4, np.float32),
         "frozen": np.ones(2, np.float32)}


def export(tmp_path, **kw):
    args = dict(name="exact", min_clients=kw.pop("min_clients", 2), num_rounds=kw.pop("num_rounds", 3),
                model=MODEL, train_script=SCRIPT)
    args.update(kw)
    return FedAvgRecipe(**args).export(str(tmp_path / "job"))


def expected_models(n_sites, rounds, mode, exclude=()):
    """The global model before each round, computed independently of Ember: each site's
    float32 update as the script makes it, their weighted mean in float64, rounded to
    float32 once per round (as FedAvg stores the model in its own dtype)."""
    g = dict(MODEL)
    out = [g]
    weights = np.arange(1, n_sites + 1, dtype=np.float64)  # NUM_STEPS = k
    for r in range(rounds):
        nxt = {}
        for name, v in g.items():
            if name in exclude:
                nxt[name] = v
                continue
            deltas = [np.float32(k * (r + 1)) for k in range(1, n_sites + 1)]
            if mode == "FULL":
                sent = [(v + d).astype(np.float64) for d in deltas]  # float32 add, as the script
                nxt[name] = (sum(w * x for w, x in zip(weights, sent)) / weights.sum()).astype(np.float32)
            else:
                mean = sum(w * np.float64(d) for w, d in zip(weights, deltas)) / weights.sum()
                nxt[name] = (v.astype(np.float64) + mean).astype(np.float32)
        g = nxt
        out.append(g)
    return out


def relative_tolerance(n_sites, rounds, accumulate):
    """F64 accumulation matches the float64 reference to float32 rounding (atol alone).
    The default ("model": a float32 model sums in float32, as FLARE's numpy sums do) rounds
    once per weighted add and once at the division, each within one float32 ulp
    (relative 2**-23 of these positive sums); a round's model carries the previous
    round's error forward, so the bound grows with the rounds."""
    if accumulate == "F64":
        return 0.0
    return (n_sites + 1) * rounds * np.finfo(np.float32).eps


def check_rounds(ws, n_sites, rounds, mode, exclude=(), accumulate="model"):
    expected = expected_models(n_sites, rounds, mode, exclude)
    rtol = relative_tolerance(n_sites, rounds, accumulate)
    for site in range(1, n_sites + 1):
        for r in range(rounds):
            got = np.load(ws / f"site-{site}" / "received" / f"round{r}.npz")
            for name in MODEL:
                np.testing.assert_allclose(got[name], expected[r][name], rtol=rtol, atol=1e-6,
                                           err_msg=f"site-{site} round {r} tensor {name}")
    from ember._safetensors import load_file
    final = load_file(str(ws / "server" / "FL_global_model.safetensors"))
    for name in MODEL:
        np.testing.assert_allclose(final[name], expected[rounds][name], rtol=rtol, atol=1e-5)


@pytest.mark.parametrize("accumulate", ["model", "F64"])
@pytest.mark.parametrize("n_sites", [2, 8])
@pytest.mark.parametrize("mode", ["FULL", "DIFF"])
def test_global_model_is_the_weighted_mean_every_round(tmp_path, simulate, n_sites, mode, accumulate):
    job = export(tmp_path, min_clients=n_sites, train_args=f"--mode {mode}", params_transfer_type=mode,
                 aggregation_accumulate=accumulate)
    proc, ws = simulate(job, n=n_sites)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_rounds(ws, n_sites, 3, mode, accumulate=accumulate)
    result = read_result(ws)
    assert result["status"] == "completed" and result["rounds_completed"] == 3
    metrics = read_metrics(ws)
    assert [m["round"] for m in metrics] == [0, 1, 2]
    weights = np.arange(1, n_sites + 1)
    acc0 = float((weights * (0.1 * weights)).sum() / weights.sum())
    assert abs(metrics[0]["metrics"]["accuracy"] - acc0) < 1e-9
    assert sorted(metrics[0]["sites"]) == sorted(f"site-{k}" for k in range(1, n_sites + 1))


def test_exclude_vars_keeps_those_tensors_unchanged(tmp_path, simulate):
    job = export(tmp_path, exclude_vars="^froz")
    proc, ws = simulate(job)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_rounds(ws, 2, 3, "FULL", exclude=("frozen",))


def test_aggregation_weights_scale_each_site(tmp_path, simulate):
    job = export(tmp_path, num_rounds=1, aggregation_weights={"site-1": 3.0, "site-2": 1.0})
    proc, ws = simulate(job)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from ember._safetensors import load_file
    final = load_file(str(ws / "server" / "FL_global_model.safetensors"))
    w = np.array([3.0 * 1, 1.0 * 2])  # aggregation weight x NUM_STEPS (k)
    mean_delta = float((w * np.array([1.0, 2.0])).sum() / w.sum())
    np.testing.assert_allclose(final["b"], MODEL["b"] + mean_delta, atol=1e-6)


def test_stop_cond_ends_the_job_early(tmp_path, simulate):
    # Aggregated accuracy in round r is (1*0.1 + 2*0.2)/3 + 0.1*r = 0.1667 + 0.1 r: >= 0.45 in round 3.
    job = export(tmp_path, num_rounds=10, stop_cond="accuracy >= 0.45")
    proc, ws = simulate(job)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(ws)
    assert result["status"] == "stopped_early"
    assert result["rounds_completed"] == 4
    assert "stop_cond" in result["stop_reason"]
    assert (ws / "server" / "best_FL_global_model.safetensors").exists()
    assert result["best"]["round"] == 3


def test_a_crashing_script_fails_the_job_naming_the_site(tmp_path, simulate):
    job = export(tmp_path, num_rounds=5, train_args="--crash-round 1 --crash-site site-2")
    start = time.monotonic()
    proc, ws = simulate(job, timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "site-2" in proc.stderr and "round 1" in proc.stderr
    assert "injected failure in round 1" in proc.stderr
    assert elapsed < 10, f"failure took {elapsed:.1f} s to surface"
    assert read_result(ws)["status"] == "failed"


def test_a_script_that_exits_without_init_fails_fast(tmp_path, simulate):
    script = tmp_path / "noinit.py"
    script.write_text("import sys\nprint('bye')\nsys.exit(3)\n")
    job = FedAvgRecipe(name="noinit", min_clients=2, num_rounds=2, model=MODEL,
                       train_script=str(script)).export(str(tmp_path / "job"))
    start = time.monotonic()
    proc, ws = simulate(job, timeout=60)
    assert proc.returncode == 1
    assert "exited with code 3" in proc.stderr and "site-" in proc.stderr
    assert time.monotonic() - start < 10


def test_bad_job_folder_is_a_usage_error(tmp_path, simulate):
    proc, _ = simulate(tmp_path / "missing")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


def test_patience_stops_after_rounds_without_improvement(tmp_path, simulate):
    script = tmp_path / "flat.py"
    script.write_text(
        "import ember.client as flare\n"
        "flare.init()\n"
        "while flare.is_running():\n"
        "    m = flare.receive()\n"
        "    if m is None: break\n"
        "    acc = [0.5, 0.7, 0.6, 0.6, 0.65, 0.9][m.current_round]\n"
        "    flare.send(flare.FLModel(params=m.params, metrics={'accuracy': acc}))\n")
    job = FedAvgRecipe(name="patience", min_clients=2, num_rounds=6, model=MODEL, patience=2,
                       train_script=str(script)).export(str(tmp_path / "job"))
    proc, ws = simulate(job)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(ws)
    assert result["status"] == "stopped_early" and "patience" in result["stop_reason"]
    assert result["rounds_completed"] == 4  # best in round 1, no improvement in rounds 2 and 3
    assert result["best"] == {"round": 1, "value": 0.7,
                              "path": str(ws / "server" / "best_FL_global_model.safetensors")}


def test_a_script_that_never_calls_init_times_out(tmp_path, simulate):
    script = tmp_path / "sleepy.py"
    script.write_text("import time\ntime.sleep(600)\n")
    job = FedAvgRecipe(name="sleepy", min_clients=1, num_rounds=1, model=MODEL,
                       train_script=str(script),
                       per_site_config={"site-1": {"init_timeout": 2}}).export(str(tmp_path / "job"))
    start = time.monotonic()
    proc, ws = simulate(job, n=1, timeout=60)
    assert proc.returncode == 1
    assert "did not call init()" in proc.stderr and "site-1" in proc.stderr
    assert time.monotonic() - start < 15


def test_launch_once_false_starts_a_script_per_round(tmp_path, simulate):
    job = export(tmp_path, launch_once=False)
    proc, ws = simulate(job)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_rounds(ws, 2, 3, "FULL")
    log = (ws / "site-1" / "log.txt").read_text()
    assert log.count("launching training script") == 3
