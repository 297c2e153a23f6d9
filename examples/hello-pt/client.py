"""hello-pt client: trains a small CNN on this site's slice of Fashion-MNIST with PyTorch."""
import argparse
import gzip
import re
import zlib

import numpy as np
import torch
from torch import nn

import ember.client as flare
from model import Net

DATA = "/usr/share/datasets/fashion-mnist"
SEED = 1234


def read_idx(path):
    """An idx file (images: N x 28 x 28 uint8, labels: N uint8) as a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def to_tensors(images, labels):
    x = torch.from_numpy((images.astype(np.float32) / 255.0 - 0.2860) / 0.3530).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_data(site_name, n_train, n_test):
    """This site's disjoint slice of the training set, and the first test images."""
    m = re.fullmatch(r".*?(\d+)", site_name)
    index = int(m.group(1)) - 1 if m else zlib.crc32(site_name.encode()) % 16
    images, labels = read_idx(f"{DATA}/train-images-idx3-ubyte.gz"), read_idx(f"{DATA}/train-labels-idx1-ubyte.gz")
    mine = np.random.default_rng(SEED).permutation(len(labels))[index * n_train:(index + 1) * n_train]
    test_x, test_y = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz"), read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz")
    return index, to_tensors(images[mine], labels[mine]), to_tensors(test_x[:n_test], test_y[:n_test])


def evaluate(net, x, y):
    net.eval()
    with torch.no_grad():
        return (net(x).argmax(dim=1) == y).float().mean().item()


def train(net, x, y, epochs, batch_size, lr, generator):
    """Local SGD epochs; returns the number of optimizer steps."""
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
            steps += 1
    return steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--n_train", type=int, default=4000, help="training images per site")
    parser.add_argument("--n_test", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    flare.init()
    site = flare.system_info()["site_name"]
    index, (x, y), (test_x, test_y) = load_data(site, args.n_train, args.n_test)
    print(f"{site}: {len(y)} training images, {len(test_y)} test images")
    net = Net()

    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        # Torch tensors when the job's framework is pytorch, numpy arrays otherwise.
        net.load_state_dict({k: torch.as_tensor(v) for k, v in model.params.items()})
        acc = evaluate(net, test_x, test_y)
        print(f"{site} round {model.current_round}: global model accuracy {acc:.3f}")

        generator = torch.Generator().manual_seed(SEED * 1000 + model.current_round * 16 + index)
        steps = train(net, x, y, args.epochs, args.batch_size, args.lr, generator)
        params = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        flare.send(flare.FLModel(params=params, params_type=flare.ParamsType.FULL,
                                 metrics={"accuracy": acc}, meta={"NUM_STEPS_CURRENT_ROUND": steps}))


if __name__ == "__main__":
    main()
