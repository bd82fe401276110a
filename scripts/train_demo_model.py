"""Train the bundled demo model once and save its weights to fastlift/data/demo_model.npz.

    pip install torch==2.13.0   # train time only; fastlift never imports torch
    python scripts/train_demo_model.py [--steps 3000] [--seed 0]

The architecture is `fastlift.demo.build_model` (a miniature BPNet: conv 11 bp, two dilated
residual convs, a profile head and a counts head); the data are `fastlift.demo.simulate`
(40% GC background, AP-1 and E-box motifs planted at random, each adding a read footprint).
Losses as BPNet: multinomial negative log-likelihood of the read profile plus the squared
error of log total reads. The script checks that the fastlift model built from the saved
weights reproduces the PyTorch outputs, and prints held-out metrics.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fastlift import demo

FILTERS = 16
LENGTH = 200


def torch_model(torch):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0 = nn.Conv1d(4, FILTERS, 11, padding=5)
            self.dil1 = nn.Conv1d(FILTERS, FILTERS, 3, padding=2, dilation=2)
            self.dil2 = nn.Conv1d(FILTERS, FILTERS, 3, padding=4, dilation=4)
            self.profile_conv = nn.Conv1d(FILTERS, 1, 15, padding=7)
            self.counts = nn.Linear(FILTERS, 1)

        def forward(self, x):                      # x: (batch, 4, length)
            h = torch.relu(self.conv0(x))
            h = h + torch.relu(self.dil1(h))
            h = h + torch.relu(self.dil2(h))
            profile = self.profile_conv(h)[:, 0]   # (batch, length) logits
            counts = self.counts(h.mean(dim=2))    # (batch, 1) log total reads
            return profile, counts

    return Net()


def export(net) -> dict:
    """PyTorch (out, in, width) / (out, in) -> Keras (width, in, out) / (in, out), float32."""
    w = {}
    for name in ("conv0", "dil1", "dil2", "profile_conv"):
        layer = getattr(net, name)
        w[f"{name}/kernel"] = layer.weight.detach().numpy().transpose(2, 1, 0)
        w[f"{name}/bias"] = layer.bias.detach().numpy()
    w["counts/kernel"] = net.counts.weight.detach().numpy().T
    w["counts/bias"] = net.counts.bias.detach().numpy()
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=demo.WEIGHTS_FILE)
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    net = torch_model(torch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)

    def batch(seed, n):
        X, _, profile, _ = demo.simulate(n, LENGTH, seed)
        x = torch.from_numpy(X.transpose(0, 2, 1).copy())
        total = profile.sum(axis=1, keepdims=True)
        return x, torch.from_numpy(profile / total), torch.from_numpy(np.log(total))

    for step in range(args.steps):
        x, p_true, log_total = batch(1_000_000 + args.seed * 100_000 + step, args.batch)
        logits, counts = net(x)
        nll = -(p_true * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        mse = ((counts - log_total) ** 2).mean()
        loss = nll + 10.0 * mse
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  profile NLL {nll.item():.4f}  log-count MSE {mse.item():.4f}", flush=True)

    net.eval()
    with torch.no_grad():
        x, p_true, log_total = batch(7, 2000)  # held out: other seeds than training
        logits, counts = net(x)
        nll = -(p_true * torch.log_softmax(logits, dim=1)).sum(dim=1).mean().item()
        floor = -(p_true * torch.log(p_true)).sum(dim=1).mean().item()
        r = np.corrcoef(counts[:, 0].numpy(), log_total[:, 0].numpy())[0, 1]
    print(f"held out: profile NLL {nll:.4f} (entropy floor {floor:.4f}), log-count Pearson r {r:.4f}")

    weights = export(net)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, **weights)
    print(f"saved {args.out} ({os.path.getsize(args.out)} bytes)")

    # the fastlift model built from the file must reproduce PyTorch
    model = demo.build_model({k: v.astype(np.float64) for k, v in weights.items()}, LENGTH)
    prof, cnt = model.predict(x.numpy().transpose(0, 2, 1)[:64], dtype="float64")
    with torch.no_grad():
        t_prof, t_cnt = net(x[:64])
    err = max(np.abs(prof - t_prof.numpy()).max(), np.abs(cnt - t_cnt.numpy()).max())
    print(f"fastlift vs PyTorch outputs: max |difference| {err:.2e}")
    if err > 1e-4:
        raise SystemExit("the exported model does not match PyTorch")


if __name__ == "__main__":
    main()
