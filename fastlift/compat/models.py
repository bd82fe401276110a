"""deeplift 0.6's ``deeplift.models``: `SequentialModel` and `GraphModel`, running on fastlift.

The functions they return are called as in the original::

    f = model.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=-2)
    scores = np.array(f(task_idx=0, input_data_list=[X], input_references_list=[ref],
                        batch_size=200, progress_update=None))

* ``input_data_list``: a list with one array per input (or, for a `GraphModel`, a dict
  keyed by the deeplift input names such as ``"inp1_0"``); arrays may be lists of rows.
* ``input_references_list``: None (prints ``No reference provided - using zeros``), or a
  list / dict of references, each broadcast as ``np.ones_like(x) * ref`` (a scalar, a
  per-channel ``(1, 1, C)`` array or full arrays all work).
* returns a list of per-example float32 arrays (wrap in ``np.array``); with a list of
  score layers, a list of such lists.

Differences from the original, none of which change numbers: each call is stateless
(the original's task index was a shared TF variable); ``get_target_multipliers_func``
also works for non-input layers (the original had ``get_mxts`` on inputs only), giving
½(m⁺ + m⁻) there too; targets may be any layer shape (task_idx indexes the flattened
output; the original needed 2-D targets).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from .. import explain
from . import layers as dl_layers


class Model:
    """Common machinery of `SequentialModel` and `GraphModel`."""

    def __init__(self, fl_model, layers_in_order, input_layers):
        self._fl_model = fl_model
        self._ordered = layers_in_order
        self._inputs = input_layers

    @property
    def fastlift_model(self):
        """The underlying `fastlift.Model` (node names are fastlift's, not deeplift's)."""
        return self._fl_model

    def get_target_contribs_func(self, *args, **kwargs):
        return self._get_func(*args, func_type="contribs", **kwargs)

    def get_target_multipliers_func(self, *args, **kwargs):
        return self._get_func(*args, func_type="multipliers", **kwargs)

    def _make_func(self, find_scores_layers, target_layer, func_type):
        unwrap = not isinstance(find_scores_layers, list)
        score_layers = [find_scores_layers] if unwrap else list(find_scores_layers)
        self._check_target(target_layer)
        fl_model = self._fl_model
        input_nodes = [layer.node_name for layer in self._inputs]
        score_nodes = [layer.node_name for layer in score_layers]
        input_names = [layer.name for layer in self._inputs]
        zero_layers = [dl_layers.is_max_pool(layer.node) for layer in score_layers]

        def func(task_idx, input_data_list, batch_size, progress_update, input_references_list=None):
            if isinstance(input_data_list, dict):
                input_data_list = _from_dict(input_data_list, input_names, "input_data_list")
            if not isinstance(input_data_list, (list, tuple)):
                raise TypeError(f"input_data_list must be a list (one entry per input) or a dict keyed by "
                                f"{input_names}; got {type(input_data_list).__name__}")
            if len(input_data_list) != len(input_nodes):
                raise ValueError(f"input_data_list must hold {len(input_nodes)} entries, one per input "
                                 f"{input_names}; got {len(input_data_list)}")
            if input_references_list is None:
                print("No reference provided - using zeros")
                input_references_list = [0.0 for _ in input_data_list]
            if isinstance(input_references_list, dict):
                input_references_list = _from_dict(input_references_list, input_names, "input_references_list")
            if not isinstance(input_references_list, (list, tuple)) or len(input_references_list) != len(input_nodes):
                raise ValueError(f"input_references_list must be None, a dict, or a list of {len(input_nodes)} "
                                 f"reference(s), one per input {input_names}")
            if isinstance(task_idx, bool) or not isinstance(task_idx, numbers.Integral):
                raise TypeError(f"task_idx must be an int; got {task_idx!r}")
            if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
                raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
            xs = [np.asarray(x, dtype=np.float32) for x in input_data_list]
            try:
                refs = [np.asarray(np.ones_like(x) * np.asarray(r, dtype=np.float32), dtype=np.float32)
                        for x, r in zip(xs, input_references_list)]
            except ValueError as e:
                raise ValueError(f"input_references_list: a reference does not broadcast to its input ({e})") from None
            for x, r, name in zip(xs, refs, input_names):
                if r.shape != x.shape:
                    raise ValueError(f"the reference of input {name!r} broadcasts to shape {r.shape}, not the input's "
                                     f"{x.shape}")
            n = xs[0].shape[0] if xs[0].ndim else 0
            results = [[] for _ in score_layers]
            i = 0
            while i < n:
                if progress_update is not None and i % progress_update == 0:
                    print("Done", i)
                bx = [x[i:i + batch_size] for x in xs]
                br = [r[i:i + batch_size] for r in refs]
                if len(bx) == 1:  # one input: plain arrays (a list of one array would read as K references)
                    bx, br = bx[0], br[0]
                res = explain.deeplift(fl_model, bx, br, rule="rescale", target=int(task_idx),
                                       target_layer=target_layer.node_name, layers=score_nodes, dtype="float32",
                                       max_pool="gradient")
                values = res.contributions if func_type == "contribs" else res.multipliers
                for k, (v, zero) in enumerate(zip(values, zero_layers)):
                    if zero and func_type == "contribs":
                        v = np.zeros_like(v)  # quirk 4 in fastlift.compat.layers
                    results[k].extend(np.asarray(v, dtype=np.float32))
                i += batch_size
            return results[0] if unwrap else results

        return func

    def _check_target(self, target_layer):
        if isinstance(target_layer, dl_layers.Activation):
            raise RuntimeError("You set the target layer to an activation layer, which is unusual so I am throwing "  # noqa: TRY004
                               "an error - did you mean to set the target layer to the layer *before* the "
                               "activation layer instead? (recommended for classification)")
        if isinstance(target_layer, dl_layers.Input):
            raise RuntimeError(f"the target layer {target_layer.name!r} is an input layer")  # noqa: TRY004
        users = [n for n in self._fl_model.nodes if target_layer.node in n.inputs]
        if len(users) > 1:
            warnings.warn(f"target layer {target_layer.name!r} has {len(users)} output layers", stacklevel=3)
        elif users and dl_layers.layer_class(users[0]) is not None and not issubclass(
                dl_layers.layer_class(users[0]), dl_layers.Activation):
            warnings.warn(f"there is a layer after your target layer {target_layer.name!r} but it is not an "
                          "activation layer; if doing regression, set the target layer to the last layer",
                          stacklevel=3)


def _from_dict(d, names, what):
    missing = [n for n in names if n not in d]
    if missing:
        raise KeyError(f"{what} has no entry for input(s) {missing}; the model's input names are {names}")
    return [d[n] for n in names]


class SequentialModel(Model):
    """A converted Sequential model: layers addressed by index in `get_layers`."""

    def get_layers(self):
        """The deeplift layers in order: ``input``, then one (or ``preact_<i>`` and ``<i>``) per
        Keras layer, named by the Keras layer's index in the model config."""
        return self._ordered

    def _get_func(self, find_scores_layer_idx, target_layer_idx=-2, func_type="contribs"):
        layers = self.get_layers()
        if isinstance(find_scores_layer_idx, list):
            find = [_index(layers, i, "find_scores_layer_idx") for i in find_scores_layer_idx]
        else:
            find = _index(layers, find_scores_layer_idx, "find_scores_layer_idx")
        return self._make_func(find, _index(layers, target_layer_idx, "target_layer_idx"), func_type)


def _index(layers, idx, what):
    if isinstance(idx, bool) or not isinstance(idx, numbers.Integral):
        raise TypeError(f"{what} must be an int index into get_layers(); got {idx!r}")
    if not -len(layers) <= idx < len(layers):
        raise IndexError(f"{what}={idx} is out of range for a model with {len(layers)} layers "
                         f"{[layer.name for layer in layers]}")
    return layers[idx]


class GraphModel(Model):
    """A converted functional model: layers addressed by name (``<layer>_<node>``)."""

    def get_name_to_layer(self):
        return {layer.name: layer for layer in self._ordered}

    def get_name_to_blob(self):
        """deeplift 0.5's name (layers were "blobs" then): `get_name_to_layer`."""
        return self.get_name_to_layer()

    def get_input_layer_names(self):
        return [layer.name for layer in self._inputs]

    def _get_func(self, find_scores_layer_name, pre_activation_target_layer_name, func_type="contribs"):
        by_name = self.get_name_to_layer()

        def get(name, what):
            if name not in by_name:
                raise KeyError(f"{what}={name!r} is not a layer of the model; its layers are {list(by_name)}")
            return by_name[name]

        if isinstance(find_scores_layer_name, list):
            find = [get(n, "find_scores_layer_name") for n in find_scores_layer_name]
        else:
            find = get(find_scores_layer_name, "find_scores_layer_name")
        target = get(pre_activation_target_layer_name, "pre_activation_target_layer_name")
        return self._make_func(find, target, func_type)
