"""`to_fastlift`: a live PyTorch module -> a fastlift `Model`, through ONNX in memory.

>>> import fastlift.torch
>>> model = fastlift.torch.to_fastlift(bpnet, torch.zeros(1, 4, 2114))
>>> fl.deeplift(model, X, fl.references.dinuc_shuffle(20), hypothetical=True)   # X: (n, 4, 2114)

Needs ``pip install 'fastlift[torch]'`` (torch, onnx and onnxscript); fastlift itself never
imports torch anywhere else.
"""

from __future__ import annotations

import inspect
import io

from .io.onnx import load_onnx
from .model import Model


def to_fastlift(module, example_input, *, dynamo: bool = False, opset_version: int | None = None,
                input_names=None, output_names=None) -> Model:
    """Export ``module`` with ``torch.onnx.export`` into memory and load the result.

    Parameters
    ----------
    module : torch.nn.Module
        Exported in evaluation mode (dropout off, BatchNorm statistics fixed); its training
        flag is restored afterwards.
    example_input : torch.Tensor or tuple of Tensors
        One example batch per model input, e.g. ``torch.zeros(1, 4, 1000)``; its non-batch
        shape is the shape the loaded model takes (the batch axis stays free).
    dynamo : bool
        Use torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, needs onnxscript)
        instead of the TorchScript one.
    opset_version : int, optional
        ONNX opset (default 17 for the TorchScript exporter, the exporter's own for dynamo).
    input_names, output_names : list of str, optional
        Names of the model's inputs and outputs (default: the names of ``forward``'s
        parameters, and ``output_0, output_1, ...``), used by ``target_layer=`` and ``layers=``.

    Returns
    -------
    Model
        Channels-first like the module: DNA as (n, 4, length).

    Raises
    ------
    ImportError
        torch is not installed.
    NotImplementedError
        The module uses an op fastlift has no rule for (the message names the ONNX node).
    """
    try:
        import torch
    except ImportError:
        raise ImportError("fastlift.torch.to_fastlift needs PyTorch: pip install 'fastlift[torch]'") from None
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise TypeError(f"example_input must be a torch.Tensor or a tuple of them; got {type(example_input).__name__}")
    if input_names is None:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        input_names = [p.name for p in params[:len(args)]]
        if len(input_names) < len(args):
            input_names = [f"input_{k}" for k in range(len(args))]
    input_names = list(input_names)
    training = module.training
    module.eval()
    f = io.BytesIO()
    try:
        with torch.no_grad():
            if dynamo:
                batch = torch.export.Dim("batch", min=1, max=2**20)
                program = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                            output_names=output_names, opset_version=opset_version,
                                            dynamic_shapes=tuple({0: batch} for _ in args), verbose=False)
                program.save(f)
            else:
                torch.onnx.export(module, args, f, dynamo=False, opset_version=opset_version or 17,
                                  input_names=input_names, output_names=output_names,
                                  dynamic_axes={n: {0: "batch"} for n in input_names})
    finally:
        module.train(training)
    return load_onnx(f.getvalue(), label=f"{type(module).__name__} (exported to ONNX in memory)")


__all__ = ["to_fastlift"]
