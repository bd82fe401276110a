"""deeplift 0.5's ``deeplift.conversion.keras_conversion``: converting a live Keras model
object (Keras 0.x/1.x in the original; any Keras here), read through `fastlift.from_keras`
(duck-typed: Keras is never imported).

* `convert_sequential_model`: a ``Sequential``; layers named by their index (``"0"``,
  ``"preact_0"``...) after ``"input"``, as `SequentialModel.get_layers` lists them.
* `convert_functional_model`, `convert_graph_model`: a functional ``Model`` or a Keras 0.x
  ``Graph``; layers named by their Keras layer (a Graph's node) name, a shared layer's
  further calls ``"<name>_<k>"`` (the original numbered every call of a shared layer from
  ``_0``), pre-activations ``"preact_<name>"``. Where a Graph node merges several inputs,
  the merge is the layer ``"<node>_merge"`` (the original named it ``"merge_before_<node>"``).

The modes and ``layer_overrides`` are those of deeplift 0.6's ``kerasapi_conversion``
(the same rules: `fastlift.compat.layers`); ``num_dims`` and ``auto_build_outputs`` are
accepted and have no effect (fastlift builds every output).
"""

from __future__ import annotations

import sys

from ...io.live import read_live
from ...io.loader import options
from .. import layers as dl_layers
from ..layers import ConvMxtsMode, DenseMxtsMode, NonlinearMxtsMode
from .kerasapi_conversion import _convert, _options

__all__ = ["convert_functional_model", "convert_graph_model", "convert_sequential_model"]

_KINDS = {"convert_sequential_model": ("sequential",), "convert_functional_model": ("functional",),
          "convert_graph_model": ("functional",)}


def _modes(nonlinear_mxts_mode, verbose, dense_mxts_mode, conv_mxts_mode, maxpool_deeplift_mode):
    return {"nonlinear_mxts_mode": nonlinear_mxts_mode, "verbose": verbose, "dense_mxts_mode": dense_mxts_mode,
            "conv_mxts_mode": conv_mxts_mode, "maxpool_deeplift_mode": maxpool_deeplift_mode}


def _convert_object(fn, model, kwargs):
    opts = _options(kwargs)
    loaded = read_live(model, options(layer_classes=dl_layers.ORIGINAL_CLASSES))
    if loaded.spec.kind not in _KINDS[fn]:
        want = "Sequential" if fn == "convert_sequential_model" else "functional Model or Graph"
        raise ValueError(f"{fn} takes a {want}; the model is a {loaded.spec.kind} model (use "
                         f"{'convert_sequential_model' if loaded.spec.kind == 'sequential' else 'convert_functional_model'})")
    if opts["verbose"]:
        print("nonlinear_mxts_mode is set to: " + str(opts["nonlinear_mxts_mode"]))
        sys.stdout.flush()
    return _convert(loaded, opts, None if loaded.spec.kind == "sequential" else _graph_name)


def _graph_name(origin, top_kind):
    """0.5's names in a functional model or Graph: the layer (node) name, no call suffix for
    a layer's first call."""
    prefix = ""
    for frame in origin.frames:
        part = frame.layer if frame.ref_index == 0 or frame.kind == "sequential" else f"{frame.layer}_{frame.ref_index}"
        prefix = f"{prefix}_{part}" if prefix else part
    if origin.role in ("input", "output"):
        return prefix
    return f"{origin.role}_{prefix}"


def convert_sequential_model(model, num_dims=None, nonlinear_mxts_mode=NonlinearMxtsMode.DeepLIFT_GenomicsDefault,
                             verbose=True, dense_mxts_mode=DenseMxtsMode.Linear, conv_mxts_mode=ConvMxtsMode.Linear,
                             maxpool_deeplift_mode=dl_layers.MaxPoolDeepLiftMode.gradient, layer_overrides=None):
    """A live Keras ``Sequential`` -> `fastlift.compat.models.SequentialModel`."""
    modes = _modes(nonlinear_mxts_mode, verbose, dense_mxts_mode, conv_mxts_mode, maxpool_deeplift_mode)
    return _convert_object("convert_sequential_model", model, {**modes, "layer_overrides": layer_overrides})


def convert_functional_model(model, nonlinear_mxts_mode=NonlinearMxtsMode.DeepLIFT_GenomicsDefault, verbose=True,
                             dense_mxts_mode=DenseMxtsMode.Linear, conv_mxts_mode=ConvMxtsMode.Linear,
                             maxpool_deeplift_mode=dl_layers.MaxPoolDeepLiftMode.gradient, auto_build_outputs=True):
    """A live functional Keras ``Model`` -> `fastlift.compat.models.GraphModel`."""
    return _convert_object("convert_functional_model", model,
                           _modes(nonlinear_mxts_mode, verbose, dense_mxts_mode, conv_mxts_mode, maxpool_deeplift_mode))


def convert_graph_model(model, nonlinear_mxts_mode=NonlinearMxtsMode.DeepLIFT_GenomicsDefault, verbose=True,
                        dense_mxts_mode=DenseMxtsMode.Linear, conv_mxts_mode=ConvMxtsMode.Linear,
                        maxpool_deeplift_mode=dl_layers.MaxPoolDeepLiftMode.gradient, auto_build_outputs=True):
    """A live Keras 0.x ``Graph`` -> `fastlift.compat.models.GraphModel`."""
    return _convert_object("convert_graph_model", model,
                           _modes(nonlinear_mxts_mode, verbose, dense_mxts_mode, conv_mxts_mode, maxpool_deeplift_mode))
