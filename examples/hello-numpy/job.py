"""hello-numpy: federated averaging of a numpy logistic-regression model on the digits.

    cd examples/hello-numpy && python3 job.py        # or, from the repo root: make demo
"""
import argparse
import json
import os
import sys

import numpy as np

from ember.recipe import FedAvgRecipe, SimEnv


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
        name="hello-numpy",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        model={"w": np.zeros((64, 10), np.float32), "b": np.zeros(10, np.float32)},
        train_script=os.path.join(os.path.dirname(os.path.abspath(__file__)), "client.py"),
        train_args=f"--lr {args.lr} --num_sites {args.n_clients}",
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
