"""hello-cpp: federated averaging with a training program written in C++.

The client is the compiled `hello_cpp_client` (client.cc, built by CMake); Ember runs it
directly (command="") and it talks to its site through include/ember/client.h.

    make build && cd examples/hello-cpp && python3 job.py   # or, from the repo root: make demo-cpp
"""
import argparse
import json
import os
import sys

import numpy as np

from ember.recipe import FedAvgRecipe, SimEnv

HERE = os.path.dirname(os.path.abspath(__file__))


def find_client_binary():
    """EMBER_HELLO_CPP_CLIENT, else next to EMBER_BIN's build tree, else <repo>/build."""
    candidates = [os.environ.get("EMBER_HELLO_CPP_CLIENT")]
    if os.environ.get("EMBER_BIN"):  # <build>/apps/ember/ember
        build = os.path.dirname(os.path.dirname(os.path.dirname(os.environ["EMBER_BIN"])))
        candidates.append(os.path.join(build, "examples", "hello-cpp", "hello_cpp_client"))
    candidates.append(os.path.join(HERE, "..", "..", "build", "examples", "hello-cpp", "hello_cpp_client"))
    for path in filter(None, candidates):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
    sys.exit("hello_cpp_client is not built: run `make build` (or set EMBER_HELLO_CPP_CLIENT)")


def print_metrics(result_dir):
    """Prints the global model's metrics per round from the server's metrics.jsonl."""
    path = os.path.join(result_dir or "", "metrics.jsonl")
    if not os.path.isfile(path):
        print(f"no metrics at {path}")
        return
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    names = sorted({name for row in rows for name in row.get("metrics", {})})
    print("round  sites  " + "  ".join(f"{name:>8}" for name in names))
    for row in rows:
        values = (row.get("metrics", {}).get(name) for name in names)
        print(f"{row['round']:5d}  {len(row.get('sites', [])):5d}  "
              + "  ".join(f"{v:8.3f}" if v is not None else f"{'-':>8}" for v in values))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_clients", type=int, default=2)
    parser.add_argument("--num_rounds", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--workspace", default=None, help="simulation workspace root")
    parser.add_argument("--export_config", default=None, help="only write the job folder here")
    args = parser.parse_args()

    recipe = FedAvgRecipe(
        name="hello-cpp",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        model={"w": np.zeros(30, np.float32), "b": np.zeros(1, np.float32)},
        train_script=find_client_binary(),
        train_args=f"--lr {args.lr} --num_sites {args.n_clients}",
        command="",  # no interpreter: run the binary itself
    )
    if args.export_config:
        print("job folder:", recipe.export(args.export_config))
        return

    env = SimEnv(num_clients=args.n_clients, **({"workspace_root": args.workspace} if args.workspace else {}))
    run = recipe.execute(env)
    status = run.get_status()
    print("status:", status)
    print("result:", run.get_result())
    print_metrics(run.get_result())
    sys.exit(0 if status in ("completed", "stopped_early") else 1)


if __name__ == "__main__":
    main()
