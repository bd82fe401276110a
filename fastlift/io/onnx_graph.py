"""The ONNX reader's graph walk: `Converter` turns an ``onnx.ModelProto`` into a fastlift `Model`.

It keeps one value per ONNX tensor name: a numpy array (a constant), a fastlift `Node` (a computed
tensor; its shape is the ONNX shape without the batch axis) or a `fastlift.io.onnx_ops.Deferred`
piece of a pattern. Nodes are converted in the file's (topological) order: ops whose inputs are
all constants are folded (`fastlift.io.onnx_fold`), the others go to their converter in
`fastlift.io.onnx_ops`, which builds layers through the helpers here (`reshape`, `affine`,
`crop_pad`, `reduce`). Reshapes and constant scale/shifts compose, so shape plumbing and chains of
constant arithmetic leave at most one layer each.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .. import _validate
from .. import layers as L
from ..layers.base import Node
from ..model import Model
from . import onnx_fold
from .errors import ModelFileError
from .onnx_ops import ELEMENTWISE_OPS, FLOAT_TYPES, HANDLERS, SHAPE_OPS, SUPPORTED_OPS, Deferred, shown

#: Stands for a dynamic batch size in folded shapes (a prime no real dimension is).
BATCH = 2**31 - 1


class Converter:
    """Builds a fastlift `Model` from an ``onnx.ModelProto`` (one pass over its nodes)."""

    def __init__(self, proto, label, tensors, input_shape, opset):
        self.proto, self.graph, self.label = proto, proto.graph, label
        self.opset = opset
        self.tensors = tensors  # `onnx.ExternalData`
        self.input_shape = input_shape
        self.values: dict = {}
        self.batch = BATCH
        self.used: set[str] = set()
        self.tensor_names = {t for n in self.graph.node for t in list(n.input) + list(n.output)}
        self.tensor_names.update(i.name for i in self.graph.input)
        self.consumers: Counter = Counter(t for n in self.graph.node for t in n.input if t)
        self.consumers.update(o.name for o in self.graph.output)
        self.graph_outputs = {o.name for o in self.graph.output}
        self.matmul_kernels: dict = {}  # Dense node made from a bias-free MatMul -> its kernel
        #: Nodes of shape (1,) that stand for ONNX tensors of shape (N,): fastlift feature shapes have
        #: at least one axis, so a tensor with only the batch axis is kept as (N, 1).
        self.rows: set = set()
        self.node = None  # the NodeProto being converted (for messages)

    # ------------------------------------------------------------------ errors
    def where(self, node=None) -> str:
        node = node if node is not None else self.node
        return f"{self.label}: node {node.name or (node.output[0] if node.output else '')!r} ({node.op_type})"

    def unsupported(self, msg) -> NotImplementedError:
        return NotImplementedError(f"{self.where()}: {msg}")

    def bad(self, msg) -> ModelFileError:
        return ModelFileError(f"{self.where()}: {msg}")

    # ------------------------------------------------------------------ values
    def const(self, value, what):
        if isinstance(value, np.ndarray):
            return value
        raise self.unsupported(f"{what} must be a constant (an initializer or a value computable at load "
                               "time); here it is computed from the model input")

    def var(self, value, what="the input") -> Node:
        if isinstance(value, Node):
            return value
        if isinstance(value, Deferred):
            raise self.unsupported(f"{what} is {value.what}")
        raise self.unsupported(f"{what} is a constant; fastlift needs it computed from the model input")

    def name(self, tensor, suffix=None) -> str:
        """A unique layer name: the tensor's, or ``<tensor>/<suffix>`` for helper layers."""
        base = tensor if suffix is None else f"{tensor}/{suffix}"
        name, k = base, 1
        while name in self.used or (name != tensor and name in self.tensor_names):
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def full(self, x: Node) -> tuple:
        """x's ONNX shape, the batch axis first."""
        return (self.batch,) if x in self.rows else (self.batch,) + x.shape

    def axis(self, axis, ndim, what="axis") -> int:
        """A (possibly negative) axis of a tensor with ``ndim`` dimensions (batch included)."""
        a = int(axis)
        a = a + ndim if a < 0 else a
        if not 0 <= a < ndim:
            raise self.bad(f"{what} {axis} out of range for a tensor of {ndim} dimensions")
        return a

    # ------------------------------------------------------------------ build
    def build(self) -> Model:
        inits = {t.name for t in self.graph.initializer}
        for t in self.graph.initializer:
            self.values[t.name] = self.tensors.array(t, f"initializer {t.name!r}")
        inputs = [i for i in self.graph.input if i.name not in inits]
        if not inputs:
            raise ModelFileError(f"{self.label}: the graph has no inputs")
        nodes = {}
        for k, vi in enumerate(inputs):
            shape = self._input_shape(vi, len(inputs))
            node = L.Input(shape, name=self.name(vi.name))
            nodes[vi.name] = node
            self.values[vi.name] = node
        for node in self.graph.node:
            self.node = node
            self._convert(node)
        self.node = None
        outputs = [self._output(o) for o in self.graph.output]
        used = set()
        for o in outputs:
            stack = [o]
            while stack:
                n = stack.pop()
                if id(n) not in used:
                    used.add(id(n))
                    stack.extend(n.inputs)
        kept = [n for n in nodes.values() if id(n) in used]  # an input no output reads is left out
        try:
            return Model(kept, outputs, name=self.graph.name or "onnx_model", input_layout="channels_first")
        except (ValueError, TypeError) as e:
            raise ModelFileError(f"{self.label}: the model graph is invalid: {e}") from None

    def _input_shape(self, vi, n_inputs):
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if tt is None:
            raise NotImplementedError(f"{self.label}: input {vi.name!r} is not a tensor (sequence/map inputs are "
                                      "not supported)")
        if tt.elem_type not in FLOAT_TYPES:
            raise NotImplementedError(f"{self.label}: input {vi.name!r} has element type {tt.elem_type} (not a "
                                      "float tensor); fastlift attributes float inputs such as one-hot sequences")
        if not tt.HasField("shape") or len(tt.shape.dim) < 2:
            raise NotImplementedError(f"{self.label}: input {vi.name!r} must have a batch axis and at least one "
                                      f"more (got {len(tt.shape.dim) if tt.HasField('shape') else 'no'} dims)")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        names = [d.dim_param or "?" for d in tt.shape.dim]
        if dims[0] is not None and self.batch == BATCH:
            self.batch = dims[0]  # a file exported with a fixed batch: shapes fold with that size
        rest = dims[1:]
        given = self.input_shape
        if isinstance(given, dict):
            unknown = sorted(set(given) - {i.name for i in self.graph.input})
            if unknown:
                raise ValueError(f"input_shape names unknown input(s) {unknown}; the model's inputs are "
                                 f"{[i.name for i in self.graph.input]}")
            given = given.get(vi.name)
        elif given is not None and n_inputs > 1:
            raise ValueError(f"the model has {n_inputs} inputs: pass input_shape as a dict {{input name: shape}}")
        shown = tuple(names[k + 1] if d is None else d for k, d in enumerate(rest))
        if given is not None:  # checked by load_onnx (`_validate.input_shape_arg`)
            return _validate.fit_input_shape(given, rest, vi.name, self.label, shown)
        if any(d is None for d in rest):
            raise NotImplementedError(
                f"{self.label}: input {vi.name!r} has dynamic dimension(s): shape {shown} without the batch axis; "
                f"fastlift needs fixed shapes: pass input_shape= to load_model, e.g. input_shape="
                f"{tuple(4 if d is None and k == 0 else 1000 if d is None else d for k, d in enumerate(rest))}")
        return tuple(rest)

    def _output(self, vi) -> Node:
        value = self.values.get(vi.name)
        if value is None:
            raise ModelFileError(f"{self.label}: graph output {vi.name!r} is not computed by any node")
        if not isinstance(value, Node):
            raise NotImplementedError(f"{self.label}: graph output {vi.name!r} is "
                                      f"{'a constant' if isinstance(value, np.ndarray) else value.what}")
        node = value
        if node.name != vi.name:
            mine = vi.name not in self.used or node.name == vi.name
            if mine and not isinstance(node.layer, L.InputLayer) and node.name not in self.graph_outputs \
                    and node.layer._calls == 1:
                self.used.discard(node.name)
                node.name = node.layer.name = vi.name  # the output keeps the name the exporter gave it
                self.used.add(vi.name)
            else:
                node = L.Dropout(0.0, name=self.name(vi.name, None if vi.name not in self.used else "out"))(node)
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape") and len(tt.shape.dim):
            declared = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            computed = self.full(value)
            if len(declared) != len(computed) or any(
                    d is not None and d != s for d, s in zip(declared[1:], computed[1:])):
                raise ModelFileError(f"{self.label}: graph output {vi.name!r} is declared with shape {declared} but "
                                     f"the graph computes {shown(self, computed)}")
        return node

    # ------------------------------------------------------------------ nodes
    def _convert(self, node):
        op = node.op_type
        domain = node.domain or "ai.onnx"
        if domain != "ai.onnx":
            local = any(f.name == op and f.domain == node.domain for f in self.proto.functions)
            raise self.unsupported(
                f"op {op!r} of domain {domain!r} is not supported"
                + (" (a function defined in the file; re-export with functions inlined)" if local else "")
                + f"; fastlift reads these ONNX ops: {', '.join(SUPPORTED_OPS)}")
        ins = []
        for t in node.input:
            if not t:
                ins.append(None)
                continue
            if t not in self.values:
                raise self.bad(f"reads {t!r}, which no earlier node, initializer or input defines (nodes out of "
                               "order, or the file is corrupt)")
            ins.append(self.values[t])
        attrs = self._attrs(node)
        try:
            outs = self._outputs(op, node, ins, attrs)
        except (ModelFileError, NotImplementedError):
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            # a required input or attribute missing, or one of the wrong type, reaches the converters
            # as a lookup or conversion error: the file is malformed
            raise self.bad(f"malformed inputs or attributes (inputs {list(node.input)}, attributes "
                           f"{sorted(attrs)}): {type(e).__name__}: {e}") from None
        for k, t in enumerate(node.output):
            if not t:
                continue
            if k < len(outs) and outs[k] is not None:
                self.values[t] = outs[k]
            elif self.consumers[t]:
                raise self.unsupported(f"output {k} ({t!r}) is not supported (only the first output is computed)")

    def _outputs(self, op, node, ins, attrs) -> list:
        """The values of ``node``'s outputs: folded constants, or what its converter builds."""
        present = [v for v in ins if v is not None]
        if op == "Constant":
            outs = [self._constant(attrs)]
        elif op == "Shape" and present and isinstance(present[0], Node):
            outs = [self._shape(present[0], attrs)]
        elif op in onnx_fold.FOLDABLE and present and all(isinstance(v, np.ndarray) for v in present):
            try:
                outs = [np.asarray(o) for o in onnx_fold.evaluate(op, ins, attrs, self.opset)]
            except onnx_fold.FoldError as e:
                raise self.bad(str(e)) from None
            except (ValueError, IndexError, KeyError, TypeError) as e:
                raise self.bad(f"cannot evaluate on its constant inputs: {type(e).__name__}: {e}") from None
        else:
            handler = HANDLERS.get(op)
            if handler is None:
                raise self.unsupported(f"op {op} is not supported; fastlift reads these ONNX ops: "
                                       f"{', '.join(SUPPORTED_OPS)}")
            rows = any(isinstance(v, Node) and v in self.rows for v in present)
            if rows and op not in ELEMENTWISE_OPS | SHAPE_OPS:
                raise self.unsupported(f"{op} of a tensor with only the batch axis is not supported")
            outs = handler(self, node, ins, attrs)
            if not isinstance(outs, list):
                outs = [outs]
            if rows and op in ELEMENTWISE_OPS:  # a (N,) tensor in, a (N,) tensor out
                self.rows.update(o for o in outs if isinstance(o, Node) and o.shape == (1,))
        return outs

    def _attrs(self, node) -> dict:
        from onnx import AttributeProto, helper

        out = {}
        for a in node.attribute:
            if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                raise self.unsupported(f"attribute {a.name!r} holds a subgraph (control flow is not supported)")
            if a.ref_attr_name:
                raise self.unsupported(f"attribute {a.name!r} refers to a function attribute")
            if a.type == AttributeProto.TENSOR:
                out[a.name] = self.tensors.array(a.t, f"{self.where(node)}: attribute {a.name!r}")
            else:
                try:
                    out[a.name] = helper.get_attribute_value(a)
                except Exception as e:  # noqa: BLE001 - a malformed attribute
                    raise self.bad(f"attribute {a.name!r} is unreadable: {e}") from None
        for k, v in out.items():
            if isinstance(v, bytes):
                out[k] = v.decode("utf-8", "replace")
        return out

    def _constant(self, attrs):
        if "value" in attrs:
            return attrs["value"]
        for key, dtype in (("value_float", np.float32), ("value_int", np.int64)):
            if key in attrs:
                return np.array(attrs[key], dtype=dtype)
        for key, dtype in (("value_floats", np.float32), ("value_ints", np.int64)):
            if key in attrs:
                return np.array(list(attrs[key]), dtype=dtype)
        raise self.unsupported(f"a Constant with attributes {sorted(attrs)} is not supported")

    def _shape(self, x: Node, attrs):
        shape = np.array(self.full(x), dtype=np.int64)
        start, end = attrs.get("start", 0), attrs.get("end")
        return shape[start:end]

    # ------------------------------------------------------------------ layer helpers
    def reshape(self, x: Node, shape, tensor) -> Node:
        shape = tuple(int(s) for s in shape)
        while isinstance(x.layer, L.Reshape):  # reshapes compose: keep only the last
            x = x.inputs[0]
        if x.shape == (shape or (1,)) and (x in self.rows) == (not shape):
            return x
        y = L.Reshape(shape or (1,), name=self.fresh(tensor))(x)
        if not shape:
            self.rows.add(y)
        return y

    def fresh(self, tensor) -> str:
        """``tensor`` itself as a layer name while it is free, else a suffixed one."""
        return self.name(tensor, None if tensor not in self.used else "out")

    def affine(self, x: Node, scale, shift, tensor) -> Node:
        """x·scale + shift (constants broadcast over x's shape), composed with a ScaleShift before."""
        scale, shift = np.asarray(scale, np.float64), np.asarray(shift, np.float64)
        if type(x.layer) is L.ScaleShift:  # not a BatchNormalization, whose weights are per axis
            s0, t0 = x.layer.scale, x.layer.shift
            scale, shift = s0 * scale, t0 * scale + shift
            x = x.inputs[0]
        if np.all(scale == 1) and np.all(shift == 0):
            return x
        return L.ScaleShift(_squeeze_lead(scale), _squeeze_lead(shift), name=self.fresh(tensor))(x)

    def operand(self, c, x: Node, what):
        """A constant operand of an elementwise op with ``x``, shaped to broadcast over x's shape
        without the batch axis; NotImplementedError if it would change x's shape."""
        c = np.asarray(c, np.float64)
        full = self.full(x)
        if c.ndim == len(full):
            if c.shape[0] != 1:
                raise self.unsupported(f"{what} of shape {c.shape} varies along the batch axis")
            c = c[0]
        try:
            ok = c.ndim < len(full) and np.broadcast_shapes(c.shape, full[1:]) == full[1:]
        except ValueError:
            ok = False
        if not ok:
            raise self.unsupported(f"{what} of shape {c.shape} does not broadcast over the computed tensor of shape "
                                   f"{full} without changing its shape")
        return c

    def crop_pad(self, x: Node, amounts, tensor) -> Node:
        """Crop (negative) or zero-pad (positive) each axis: ``amounts`` {full axis: (before, after)}.
        The last layer takes ``tensor``'s name."""
        steps = []
        for axis in sorted(amounts):
            before, after = amounts[axis]
            if axis == 0:
                raise self.unsupported("cropping or padding the batch axis is not supported")
            for sign in (-1, 1):
                b, a = max(sign * before, 0), max(sign * after, 0)
                if b or a:
                    steps.append((axis, b, a, sign < 0))
        for k, (axis, b, a, crop) in enumerate(steps):
            last = k == len(steps) - 1
            x = self._crop_pad_axis(x, axis, b, a, crop, tensor if last else f"{tensor}/{k}")
        return x

    def _crop_pad_axis(self, x, axis, before, after, crop, tensor):
        nd = len(x.shape)
        if crop and before + after >= x.shape[axis - 1]:
            raise self.unsupported(f"the slice leaves nothing of axis {axis} (size {x.shape[axis - 1]})")
        cls1, cls2 = (L.Cropping1D, L.Cropping2D) if crop else (L.ZeroPadding1D, L.ZeroPadding2D)
        if nd in (2, 3):
            name = self.fresh(tensor)
        if nd == 2:
            fmt = "channels_last" if axis == 1 else "channels_first"
            return cls1((before, after), data_format=fmt, name=name)(x)
        if nd == 3:
            if axis == 3:
                return cls2(((0, 0), (before, after)), data_format="channels_first", name=name)(x)
            pairs = ((before, after), (0, 0)) if axis == 1 else ((0, 0), (before, after))
            return cls2(pairs, data_format="channels_last", name=name)(x)
        shape = x.shape
        pre = int(np.prod(shape[:axis - 1], dtype=np.int64))
        post = int(np.prod(shape[axis:], dtype=np.int64))
        y = self.reshape(x, (pre, shape[axis - 1], post), f"{tensor}/rows")
        y = cls2(((0, 0), (before, after)), data_format="channels_last", name=self.fresh(f"{tensor}/window"))(y)
        out = list(shape)
        out[axis - 1] = y.shape[1]
        return self.reshape(y, out, tensor)

    def reduce(self, x: Node, axes, keepdims, kind, tensor) -> Node:
        """Mean, sum, max or log-sum-exp over the (full-tensor) ``axes`` of x."""
        nd = len(x.shape)
        axes = sorted({self.axis(a, nd + 1) for a in axes})
        if 0 in axes:
            raise self.unsupported("reducing over the batch axis is not supported")
        keep_shape = tuple(1 if k + 1 in axes else s for k, s in enumerate(x.shape))
        drop_shape = tuple(s for k, s in enumerate(x.shape) if k + 1 not in axes)
        k = int(np.prod([x.shape[a - 1] for a in axes], dtype=np.int64))
        if kind == "logsumexp" and len(axes) == 1:
            y = L.LogSumExp(axis=axes[0], keepdims=keepdims or not drop_shape, name=self.fresh(tensor))(x)
            return self.reshape(y, keep_shape if keepdims else drop_shape, tensor)
        if axes == list(range(2, nd + 1)) and nd in (2, 3) and kind != "logsumexp":
            cls = {(2, "max"): L.GlobalMaxPool1D, (3, "max"): L.GlobalMaxPool2D}.get(
                (nd, kind), L.GlobalAvgPool1D if nd == 2 else L.GlobalAvgPool2D)
            y = cls(data_format="channels_first", name=self.fresh(f"{tensor}/pool"))(x)
        else:
            rest = [a for a in range(1, nd + 1) if a not in axes]
            y = x
            if axes + rest != list(range(1, nd + 1)):
                y = L.Permute(axes + rest, name=self.fresh(f"{tensor}/permute"))(y)
            y = self.reshape(y, (k, int(np.prod(drop_shape, dtype=np.int64))), f"{tensor}/rows")
            if kind == "logsumexp":
                y = L.LogSumExp(axis=1, keepdims=False, name=self.fresh(f"{tensor}/lse"))(y)
            else:
                cls = L.GlobalMaxPool1D if kind == "max" else L.GlobalAvgPool1D
                y = cls(name=self.fresh(f"{tensor}/pool"))(y)
        if kind == "sum":
            y = self.affine(y, float(k), 0.0, f"{tensor}/sum")
        return self.reshape(y, keep_shape if keepdims else drop_shape, tensor)


def _squeeze_lead(a):
    """Drop leading size-1 axes of a constant (a scalar stays 0-d)."""
    while a.ndim and a.shape[0] == 1:
        a = a[0]
    return a
