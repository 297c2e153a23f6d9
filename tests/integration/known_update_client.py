"""Training script for the exactness tests: returns known arrays and records every
global model it receives, so the test can check each round's aggregate independently.

site k (1-based) in round r sends FULL params  g + k*(r+1)  (or DIFF  k*(r+1)) with
NUM_STEPS_CURRENT_ROUND = k, metrics accuracy = 0.1*k + 0.1*r.
"""
import argparse
import pathlib

import numpy as np

import ember.client as flare

parser = argparse.ArgumentParser()
parser.add_argument("--mode", default="FULL")
parser.add_argument("--crash-round", type=int, default=-1)
parser.add_argument("--crash-site", default="")
args = parser.parse_args()

flare.init()
site = flare.system_info()["site_name"]
k = int(site.split("-")[1])
out = pathlib.Path("received")
out.mkdir(exist_ok=True)
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    r = model.current_round
    np.savez(out / f"round{r}.npz", **model.params)
    if r == args.crash_round and site == args.crash_site:
        raise RuntimeError(f"injected failure in round {r}")
    delta = np.float32(k * (r + 1))
    if args.mode == "FULL":
        params = {name: v + delta for name, v in model.params.items()}
        ptype = flare.ParamsType.FULL
    else:
        params = {name: np.full_like(v, delta) for name, v in model.params.items()}
        ptype = flare.ParamsType.DIFF
    flare.send(flare.FLModel(params=params, params_type=ptype,
                             metrics={"accuracy": 0.1 * k + 0.1 * r},
                             meta={"NUM_STEPS_CURRENT_ROUND": k}))
