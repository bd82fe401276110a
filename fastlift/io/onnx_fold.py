"""Constant folding for the ONNX reader: ops whose inputs are all known at load time.

Exporters compute shapes and reshape targets inside the graph (``Shape -> Gather -> Unsqueeze ->
Concat -> Reshape``) and sometimes transpose or cast weights there. When every input of such a
node is a constant (an initializer, a ``Constant`` node, or the shape of a tensor whose shape is
static), `evaluate` computes its outputs with numpy, so the converters only ever see arrays.
Integer semantics follow ONNX (division truncates toward zero).
"""

from __future__ import annotations

import numpy as np

#: Ops `evaluate` computes when all their inputs are constants.
FOLDABLE = frozenset({
    "Identity", "Cast", "CastLike", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Reshape", "Transpose",
    "Flatten", "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Reciprocal", "Pow", "Floor", "Ceil", "Min", "Max",
    "Range", "ConstantOfShape", "Expand", "Equal", "Less", "Greater", "Not", "Where", "ReduceProd", "ReduceSum",
    "ReduceMax", "ReduceMin", "ReduceMean", "Tile", "Dropout", "Erf", "Exp", "Log", "Sigmoid", "Tanh", "Relu",
})

#: Largest constant a fold may create (values): a file cannot make the loader allocate more.
MAX_FOLDED_VALUES = 2**28


class FoldError(Exception):
    """An op's constant inputs or attributes do not fit its definition (a malformed file)."""


def _check_size(shape, op):
    """FoldError if a constant of ``shape`` would exceed `MAX_FOLDED_VALUES` (checked before making it)."""
    shape = [int(v) for v in shape]
    if any(v < 0 for v in shape) or int(np.prod([float(v) for v in shape])) > MAX_FOLDED_VALUES:
        raise FoldError(f"{op} would make a constant of shape {shape} (at most {MAX_FOLDED_VALUES} values)")
    return shape


def _axes(attrs, inputs, k, opset, since):
    """Axes from the attribute (before ``since``) or the k-th input (from ``since`` on)."""
    if opset >= since:
        a = inputs[k] if len(inputs) > k else None
        return None if a is None else [int(v) for v in np.asarray(a).reshape(-1)]
    a = attrs.get("axes")
    return None if a is None else [int(v) for v in a]


def _norm(axes, ndim):
    out = [a + ndim if a < 0 else a for a in axes]
    if any(not 0 <= a < ndim for a in out):
        raise FoldError(f"axes {axes} out of range for {ndim} dimensions")
    return out


def _divide(a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))
    return np.divide(a, b)


def slice_bounds(n, start, end, step):
    """ONNX Slice's clamping of (start, end) on an axis of size n (step > 0)."""
    start = start + n if start < 0 else start
    end = end + n if end < 0 else end
    return min(max(start, 0), n), min(max(end, 0), n)


def _slice(x, inputs, attrs, opset):
    if opset >= 10:
        starts, ends = (np.asarray(v).reshape(-1) for v in inputs[1:3])
        axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
        steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts), np.int64)
    else:
        starts, ends = np.asarray(attrs["starts"]), np.asarray(attrs["ends"])
        axes = np.asarray(attrs.get("axes", range(len(starts))))
        steps = np.ones(len(starts), np.int64)
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(_norm([int(v) for v in np.asarray(axes).reshape(-1)], x.ndim), starts, ends,
                           np.asarray(steps).reshape(-1)):
        s, e, st = int(s), int(e), int(st)
        if st == 0:
            raise FoldError("Slice step 0")
        n = x.shape[a]
        if st > 0:
            lo, hi = slice_bounds(n, s, e, 1)
            index[a] = slice(lo, hi, st)
        else:
            s = s + n if s < 0 else s
            e = e + n if e < 0 else e
            s = min(max(s, -1), n - 1)
            e = min(max(e, -1), n - 1)
            index[a] = slice(s, e if e >= 0 else None, st)
    return x[tuple(index)]


def _check_growth(op, inputs, attrs):
    """FoldError before an op that can make a constant larger than its inputs (broadcasting,
    concatenating, gathering with repeated indices) would make one over `MAX_FOLDED_VALUES`."""
    present = [np.asarray(v) for v in inputs if v is not None]
    if op in _BROADCASTING and present:
        _check_size(np.broadcast_shapes(*(v.shape for v in present)), op)
    elif op == "Concat":
        _check_size([sum(v.size for v in present)], op)
    elif op == "Gather" and len(present) > 1:
        axis = int(attrs.get("axis", 0))
        n = present[0].shape[axis] if present[0].ndim else 1
        _check_size([present[0].size // max(n, 1) * present[1].size], op)


#: Ops whose output has the broadcast shape of their inputs.
_BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "Min", "Max", "Where"})


def evaluate(op, inputs, attrs, opset):
    """The outputs (a list of numpy arrays) of ``op`` applied to constant ``inputs``."""
    _check_growth(op, inputs, attrs)
    x = inputs[0] if inputs else None
    if op in ("Identity", "Dropout"):
        return [x]
    if op == "Cast":
        from onnx import helper

        return [x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))]
    if op == "CastLike":
        return [x.astype(inputs[1].dtype)]
    if op == "Gather":
        axis = attrs.get("axis", 0)
        idx = np.asarray(inputs[1]).astype(np.int64)
        n = x.shape[axis]
        if np.any((idx < -n) | (idx >= n)):
            raise FoldError(f"Gather index out of range for size {n}")
        return [np.take(x, np.where(idx < 0, idx + n, idx), axis=axis)]
    if op == "Concat":
        parts = [np.atleast_1d(p) if p.ndim == 0 else p for p in inputs if p is not None and p.size]
        if not parts:
            return [np.concatenate([p for p in inputs if p is not None], axis=attrs.get("axis", 0))]
        return [np.concatenate(parts, axis=attrs["axis"])]
    if op == "Unsqueeze":
        axes = _axes(attrs, inputs, 1, opset, 13)
        axes = _norm(axes, x.ndim + len(axes))
        out = x
        for a in sorted(axes):
            out = np.expand_dims(out, a)
        return [out]
    if op == "Squeeze":
        axes = _axes(attrs, inputs, 1, opset, 13)
        return [np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(_norm(axes, x.ndim)))]
    if op == "Slice":
        return [_slice(x, inputs, attrs, opset)]
    if op == "Reshape":
        shape = [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
        if not attrs.get("allowzero", 0):
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return [x.reshape(shape)]
    if op == "Flatten":
        axis = attrs.get("axis", 1)
        axis = axis + x.ndim if axis < 0 else axis
        return [x.reshape(int(np.prod(x.shape[:axis])), -1)]
    if op == "Transpose":
        perm = attrs.get("perm")
        return [np.transpose(x, perm)]
    if op in ("Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater"):
        a, b = inputs[0], inputs[1]
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _divide, "Pow": np.power,
             "Equal": np.equal, "Less": np.less, "Greater": np.greater}[op]
        out = np.asarray(f(a, b))
        if op not in ("Equal", "Less", "Greater"):
            out = out.astype(a.dtype, copy=False)
        return [out]
    if op in ("Min", "Max"):
        f = np.minimum if op == "Min" else np.maximum
        out = inputs[0]
        for v in inputs[1:]:
            out = f(out, v)
        return [out]
    if op in ("Neg", "Abs", "Sqrt", "Reciprocal", "Floor", "Ceil", "Not", "Erf", "Exp", "Log", "Sigmoid", "Tanh",
              "Relu"):
        if op == "Erf":
            from scipy.special import erf

            return [erf(x).astype(x.dtype)]
        f = {"Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal, "Floor": np.floor,
             "Ceil": np.ceil, "Not": np.logical_not, "Exp": np.exp, "Log": np.log,
             "Sigmoid": lambda v: 1 / (1 + np.exp(-v)), "Tanh": np.tanh, "Relu": lambda v: np.maximum(v, 0)}[op]
        return [np.asarray(f(x)).astype(x.dtype, copy=False)]
    if op == "Range":
        start, limit, delta = (np.asarray(v).reshape(()) for v in inputs[:3])
        if delta == 0:
            raise FoldError("Range with delta 0")
        _check_size([max(np.ceil((float(limit) - float(start)) / float(delta)), 0)], op)
        return [np.arange(start, limit, delta).astype(start.dtype)]
    if op == "ConstantOfShape":
        value = attrs.get("value")
        fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
        shape = _check_size(np.asarray(x).reshape(-1), op)
        return [np.full(shape, fill[0], dtype=fill.dtype)]
    if op == "Expand":
        shape = [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
        _check_size(np.broadcast_shapes(x.shape, tuple(max(v, 0) for v in shape)), op)
        return [np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape))))]
    if op == "Tile":
        reps = [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
        if len(reps) != x.ndim:
            raise FoldError(f"Tile repeats {reps} for a {x.ndim}-d constant")
        _check_size([n * r for n, r in zip(x.shape, reps)], op)
        return [np.tile(x, reps)]
    if op == "Where":
        return [np.where(inputs[0], inputs[1], inputs[2])]
    if op in ("ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean"):
        axes = _axes(attrs, inputs, 1, opset, 13 if op == "ReduceSum" else 18)
        keep = bool(attrs.get("keepdims", 1))
        if not axes and attrs.get("noop_with_empty_axes", 0):
            return [x]
        ax = None if not axes else tuple(_norm(axes, x.ndim))
        f = {"ReduceProd": np.prod, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min,
             "ReduceMean": np.mean}[op]
        return [np.asarray(f(x, axis=ax, keepdims=keep)).astype(x.dtype, copy=False)]
    raise FoldError(f"no constant evaluation for {op}")  # pragma: no cover - FOLDABLE lists the ops above
