"""The same benchmark models in PyTorch, from the same numpy weight specs (bench/models.py).

PyTorch takes sequences as (N, 4, L); fastlift as (N, L, 4). Flatten transposes to
channels-last first so the dense weights are shared unchanged.
"""

import torch
from torch import nn


class _Net(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.mods = nn.ModuleList()
        self.plan = []
        for layer in spec["layers"]:
            kind = layer["kind"]
            if kind == "conv":
                k, cin, cout = layer["kernel"].shape
                d = layer["dilation"]
                pad = (k - 1) * d // 2 if layer["padding"] == "same" else 0
                conv = nn.Conv1d(cin, cout, k, dilation=d, padding=pad)
                conv.weight.data = torch.from_numpy(layer["kernel"].transpose(2, 1, 0).copy())
                conv.bias.data = torch.from_numpy(layer["bias"].copy())
                self.mods.append(conv)
                relu = nn.ReLU() if layer["relu"] else None
                if relu is not None:
                    self.mods.append(relu)
                self.plan.append(("conv", conv, relu, layer.get("residual", False)))
            elif kind == "maxpool":
                pool = nn.MaxPool1d(layer["size"])
                self.mods.append(pool)
                self.plan.append(("pool", pool, None, False))
            elif kind == "gap":
                self.plan.append(("gap", None, None, False))
            elif kind == "flatten":
                self.plan.append(("flatten", None, None, False))
            elif kind == "dense":
                n_in, n_out = layer["kernel"].shape
                lin = nn.Linear(n_in, n_out)
                lin.weight.data = torch.from_numpy(layer["kernel"].T.copy())
                lin.bias.data = torch.from_numpy(layer["bias"].copy())
                self.mods.append(lin)
                relu = nn.ReLU() if layer["relu"] else None
                if relu is not None:
                    self.mods.append(relu)
                self.plan.append(("dense", lin, relu, False))

    def forward(self, x):
        h = x
        for kind, mod, relu, residual in self.plan:
            if kind in ("conv", "dense"):
                y = mod(h)
                if relu is not None:
                    y = relu(y)
                h = h + y if residual else y
            elif kind == "pool":
                h = mod(h)
            elif kind == "gap":
                h = h.mean(dim=-1)
            elif kind == "flatten":
                h = h.transpose(1, 2).flatten(1) if h.dim() == 3 else h.flatten(1)
        return h


def build_torch(spec) -> nn.Module:
    return _Net(spec).eval()


def to_torch_layout(x, sequence=True):
    """fastlift (N, L, 4) / (N, K, L, 4) -> torch (N, 4, L) / (N, K, 4, L); non-sequence inputs unchanged."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    if sequence:
        x = np.swapaxes(x, -1, -2)
    return torch.from_numpy(np.ascontiguousarray(x))
