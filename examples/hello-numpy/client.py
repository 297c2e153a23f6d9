"""hello-numpy client: multinomial logistic regression on the 8x8 digits, in plain numpy.

Each site trains on its own shard of the digits (chosen by its site name) and evaluates
the global model on a held-out test split shared by all sites.
"""
import argparse
import gzip
import re
import zlib

import numpy as np

import ember.client as flare

DIGITS = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
SEED = 1234


def load_digits(path=DIGITS):
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = data[:, :64] / 16.0
    # A fixed per-pixel normalization of the public data set (like MNIST's usual mean/std).
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 0.1)
    return x.astype(np.float32), data[:, 64].astype(np.int64)


def site_index(site_name):
    """site-1 -> 0, site-2 -> 1, ...; other names hash to a stable index."""
    m = re.fullmatch(r".*?(\d+)", site_name)
    return int(m.group(1)) - 1 if m else zlib.crc32(site_name.encode())


def site_shard(index, num_sites, n_test=360):
    """(x_train, y_train, x_test, y_test): a disjoint train shard per site, a common test split."""
    x, y = load_digits()
    order = np.random.default_rng(SEED).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    mine = train[index % num_sites::num_sites]
    return x[mine], y[mine], x[test], y[test]


def predict(params, x):
    return x @ params["w"] + params["b"]


def accuracy(params, x, y):
    return float(np.mean(np.argmax(predict(params, x), axis=1) == y))


def train(params, x, y, lr, epochs, batch_size, rng):
    """Mini-batch SGD on the softmax cross-entropy; returns new params and the step count."""
    w, b = params["w"].copy(), params["b"].copy()
    steps = 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            logits = x[idx] @ w + b
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1.0  # d(loss)/d(logits)
            w -= lr * x[idx].T @ p / len(idx)
            b -= lr * p.mean(axis=0)
            steps += 1
    return {"w": w.astype(np.float32), "b": b.astype(np.float32)}, steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_sites", type=int, default=2)
    args = parser.parse_args()

    flare.init()
    site = flare.system_info()["site_name"]
    index = site_index(site)
    x_train, y_train, x_test, y_test = site_shard(index, args.num_sites)
    print(f"{site}: {len(y_train)} training samples, {len(y_test)} test samples")

    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        params = {k: np.asarray(v, dtype=np.float32) for k, v in model.params.items()}
        acc = accuracy(params, x_test, y_test)
        print(f"{site} round {model.current_round}: global model accuracy {acc:.3f}")

        rng = np.random.default_rng([SEED, model.current_round, index])
        new_params, steps = train(params, x_train, y_train, args.lr, args.epochs, args.batch_size, rng)
        flare.send(flare.FLModel(params=new_params, params_type=flare.ParamsType.FULL,
                                 metrics={"accuracy": acc}, meta={"NUM_STEPS_CURRENT_ROUND": steps}))


if __name__ == "__main__":
    main()
