"""The ONNX reader's op converters: one function per ONNX op type, ``f(c, node, inputs, attrs)``
returning the value(s) of the node's outputs, with ``c`` the `fastlift.io.onnx_graph.Converter`.

Besides arrays and nodes, a converter may return a `Deferred` piece of a pattern that only means
something together with the nodes after it:

* ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (the exact GELU as exporters before opset 20 spell it):
  ``Erf`` and the arithmetic on it stay deferred until the product with ``x`` makes a GELU;
* ``torch.stack([a, b])`` followed by a reduction over the stacked axis (``logsumexp(stack(...),
  0)``): ``Unsqueeze``/``Concat`` on axis 0 stay deferred until ``ReduceLogSumExp``/
  ``ReduceSum``/``ReduceMean`` combine the stacked tensors elementwise.

``x * sigmoid(x)`` (SiLU) becomes one swish activation, and a bias-free MatMul followed by the Add
of a constant one Dense layer.
"""

from __future__ import annotations

import math

import numpy as np

from .. import layers as L
from ..layers.base import Node
from . import onnx_fold

_SQRT2 = math.sqrt(2.0)
#: Largest block-diagonal kernel a grouped convolution may expand to (float64 values).
MAX_GROUPED_KERNEL_VALUES = 2**24
#: ONNX element types of the inputs fastlift attributes (TensorProto codes).
FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


class Deferred:
    """A tensor that is only meaningful as part of a pattern (see the module docstring)."""

    what = "this value"


class _Erf(Deferred):
    """s·erf(arg) + t for a Node ``arg``."""

    what = "Erf (supported as part of x * 0.5 * (1 + erf(x / sqrt(2))), the exact GELU)"

    def __init__(self, arg, s=1.0, t=0.0):
        self.arg, self.s, self.t = arg, float(s), float(t)


class _Stack(Deferred):
    """Tensors stacked on a new leading axis (the batch axis's place): torch.stack(members)."""

    what = "a stack along axis 0 (supported only when a ReduceLogSumExp/ReduceSum/ReduceMean over axis 0 follows)"

    def __init__(self, members):
        self.members = list(members)


# ---------------------------------------------------------------------------------- converters
def _ints(v, default=None):
    return default if v is None else [int(t) for t in v]


def _identity(c, node, ins, attrs):
    training = node.op_type == "Dropout" and len(ins) > 2 and ins[2] is not None
    if training and bool(np.any(c.const(ins[2], "training_mode"))):
        raise c.unsupported("Dropout in training mode is not supported")
    return c.var(ins[0])


def _cast(c, node, ins, attrs):
    x = c.var(ins[0])
    to = attrs.get("to") if node.op_type == "Cast" else None
    if to is not None and to not in FLOAT_TYPES:
        raise c.unsupported(f"casting a computed tensor to element type {to} (not a float type) is not supported")
    return x


def _activation(name, **fixed):
    def convert(c, node, ins, attrs):
        x = c.var(ins[0])
        alpha = fixed.get("alpha")
        if callable(alpha):
            alpha = alpha(attrs)
        return L.Activation(name, alpha=alpha, name=c.fresh(node.output[0]))(x)
    return convert


def _selu(c, node, ins, attrs):
    from ..backends.ops import SELU_ALPHA, SELU_SCALE

    a, g = attrs.get("alpha", 1.67326319217681884765625), attrs.get("gamma", 1.05070102214813232421875)
    if abs(a - SELU_ALPHA) > 1e-6 or abs(g - SELU_SCALE) > 1e-6:
        raise c.unsupported(f"Selu with alpha={a}, gamma={g} (only the standard constants are supported)")
    return _activation("selu")(c, node, ins, attrs)


def _hard_sigmoid(c, node, ins, attrs):
    x = c.var(ins[0])
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if beta != 0.5:  # clip(alpha·x + beta, 0, 1) = clip(z + 0.5, 0, 1) with z = alpha·x + beta - 0.5
        x = c.affine(x, alpha, beta - 0.5, f"{node.output[0]}/affine")
        alpha = 1.0
    return L.Activation("hard_sigmoid", alpha=alpha, name=c.fresh(node.output[0]))(x)


def _prelu(c, node, ins, attrs):
    x = c.var(ins[0])
    slope = c.operand(c.const(ins[1], "the PRelu slope"), x, "the PRelu slope")
    return L.PReLU(slope, name=c.fresh(node.output[0]))(x)


def _gelu(c, node, ins, attrs):
    approx = attrs.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise c.unsupported(f"Gelu approximate={approx!r}")
    return _activation("gelu" if approx == "none" else "gelu_tanh")(c, node, ins, attrs)


def _clip(c, node, ins, attrs):
    x = c.var(ins[0])
    if c.opset >= 11:
        lo = None if len(ins) < 2 or ins[1] is None else float(c.const(ins[1], "the Clip minimum"))
        hi = None if len(ins) < 3 or ins[2] is None else float(c.const(ins[2], "the Clip maximum"))
    else:
        lo, hi = attrs.get("min"), attrs.get("max")
    big = float(np.finfo(np.float32).max)
    if lo == 0 and (hi is None or hi >= big):
        return L.Activation("relu", name=c.fresh(node.output[0]))(x)
    if lo == 0 and hi == 6:
        return L.Activation("relu6", name=c.fresh(node.output[0]))(x)
    raise c.unsupported(f"Clip to [{lo}, {hi}] (only [0, inf) = ReLU and [0, 6] = ReLU6 are supported)")


def _log(c, node, ins, attrs):
    return L.Log(name=c.fresh(node.output[0]))(c.var(ins[0]))


def _erf(c, node, ins, attrs):
    return _Erf(c.var(ins[0]))


def _softmax(c, node, ins, attrs):
    x = c.var(ins[0])
    nd = len(x.shape) + 1
    axis = c.axis(attrs.get("axis", -1 if c.opset >= 13 else 1), nd)
    if axis != nd - 1:
        raise c.unsupported(f"{node.op_type} over axis {axis} of a {nd}-d tensor (only the last axis is supported)")
    cls = L.Softmax if node.op_type == "Softmax" else L.LogSoftmax
    return cls(name=c.fresh(node.output[0]))(x)


def _pads(c, x, attrs, kernel, strides, dilations):
    """(before, after) per spatial axis from ``pads`` / ``auto_pad``."""
    n_sp = len(kernel)
    spatial = x.shape[1:]
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small = total // 2
            out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * n_sp
    if auto != "NOTSET":
        raise c.bad(f"auto_pad {auto!r}")
    pads = _ints(attrs.get("pads"), [0] * (2 * n_sp))
    if len(pads) != 2 * n_sp or any(p < 0 for p in pads):
        raise c.bad(f"pads {pads} must be {2 * n_sp} non-negative ints")
    return list(zip(pads[:n_sp], pads[n_sp:]))


def _window(c, node, x, attrs, kernel_len):
    n_sp = len(x.shape) - 1
    if n_sp not in (1, 2):
        raise c.unsupported(f"{n_sp}-d spatial input (only 1-D and 2-D convolution and pooling are supported)")
    kernel = _ints(attrs.get("kernel_shape"), None) or list(kernel_len or [])
    if len(kernel) != n_sp:
        raise c.bad(f"kernel_shape {kernel} does not fit a {n_sp}-d spatial input")
    strides = _ints(attrs.get("strides"), [1] * n_sp)
    dilations = _ints(attrs.get("dilations"), [1] * n_sp)
    if len(strides) != n_sp or len(dilations) != n_sp or min(strides + dilations) < 1:
        raise c.bad(f"strides {strides} / dilations {dilations} do not fit a {n_sp}-d spatial input")
    return n_sp, kernel, strides, dilations, _pads(c, x, attrs, kernel, strides, dilations)


def _conv(c, node, ins, attrs):
    x = c.var(ins[0])
    w = c.const(ins[1], "the Conv weight")
    b = None if len(ins) < 3 or ins[2] is None else c.const(ins[2], "the Conv bias")
    if w.ndim != len(x.shape) + 1:
        raise c.bad(f"weight of shape {w.shape} does not fit input of shape {c.full(x)}")
    n_sp, kernel, strides, dilations, pads = _window(c, node, x, attrs, w.shape[2:])
    if tuple(kernel) != w.shape[2:]:
        raise c.bad(f"kernel_shape {kernel} disagrees with the weight's shape {w.shape}")
    group = int(attrs.get("group", 1))
    c_in = x.shape[0]
    if group < 1 or c_in % group or w.shape[0] % group or w.shape[1] * group != c_in:
        raise c.bad(f"group={group} does not fit {c_in} input channels and weight of shape {w.shape}")
    if group > 1:  # a block-diagonal full kernel: exact, and cheap while the groups are few
        if w.shape[0] * c_in * int(np.prod(kernel)) > MAX_GROUPED_KERNEL_VALUES:
            raise c.unsupported(f"grouped convolution (group={group}) with a kernel of {w.shape}: its "
                                "block-diagonal expansion is too large")
        full = np.zeros((w.shape[0], c_in) + w.shape[2:])
        m, k = w.shape[0] // group, w.shape[1]
        for g in range(group):
            full[g * m:(g + 1) * m, g * k:(g + 1) * k] = w[g * m:(g + 1) * m]
        w = full
    kernel_keras = np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))
    out = node.output[0]
    padding = "valid"
    if any(p != (0, 0) for p in pads):
        same = _pads(c, x, {"auto_pad": "SAME_UPPER"}, kernel, strides, dilations)
        if list(pads) == same:
            padding = "same"
        else:
            x = c.crop_pad(x, {k + 2: p for k, p in enumerate(pads)}, f"{out}/pad")
    cls = L.Conv1D if n_sp == 1 else L.Conv2D
    return cls(kernel_keras, b, strides=strides, padding=padding, dilation_rate=dilations,
               data_format="channels_first", name=c.fresh(out))(x)


def _pool_geometry(c, node, x, attrs):
    n_sp, kernel, strides, dilations, pads = _window(c, node, x, attrs, None)
    if any(d != 1 for d in dilations):
        raise c.unsupported(f"pooling with dilations {dilations} is not supported")
    if attrs.get("ceil_mode", 0):  # extra cells after the input, skipped like padding
        pads = [list(p) for p in pads]
        for k, (n, size, s) in enumerate(zip(x.shape[1:], kernel, strides)):
            before, after = pads[k]
            n_out = math.ceil((n + before + after - size) / s) + 1
            if (n_out - 1) * s >= n + before:  # a window may not start in the padding after the input
                n_out -= 1
            pads[k][1] = max(after, (n_out - 1) * s + size - n - before)
        pads = [tuple(p) for p in pads]
    return n_sp, kernel, strides, pads


def _max_pool(c, node, ins, attrs):
    x = c.var(ins[0])
    n_sp, kernel, strides, pads = _pool_geometry(c, node, x, attrs)
    padding = "valid" if all(p == (0, 0) for p in pads) else tuple(pads)
    cls = L.MaxPool1D if n_sp == 1 else L.MaxPool2D
    return cls(kernel, strides, padding=padding, data_format="channels_first", name=c.fresh(node.output[0]))(x)


def _avg_pool(c, node, ins, attrs):
    x = c.var(ins[0])
    pads0 = _window(c, node, x, attrs, None)[-1]
    n_sp, kernel, strides, pads = _pool_geometry(c, node, x, attrs)
    out = node.output[0]
    if attrs.get("count_include_pad", 0) and any(p != (0, 0) for p in pads0):
        if list(pads) != list(pads0):
            raise c.unsupported("AveragePool with count_include_pad=1 and ceil_mode=1 windows that pass the "
                                "padding is not supported")
        x = c.crop_pad(x, {k + 2: p for k, p in enumerate(pads0)}, f"{out}/pad")  # zeros that count
        pads = [(0, 0)] * n_sp
    padding = "valid" if all(p == (0, 0) for p in pads) else tuple(pads)
    cls = L.AvgPool1D if n_sp == 1 else L.AvgPool2D
    return cls(kernel, strides, padding=padding, data_format="channels_first", name=c.fresh(out))(x)


def _global_pool(c, node, ins, attrs):
    x = c.var(ins[0])
    n_sp = len(x.shape) - 1
    if n_sp not in (1, 2):
        raise c.unsupported(f"global pooling over {n_sp} spatial axes")
    kind = "max" if node.op_type == "GlobalMaxPool" else "mean"
    return c.reduce(x, list(range(2, n_sp + 2)), True, kind, node.output[0])


def _batch_norm(c, node, ins, attrs):
    x = c.var(ins[0])
    if attrs.get("training_mode", 0):
        raise c.unsupported("BatchNormalization in training mode is not supported")
    if c.opset < 9 and not attrs.get("spatial", 1):
        raise c.unsupported("BatchNormalization with spatial=0")
    gamma, beta, mean, var = (c.const(v, f"the BatchNormalization {w}")
                              for v, w in zip(ins[1:5], ("scale", "bias", "mean", "variance")))
    try:
        layer = L.BatchNormalization(gamma, beta, mean, var, epsilon=float(attrs.get("epsilon", 1e-5)), axis=1,
                                     name=c.fresh(node.output[0]))
        return layer(x)
    except ValueError as e:
        raise c.bad(str(e)) from None


def _gemm(c, node, ins, attrs):
    x = c.var(ins[0])
    b = c.const(ins[1], "Gemm's B")
    if attrs.get("transA", 0):
        raise c.unsupported("Gemm with transA=1 (it would transpose the batch axis)")
    if len(x.shape) != 1 or b.ndim != 2:
        raise c.bad(f"Gemm of shapes {c.full(x)} and {b.shape}")
    w = b.T if attrs.get("transB", 0) else b
    if w.shape[0] != x.shape[0]:
        raise c.bad(f"Gemm: B of shape {b.shape} (transB={attrs.get('transB', 0)}) does not fit A of shape "
                    f"{c.full(x)}")
    kernel = float(attrs.get("alpha", 1.0)) * w
    bias = None
    if len(ins) > 2 and ins[2] is not None:
        cc = np.asarray(c.const(ins[2], "Gemm's C"), np.float64)
        try:
            bias = float(attrs.get("beta", 1.0)) * np.broadcast_to(cc, (1, w.shape[1]))[0]
        except ValueError:
            raise c.unsupported(f"Gemm's C of shape {cc.shape} (only a bias broadcast over the batch is "
                                "supported)") from None
        if cc.ndim == 2 and cc.shape[0] != 1:
            raise c.unsupported(f"Gemm's C of shape {cc.shape} varies along the batch axis")
    return L.Dense(kernel, bias, name=c.fresh(node.output[0]))(x)


def _matmul(c, node, ins, attrs):
    a, b = ins[0], ins[1]
    if not isinstance(b, np.ndarray):
        raise c.unsupported("MatMul with a computed right operand (only x @ W with a constant W is supported)")
    x = c.var(a, "MatMul's left operand")
    if b.ndim == 1:
        y = L.Dense(b[:, None], name=c.fresh(f"{node.output[0]}/dense"))(x)
        return c.reshape(y, x.shape[:-1], node.output[0])
    if b.ndim != 2:
        raise c.unsupported(f"MatMul with a {b.ndim}-d constant (only a matrix is supported)")
    if x.shape[-1] != b.shape[0]:
        raise c.bad(f"MatMul of shapes {c.full(x)} and {b.shape}")
    y = L.Dense(b, name=c.fresh(node.output[0]))(x)
    c.matmul_kernels[y] = b
    return y


def _add_sub(c, node, ins, attrs):
    a, b = ins
    out = node.output[0]
    sub = node.op_type == "Sub"
    if isinstance(a, _Erf) or isinstance(b, _Erf):
        e, k = (a, b) if isinstance(a, _Erf) else (b, a)
        k = c.const(k, "the other operand of Erf's sum")
        if k.size != 1:
            raise c.unsupported(f"Erf is supported as part of the exact GELU; here it is added to a constant "
                                f"of shape {k.shape}")
        k = float(k.reshape(()))
        if sub:
            return _Erf(e.arg, e.s, e.t - k) if e is a else _Erf(e.arg, -e.s, k - e.t)
        return _Erf(e.arg, e.s, e.t + k)
    if isinstance(a, Node) and isinstance(b, Node):
        if c.full(a) != c.full(b):
            raise c.unsupported(f"{node.op_type} of computed tensors of shapes {c.full(a)} and {c.full(b)} "
                                "(broadcasting between computed tensors is not supported)")
        cls = L.Subtract if sub else L.Add
        return cls(name=c.fresh(out))([a, b])
    if isinstance(a, Node):
        x, k = a, c.operand(c.const(b, f"{node.op_type}'s operand"), a, "the constant operand")
        if not sub and x in c.matmul_kernels and c.consumers[x.name] == 1 and x.name not in c.graph_outputs:
            kernel = c.matmul_kernels[x]
            if k.ndim == 0 or all(s == 1 for s in k.shape[:-1]):  # MatMul + Add: one Dense with a bias
                bias = np.broadcast_to(k.reshape(-1) if k.ndim else k, (kernel.shape[1],))
                return L.Dense(kernel, bias, name=c.fresh(out))(x.inputs[0])
        return c.affine(x, 1.0, -k if sub else k, out)
    x = c.var(b, f"{node.op_type}'s operands")
    k = c.operand(c.const(a, f"{node.op_type}'s operand"), x, "the constant operand")
    return c.affine(x, -1.0 if sub else 1.0, k, out)


def _peel(x: Node):
    """(source, scale, shift) of a scalar ScaleShift node; (x, 1, 0) for any other node."""
    layer = x.layer
    if type(layer) is L.ScaleShift and layer.scale.size == 1 and layer.shift.size == 1:
        return x.inputs[0], float(layer.scale.reshape(())), float(layer.shift.reshape(()))
    return x, 1.0, 0.0


def _mul_div(c, node, ins, attrs):
    a, b = ins
    out = node.output[0]
    div = node.op_type == "Div"
    if isinstance(a, _Erf) or isinstance(b, _Erf):
        e, other = (a, b) if isinstance(a, _Erf) else (b, a)
        if isinstance(other, np.ndarray):
            if other.size != 1 or (div and e is b):
                raise c.unsupported("Erf is supported as part of the exact GELU, x * 0.5 * (1 + erf(x / sqrt(2)))")
            k = float(other.reshape(()))
            k = 1.0 / k if div else k
            return _Erf(e.arg, e.s * k, e.t * k)
        if div:
            raise c.unsupported("Erf is supported as part of the exact GELU, x * 0.5 * (1 + erf(x / sqrt(2)))")
        return _gelu_product(c, c.var(other), e, out)
    if isinstance(a, Node) and isinstance(b, Node):
        if not div:
            for x, s in ((a, b), (b, a)):  # x * sigmoid(x): SiLU / swish
                if isinstance(s.layer, L.Activation) and s.layer.activation == "sigmoid" and s.inputs[0] is x:
                    return L.Activation("swish", name=c.fresh(out))(x)
        raise c.unsupported(f"{node.op_type} of two computed tensors (only x * sigmoid(x) and the exact GELU "
                            "pattern are supported)")
    if isinstance(a, Node):
        k = c.operand(c.const(b, f"{node.op_type}'s operand"), a, "the constant operand")
        if div and np.any(k == 0):
            raise c.bad("division by a constant that holds zeros")
        return c.affine(a, 1.0 / k if div else k, 0.0, out)
    x = c.var(b, f"{node.op_type}'s operands")
    if div:
        raise c.unsupported("dividing a constant by a computed tensor is not supported")
    return c.affine(x, c.operand(c.const(a, "Mul's operand"), x, "the constant operand"), 0.0, out)


def _gelu_product(c, v: Node, e: _Erf, out):
    """v · (s·erf(u) + s) with u = x/√2 and v = a·x for one tensor x: 2·a·s·gelu(x).

    Constant factors may have been composed into the tensors before (``Div(x, √2)`` of a scaled
    x is one ScaleShift of x's source h), so both sides are read as affine maps of h: u = cu·h + tu
    gives x = √2·u = p·h + q, and v must be a multiple of that x."""
    h, cu, tu = _peel(e.arg)
    p, q = _SQRT2 * cu, _SQRT2 * tu
    if abs(p - 1) < 1e-6:  # float32's sqrt(2) in the file: the exact GELU of h
        p = 1.0
    if v is h:
        a, ok = 1.0 / p, q == 0
    else:
        hv, av, tv = _peel(v)
        a = av / p
        ok = hv is h and abs(tv - a * q) <= 1e-6 * max(abs(tv), 1.0)
    if not ok or abs(e.s - e.t) > 1e-6 * abs(e.s) or e.s == 0:
        raise c.unsupported("a product with Erf is supported as the exact GELU, x * 0.5 * (1 + erf(x / sqrt(2))); "
                            "this one has other operands")
    x = c.affine(h, p, q, f"{out}/x")
    y = L.Activation("gelu", name=c.fresh(f"{out}/gelu"))(x)
    return c.affine(y, 2.0 * a * e.s, 0.0, out)


def _neg(c, node, ins, attrs):
    return c.affine(c.var(ins[0]), -1.0, 0.0, node.output[0])


def _concat(c, node, ins, attrs):
    axis = int(attrs["axis"])
    if all(isinstance(v, _Stack) for v in ins) and axis == 0:
        return _Stack([m for v in ins for m in v.members])
    xs = [c.var(v, "every Concat input") for v in ins]
    nd = len(xs[0].shape) + 1
    ax = c.axis(axis, nd)
    if ax == 0:
        raise c.unsupported("Concat along the batch axis is not supported")
    if len(xs) == 1:
        return xs[0]
    return L.Concatenate(axis=ax, name=c.fresh(node.output[0]))(xs)


def _axes_of(c, node, ins, attrs, since):
    if c.opset >= since:
        v = ins[1] if len(ins) > 1 else None
        return None if v is None else [int(t) for t in np.asarray(c.const(v, "axes")).reshape(-1)]
    v = attrs.get("axes")
    return None if v is None else [int(t) for t in v]


def _unsqueeze(c, node, ins, attrs):
    axes = _axes_of(c, node, ins, attrs, 13)
    if axes is None:
        raise c.bad("Unsqueeze without axes")
    x = ins[0]
    if isinstance(x, Node) and axes in ([0], [-len(x.shape) - 2]):
        return _Stack([x])  # torch.stack: read by a Concat and a reduction over axis 0
    x = c.var(x)
    nd = len(x.shape) + 1 + len(axes)
    axes = sorted(c.axis(a, nd) for a in axes)
    if 0 in axes:
        raise c.unsupported("Unsqueeze at the batch axis is not supported")
    shape = list(c.full(x))
    for a in axes:
        shape.insert(a, 1)
    return c.reshape(x, shape[1:], node.output[0])


def _squeeze(c, node, ins, attrs):
    axes = _axes_of(c, node, ins, attrs, 13)
    v = ins[0]
    if isinstance(v, _Stack) and axes == [0] and len(v.members) == 1:
        return v.members[0]
    x = c.var(v)
    full = c.full(x)
    if axes is None:
        axes = [k + 1 for k, s in enumerate(x.shape) if s == 1]  # the batch axis stays
    axes = {c.axis(a, len(full)) for a in axes}
    if 0 in axes:
        raise c.unsupported("Squeeze of the batch axis is not supported")
    if any(full[a] != 1 for a in axes):
        raise c.bad(f"Squeeze of axes {sorted(axes)} of a tensor of shape {full}")
    return c.reshape(x, [s for k, s in enumerate(x.shape) if k + 1 not in axes], node.output[0])


def _reshape_op(c, node, ins, attrs):
    x = c.var(ins[0])
    target = [int(t) for t in np.asarray(c.const(ins[1], "the Reshape target shape")).reshape(-1)]
    full = c.full(x)
    if not attrs.get("allowzero", 0):
        target = [full[k] if t == 0 and k < len(full) else t for k, t in enumerate(target)]
    total = math.prod(full)
    if target.count(-1) > 1 or any(t < -1 for t in target):
        raise c.bad(f"Reshape target {target}")
    if -1 in target:
        known = math.prod(t for t in target if t != -1)
        if known == 0 or total % known:
            raise c.bad(f"cannot reshape {full} to {target}")
        target[target.index(-1)] = total // known
    if math.prod(target) != total:
        raise c.bad(f"cannot reshape {full} to {target}")
    if not target or target[0] != c.batch:
        raise c.unsupported(f"Reshape of {shown(c, full)} to {shown(c, target)} mixes the batch axis with others")
    return c.reshape(x, target[1:], node.output[0])


def shown(c, shape):
    """A shape for messages, its batch axis written N."""
    return tuple("N" if s == c.batch else s for s in shape)


def _flatten(c, node, ins, attrs):
    x = c.var(ins[0])
    full = c.full(x)
    axis = c.axis(attrs.get("axis", 1), len(full) + 1)
    if math.prod(full[:axis]) != c.batch:
        raise c.unsupported(f"Flatten at axis {axis} of {shown(c, full)} mixes the batch axis with others")
    return c.reshape(x, (math.prod(full[axis:]),), node.output[0])


def _transpose(c, node, ins, attrs):
    x = c.var(ins[0])
    nd = len(x.shape) + 1
    perm = _ints(attrs.get("perm"), list(range(nd))[::-1])
    if sorted(perm) != list(range(nd)):
        raise c.bad(f"perm {perm} for a {nd}-d tensor")
    if perm[0] != 0:
        raise c.unsupported(f"Transpose with perm {perm} moves the batch axis")
    if perm == list(range(nd)):
        return x
    return L.Permute(perm[1:], name=c.fresh(node.output[0]))(x)


def _slice_op(c, node, ins, attrs):
    x = c.var(ins[0])
    full = c.full(x)
    if c.opset >= 10:
        starts, ends = (np.asarray(c.const(v, what)).reshape(-1) for v, what in
                        ((ins[1], "Slice starts"), (ins[2], "Slice ends")))
        axes = np.asarray(c.const(ins[3], "Slice axes")).reshape(-1) if len(ins) > 3 and ins[3] is not None \
            else np.arange(len(starts))
        steps = np.asarray(c.const(ins[4], "Slice steps")).reshape(-1) if len(ins) > 4 and ins[4] is not None \
            else np.ones(len(starts), np.int64)
    else:
        starts, ends = np.asarray(attrs["starts"]), np.asarray(attrs["ends"])
        axes = np.asarray(attrs.get("axes", range(len(starts))))
        steps = np.ones(len(starts), np.int64)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise c.bad("Slice starts, ends, axes and steps differ in length")
    amounts = {}
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = c.axis(a, len(full))
        if int(st) != 1:
            raise c.unsupported(f"Slice with step {int(st)} (only step 1, a crop, is supported)")
        if a == 0:
            lo, hi = onnx_fold.slice_bounds(c.batch, int(s), int(e), 1)
            if lo != 0 or (hi < c.batch and int(e) < c.batch):
                raise c.unsupported("Slice of the batch axis is not supported")
            continue
        n = full[a]
        lo, hi = onnx_fold.slice_bounds(n, int(s), int(e), 1)
        if hi <= lo:
            raise c.unsupported(f"the slice [{int(s)}:{int(e)}] leaves nothing of axis {a} (size {n})")
        amounts[a] = (-lo, -(n - hi))
    return c.crop_pad(x, amounts, node.output[0])


def _gather(c, node, ins, attrs):
    x = c.var(ins[0])
    idx = np.asarray(c.const(ins[1], "Gather indices")).astype(np.int64)
    full = c.full(x)
    axis = c.axis(attrs.get("axis", 0), len(full))
    if axis == 0:
        raise c.unsupported("Gather along the batch axis is not supported")
    n = full[axis]
    flat = np.where(idx < 0, idx + n, idx).reshape(-1)
    if idx.ndim > 1 or flat.size == 0 or np.any((flat < 0) | (flat >= n)) or np.any(np.diff(flat) != 1):
        raise c.unsupported(f"Gather of indices {idx.tolist()} (only one index or a contiguous range is supported)")
    y = c.crop_pad(x, {axis: (-int(flat[0]), -(n - 1 - int(flat[-1])))}, node.output[0])
    if idx.ndim == 0:
        return c.reshape(y, [s for k, s in enumerate(x.shape) if k + 1 != axis], node.output[0])
    return y


def _split(c, node, ins, attrs):
    x = c.var(ins[0])
    full = c.full(x)
    axis = c.axis(attrs.get("axis", 0), len(full))
    if axis == 0:
        raise c.unsupported("Split along the batch axis is not supported")
    n, k = full[axis], len(node.output)
    if c.opset >= 13 and len(ins) > 1 and ins[1] is not None:
        sizes = [int(t) for t in np.asarray(c.const(ins[1], "Split sizes")).reshape(-1)]
    elif "split" in attrs:
        sizes = [int(t) for t in attrs["split"]]
    else:
        parts = int(attrs.get("num_outputs", k))
        step = -(-n // parts)
        sizes = [min(step, n - step * j) for j in range(parts)]
    if sum(sizes) != n or len(sizes) != k or min(sizes) < 1:
        raise c.bad(f"split sizes {sizes} do not divide axis {axis} of size {n} into {k} outputs")
    outs, lo = [], 0
    for size, t in zip(sizes, node.output):
        outs.append(c.crop_pad(x, {axis: (-lo, -(n - lo - size))}, t) if size != n else x)
        lo += size
    return outs


def _pad(c, node, ins, attrs):
    x = c.var(ins[0])
    full = c.full(x)
    mode = attrs.get("mode", "constant")
    if mode != "constant":
        raise c.unsupported(f"Pad mode {mode!r} (only constant padding is supported)")
    if c.opset >= 11:
        pads = [int(t) for t in np.asarray(c.const(ins[1], "Pad pads")).reshape(-1)]
        value = ins[2] if len(ins) > 2 else None
        value = 0.0 if value is None else float(np.asarray(c.const(value, "the Pad value")).reshape(()))
        axes = list(range(len(full)))
        if len(ins) > 3 and ins[3] is not None:
            axes = [c.axis(a, len(full)) for a in np.asarray(c.const(ins[3], "Pad axes")).reshape(-1)]
    else:
        pads, value, axes = [int(t) for t in attrs["pads"]], float(attrs.get("value", 0.0)), list(range(len(full)))
    if len(pads) != 2 * len(axes):
        raise c.bad(f"pads {pads} do not fit {len(axes)} axes")
    amounts = {a: (b, e) for a, b, e in zip(axes, pads[:len(axes)], pads[len(axes):]) if b or e}
    out = node.output[0]
    y = c.crop_pad(x, amounts, out if value == 0.0 else f"{out}/zeros")
    if value != 0.0 and any(b > 0 or e > 0 for b, e in amounts.values()):
        if math.prod(y.shape) > onnx_fold.MAX_FOLDED_VALUES:  # checked before the mask is made
            raise c.bad(f"a Pad with value {value:g} to shape {y.shape} would make a constant mask of more than "
                        f"{onnx_fold.MAX_FOLDED_VALUES} values (fastlift.io.onnx_fold.MAX_FOLDED_VALUES)")
        inside = np.zeros(y.shape)  # 1 where y holds x's values, 0 on the padding (which holds `value`)
        index = []
        for k, n in enumerate(y.shape):
            b, e = amounts.get(k + 1, (0, 0))
            index.append(slice(max(b, 0), n - max(e, 0)))
        inside[tuple(index)] = 1
        y = c.affine(y, 1.0, value * (1 - inside), out)
    return y


def _reduce(kind):
    def convert(c, node, ins, attrs):
        since = 13 if node.op_type == "ReduceSum" else 18
        axes = _axes_of(c, node, ins, attrs, since)
        keep = bool(attrs.get("keepdims", 1))
        v = ins[0]
        if isinstance(v, _Stack) and axes in ([0],):
            if keep:
                raise c.unsupported(f"{node.op_type} over a stacked axis with keepdims=1")
            xs = v.members
            if len(xs) == 1:
                return xs[0]
            if any(c.full(m) != c.full(xs[0]) for m in xs):
                raise c.unsupported(f"{node.op_type} over stacked tensors of different shapes")
            name = c.fresh(node.output[0])
            cls = {"logsumexp": L.LogSumExp, "sum": L.Add, "mean": L.Average}.get(kind)
            if cls is None:
                raise c.unsupported(f"{node.op_type} across stacked tensors is not supported")
            y = cls(name=name)(xs)
            if xs[0] in c.rows:
                c.rows.add(y)
            return y
        x = c.var(v)
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return x
            raise c.unsupported(f"{node.op_type} without axes reduces every axis, the batch axis too")
        return c.reduce(x, axes, keep, kind, node.output[0])
    return convert


def _expand(c, node, ins, attrs):
    x = c.var(ins[0])
    shape = [int(t) for t in np.asarray(c.const(ins[1], "Expand shape")).reshape(-1)]
    try:
        out = np.broadcast_shapes(tuple(c.full(x)), tuple(shape))
    except ValueError:
        raise c.bad(f"Expand of {c.full(x)} to {shape}") from None
    if out != c.full(x):
        raise c.unsupported(f"Expand of a computed tensor of shape {shown(c, c.full(x))} to {shape}")
    return x


#: Ops applied value by value: a tensor of shape (N,) in gives one of shape (N,) out.
ELEMENTWISE_OPS = frozenset({
    "Identity", "Dropout", "Cast", "CastLike", "Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh",
    "Softplus", "Softsign", "Exp", "Log", "Erf", "Gelu", "Clip", "PRelu", "Add", "Sub", "Mul", "Div", "Neg"})
#: Ops that read a tensor's shape through `Converter.full`.
SHAPE_OPS = frozenset({"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand"})

HANDLERS = {
    "Identity": _identity, "Dropout": _identity, "Cast": _cast, "CastLike": _cast,
    "Relu": _activation("relu"), "LeakyRelu": _activation("leaky_relu", alpha=lambda a: a.get("alpha", 0.01)),
    "Elu": _activation("elu", alpha=lambda a: a.get("alpha", 1.0)), "Selu": _selu,
    "Sigmoid": _activation("sigmoid"), "HardSigmoid": _hard_sigmoid, "Tanh": _activation("tanh"),
    "Softplus": _activation("softplus"), "Softsign": _activation("softsign"), "Exp": _activation("exponential"),
    "PRelu": _prelu, "Gelu": _gelu, "Clip": _clip, "Log": _log, "Erf": _erf, "Softmax": _softmax,
    "LogSoftmax": _softmax, "Conv": _conv, "MaxPool": _max_pool, "AveragePool": _avg_pool,
    "GlobalAveragePool": _global_pool, "GlobalMaxPool": _global_pool, "BatchNormalization": _batch_norm,
    "Gemm": _gemm, "MatMul": _matmul, "Add": _add_sub, "Sub": _add_sub, "Mul": _mul_div, "Div": _mul_div,
    "Neg": _neg, "Concat": _concat, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Reshape": _reshape_op,
    "Flatten": _flatten, "Transpose": _transpose, "Slice": _slice_op, "Gather": _gather, "Split": _split,
    "Pad": _pad, "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"), "ReduceMax": _reduce("max"),
    "ReduceLogSumExp": _reduce("logsumexp"), "Expand": _expand,
}

#: Every op the reader accepts (computed tensors: HANDLERS; load-time constants: onnx_fold).
SUPPORTED_OPS = tuple(sorted(set(HANDLERS) | onnx_fold.FOLDABLE | {"Constant", "Shape"}))

