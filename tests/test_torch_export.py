"""fastlift.torch.to_fastlift: a live PyTorch module through ONNX in memory. The export tests need
torch (not a test dependency: they run where it is installed); the ImportError test runs always."""

import sys

import numpy as np
import pytest

import fastlift as fl


def test_without_torch_the_error_says_how_to_install_it(monkeypatch):
    from fastlift.torch import to_fastlift

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'fastlift\[torch\]'"):
        to_fastlift(object(), None)


def _module(torch):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 6, 5, padding=2)
            self.bn = torch.nn.BatchNorm1d(6)
            self.drop = torch.nn.Dropout(0.5)
            self.fc = torch.nn.Linear(6, 2)

        def forward(self, seq):
            h = self.drop(torch.nn.functional.gelu(self.bn(self.conv(seq))))
            return self.fc(h.mean(dim=2))

    torch.manual_seed(0)
    net = Net()
    net.bn.running_mean.uniform_(-0.5, 0.5)
    net.bn.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("dynamo", [False, True])
def test_to_fastlift_equals_the_module_and_restores_its_mode(dynamo):
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    from fastlift.torch import to_fastlift

    net = _module(torch)
    net.train()
    model = to_fastlift(net, torch.zeros(1, 4, 30), dynamo=dynamo)
    assert net.training
    assert model.input_names == ["seq"] and model.input_layout == "channels_first"
    X = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (5, 30))].transpose(0, 2, 1).copy()
    net.eval()
    with torch.no_grad():
        want = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-5, atol=1e-6)
    res = fl.deeplift(model, X, fl.references.dinuc_shuffle(2), hypothetical=True, dtype="float64")
    assert np.abs(res.deltas).max() < 1e-10


def test_to_fastlift_checks_its_arguments():
    torch = pytest.importorskip("torch")
    from fastlift.torch import to_fastlift

    with pytest.raises(TypeError, match="torch.nn.Module"):
        to_fastlift(lambda x: x, torch.zeros(1, 4, 3))
    with pytest.raises(TypeError, match="example_input"):
        to_fastlift(_module(torch), np.zeros((1, 4, 3)))
