"""deeplift 0.6's ``deeplift.conversion.kerasapi_conversion``, reading files with `fastlift.io`.

`convert_model_from_saved_files` reads every format `fastlift.load_model` reads (the
original read only Keras 2.2.x ``.h5``; tf.keras 2.x files made it fail with
``TypeError: can only concatenate str (not "KeysViewHDF5")``), and supports the layers
the original lacked (Add, Subtract, Average, cropping, padding, reshapes, more
activations, dilated/causal convolutions, 2-D global pooling). Names follow the original:

* Sequential: ``"input"``, then per Keras layer its index in the config's layer list
  (``"1"``; with an activation ``"preact_1"`` then ``"1"``); a nested Sequential's
  layers are ``"<i>-<j>"``.
* Functional: ``"<layer>_<node>"`` (``"inp1_0"``, ``"preact_dense_0"``, ``"dense_0"``; a
  shared layer's calls ``_0``, ``_1``...), nested models ``"<model>_<node>_<layer>_<n>"``
  with the node index as the config numbers it (Keras 2 numbers a nested model's calls
  from 1, Keras 3 from 0).
"""

from __future__ import annotations

import sys

from ...io.loader import read_keras
from ...layers.conv import Convolution
from ...plan import linear_sources
from .. import layers as dl_layers
from .. import models
from ..layers import (
    ConvMxtsMode,
    DenseMxtsMode,
    MaxPoolDeepLiftMode,
    NonlinearMxtsMode,
    OriginalActivation,
    OriginalPReLU,
)

__all__ = ["convert_model_from_saved_files"]


def convert_model_from_saved_files(h5_file, json_file=None, yaml_file=None, **kwargs):
    """Convert a saved Keras model to a deeplift model (`SequentialModel` or `GraphModel`).

    Parameters
    ----------
    h5_file : str
        A full model file (``.h5`` from ``model.save``, or a Keras 3 ``.keras``), or the
        weights (``model.save_weights``) when ``json_file`` is given.
    json_file : str, optional
        The architecture from ``model.to_json()``.
    yaml_file : str, optional
        Not supported: YAML configs can execute code when loaded (Keras itself removed
        ``to_yaml``). Convert with ``json_file`` instead.
    nonlinear_mxts_mode : str, default NonlinearMxtsMode.DeepLIFT_GenomicsDefault
    verbose : bool, default True
    dense_mxts_mode, conv_mxts_mode : only ``"Linear"``
    maxpool_deeplift_mode : only ``"gradient"``
    layer_overrides : dict, optional
        Per layer (Sequential: Keras layer index; functional: deeplift node id such as
        ``"dense_0"``) a dict that may set ``nonlinear_mxts_mode``.
    """
    if json_file is not None and yaml_file is not None:
        raise ValueError("At most one of json_file and yaml_file can be specified")
    if yaml_file is not None:
        raise NotImplementedError("yaml_file is not supported: loading YAML can run code from the file. Save the "
                                  "architecture with model.to_json() and pass json_file=")
    opts = _options(kwargs)
    loaded = read_keras(h5_file, json_file, layer_classes=dl_layers.ORIGINAL_CLASSES)
    if opts["verbose"]:
        print("nonlinear_mxts_mode is set to: " + str(opts["nonlinear_mxts_mode"]))
        sys.stdout.flush()
    return _convert(loaded, opts)


def _options(kwargs):
    known = {"nonlinear_mxts_mode": NonlinearMxtsMode.DeepLIFT_GenomicsDefault, "verbose": True,
             "dense_mxts_mode": DenseMxtsMode.Linear, "conv_mxts_mode": ConvMxtsMode.Linear,
             "maxpool_deeplift_mode": MaxPoolDeepLiftMode.gradient, "layer_overrides": None,
             "custom_conversion_funcs": None}
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(f"convert_model_from_saved_files() got unexpected keyword argument(s) {unknown}")
    opts = {k: kwargs.get(k, v) for k, v in known.items()}
    if opts["nonlinear_mxts_mode"] not in NonlinearMxtsMode.vals:
        raise ValueError(f"nonlinear_mxts_mode must be one of {NonlinearMxtsMode.vals}; got "
                         f"{opts['nonlinear_mxts_mode']!r}")
    for key, enum in (("dense_mxts_mode", DenseMxtsMode), ("conv_mxts_mode", ConvMxtsMode),
                      ("maxpool_deeplift_mode", MaxPoolDeepLiftMode)):
        if opts[key] not in enum.vals:
            raise ValueError(f"{key} must be one of {enum.vals} (the only mode(s) deeplift 0.6 has); got "
                             f"{opts[key]!r}")
    if opts["custom_conversion_funcs"]:
        raise NotImplementedError("custom_conversion_funcs are not supported: they build deeplift (TensorFlow 1) "
                                  "layers. Build the model with fastlift.layers instead")
    overrides = opts["layer_overrides"] or {}
    if not isinstance(overrides, dict):
        raise TypeError(f"layer_overrides must be a dict; got {type(overrides).__name__}")
    for key, value in overrides.items():
        if not isinstance(value, dict) or set(value) - {"nonlinear_mxts_mode", "dense_mxts_mode", "conv_mxts_mode"}:
            raise ValueError(f"layer_overrides[{key!r}] must be a dict of nonlinear_mxts_mode / dense_mxts_mode / "
                             f"conv_mxts_mode; got {value!r}")
        mode = value.get("nonlinear_mxts_mode", NonlinearMxtsMode.Rescale)
        if mode not in NonlinearMxtsMode.vals:
            raise ValueError(f"layer_overrides[{key!r}]: unknown nonlinear_mxts_mode {mode!r}")
    opts["layer_overrides"] = overrides
    return opts


def deeplift_name(origin, top_kind) -> str:
    """The original's name of a node, from where the node came from in the Keras config."""
    prefix = ""
    for frame in origin.frames:
        if frame.kind == "sequential":
            prefix = (prefix + "-" if prefix else "") + str(frame.position)
        else:
            prefix = (prefix + "_" if prefix else "") + f"{frame.layer}_{frame.ref_index}"
    if origin.role == "input":
        return "input" if top_kind == "sequential" and len(origin.frames) == 1 else prefix
    if origin.role == "output":
        return prefix
    return f"{origin.role}_{prefix}"


def _override_key(origin, top_kind):
    first = origin.frames[0]
    if top_kind == "sequential":
        return first.position
    return f"{first.layer}_{first.ref_index}"


def _convert(loaded, opts, naming=None):
    """``naming(origin, top_kind)``: the deeplift name of a node (default `deeplift_name`)."""
    model = loaded.model
    top_kind = loaded.spec.kind
    naming = naming or deeplift_name
    names, layers, by_node = {}, [], {}
    for node in model.nodes:
        origin = loaded.origins[node.name]
        name = naming(origin, top_kind)
        if name in names:  # cannot happen with valid Keras names; keep names unique regardless
            name = f"{name}#{node.name}"
        names[name] = node
        cls = dl_layers.layer_class(node)
        layer = cls(name, node, inputs=[by_node[i.name] for i in node.inputs] or None)
        if len(node.inputs) == 1:
            layer.inputs = by_node[node.inputs[0].name]
        by_node[node.name] = layer
        layers.append(layer)
        if isinstance(node.layer, (OriginalActivation, OriginalPReLU)):
            mode = opts["layer_overrides"].get(_override_key(origin, top_kind), {}).get(
                "nonlinear_mxts_mode", opts["nonlinear_mxts_mode"])
            if mode == NonlinearMxtsMode.DeepLIFT_GenomicsDefault:
                mode = _resolve_genomics_default(node, layer, by_node, opts["verbose"])
            node.layer.modes[node.name] = mode
            layer.nonlinear_mxts_mode = mode
    inputs = [by_node[n.name] for n in model.inputs]
    if top_kind == "sequential":
        return models.SequentialModel(model, layers, inputs)
    return models.GraphModel(model, layers, inputs)


def _resolve_genomics_default(node, layer, by_node, verbose):
    """DeepLIFT_GenomicsDefault: Rescale after a convolution, RevealCancel after a Dense,
    looking back through BatchNormalization and NoOp (Dropout) layers.

    Extension (the original cannot load residual models at all): an activation after a merge
    (Add/Subtract/Average/Concatenate), cropping, padding or a reshape is resolved by the
    linear layers that feed it (`fastlift.plan.linear_sources`): Rescale when all are
    convolutions, RevealCancel when all are Dense, an error when they mix."""
    found, blocker = linear_sources(node)
    names = [by_node[n.name].name for n in found]
    if verbose:
        print(f"For layer {layer.name} the preceding linear layer(s): {', '.join(names) or 'none'};")
    kinds = {isinstance(n.layer, Convolution) for n in found}
    if blocker is None and kinds == {True}:
        mode = NonlinearMxtsMode.Rescale
    elif blocker is None and kinds == {False}:
        mode = NonlinearMxtsMode.RevealCancel
    elif blocker is not None:
        raise RuntimeError(f"Unsure how to resolve {NonlinearMxtsMode.DeepLIFT_GenomicsDefault} when the preceding "
                           f"linear layer is of type {type(by_node[blocker.name]).__name__}")
    else:
        raise RuntimeError(f"Unsure how to resolve {NonlinearMxtsMode.DeepLIFT_GenomicsDefault} for layer "
                           f"{layer.name}: it is fed by both convolutions and Dense layers ({', '.join(names)})")
    if verbose:
        print(f"In accordance with nonlinear_mxts_mode={NonlinearMxtsMode.DeepLIFT_GenomicsDefault} we are setting "
              f"the NonlinearMxtsMode to {mode}")
    return mode

