"""deeplift 0.6's ``deeplift.layers``: the mode enums, the layer objects a converted model
lists, and the original's rules (with their quirks) as fastlift layer subclasses.

The mode names are the API (``NonlinearMxtsMode.RevealCancel`` etc. are plain strings,
as in the original's ``deeplift.util.enum``).

Quirks of the original reproduced here (fastlift's own rules differ on purpose, see the
README's design decisions):

1. **RevealCancel pseudocount.** Where |Δx⁺| (or |Δx⁻|) < 0.5e-7 the original adds
   ±1e-7 to it (``pseudocount_near_zero``) and divides the finite difference by that, in
   float32: e.g. ``f(0.5 + 1e-7) - f(0.5)`` rounds to 1.19e-7, giving a multiplier of
   0.596 instead of 0.5 for a ReLU. Reproduced in float32 with the same order of
   additions (``(x⁰ + Δx⁻) + Δx⁺`` and ``(x⁰ + Δx⁺) + Δx⁻``).
2. **Rescale near zero.** Where |Δx| < 1e-7 the original falls back to the gradient
   evaluated at the activation's *output* reference f(x⁰), i.e. σ′(σ(x⁰)) for sigmoid
   and 1 − tanh²(tanh(x⁰)) for tanh (ReLU/PReLU are unaffected). Reproduced for the
   activations the original has (relu, prelu, sigmoid, tanh); activations it lacks use
   f′(x⁰).
3. **Global max pooling** gives *every* tied maximum the full multiplier (the original's
   normalisation is commented out), so ties over-count.
4. **Max pooling** routes the multiplier to the arg-max of the input only (the
   ``gradient`` mode, first arg-max in row-major order); its Δ⁺/Δ⁻ are zeros, so a
   RevealCancel activation right after a max pool sees only pseudocounts, and the
   contributions *of* a max-pool layer (``find_scores_layer`` = the pool) are zeros.
5. Guided backprop masks both halves with m⁺ > 0.
"""

from __future__ import annotations

from .. import layers as L
from ..activations import Act


class _Enum:
    """Attribute bag of string constants with ``vals`` (as ``deeplift.util.enum``)."""

    def __init__(self, **values):
        for k, v in values.items():
            setattr(self, k, v)
        self.vals = list(values.values())
        self.the_dict = dict(values)

    def __repr__(self):
        return f"enum({', '.join(self.vals)})"


NonlinearMxtsMode = _Enum(Gradient="Gradient", Rescale="Rescale", DeconvNet="DeconvNet",
                          GuidedBackprop="GuidedBackprop", GuidedBackpropRescale="GuidedBackpropRescale",
                          RevealCancel="RevealCancel", PassThrough="PassThrough",
                          DeepLIFT_GenomicsDefault="DeepLIFT_GenomicsDefault")
DenseMxtsMode = _Enum(Linear="Linear")
ConvMxtsMode = _Enum(Linear="Linear")
MaxPoolDeepLiftMode = _Enum(gradient="gradient")
ScoringMode = _Enum(OneAndZeros="OneAndZeros", SoftmaxPreActivation="SoftmaxPreActivation")

NEAR_ZERO_THRESHOLD = 1e-7
#: activations the original has: the Rescale fallback quirk (2) applies to these
_ORIGINAL_ACTS = (Act.RELU, Act.LEAKY_RELU, Act.SIGMOID, Act.TANH)


# ----------------------------------------------------------------- the rules


class _OriginalActivationRules:
    """Backward and split of an activation under the original's nonlinear modes.

    ``modes`` maps node name -> a `NonlinearMxtsMode` value (already resolved: never
    ``DeepLIFT_GenomicsDefault``); it is filled by the converter.
    """

    modes: dict

    def _mode(self, node):
        return self.modes[node.name]

    def _pieces(self, node, ctx):
        src = node.inputs[0]
        flat = lambda a: a.reshape(a.shape[0], -1)
        w = ctx.weights(self)
        x_in = flat(ctx.x(src))[ctx.pair_x]
        r_in = flat(ctx.r(src))[ctx.pair_r]
        return src, flat, w, x_in, r_in

    def _f(self, ops, t, w):
        return ops.activation_forward(self.act, ops.xp.ascontiguousarray(t), w["alpha"])

    def _grad(self, ops, t, w):
        return ops.activation_grad(self.act, ops.xp.ascontiguousarray(t), w["alpha"])

    def _rescale_factor(self, node, ctx):
        """The original's naive rescale factor (with its near-zero fallback quirk)."""
        ops = ctx.ops
        _, flat, w, x_in, r_in = self._pieces(node, ctx)
        x_out = flat(ctx.x(node))[ctx.pair_x]
        r_out = flat(ctx.r(node))[ctx.pair_r]
        dx = x_in - r_in
        dy = x_out - r_out
        near = ops.xp.abs(dx) < dx.dtype.type(NEAR_ZERO_THRESHOLD)
        at = r_out if self.act in _ORIGINAL_ACTS else r_in
        g_ref = self._grad(ops, at, w)
        return ops.xp.where(near, g_ref, dy / ops.xp.where(near, dx.dtype.type(1), dx))

    def _reveal_cancel(self, node, ctx):
        """(Δy⁺, Δy⁻, scale⁺, scale⁻), each flat (P, F), computed as the original does."""
        ops = ctx.ops
        src, flat, w, _, r_in = self._pieces(node, ctx)
        d_pos, d_neg = ctx.split(src)
        d_pos, d_neg = flat(d_pos), flat(d_neg)
        pp, pn = _pseudocount(ops, d_pos), _pseudocount(ops, d_neg)
        f = lambda t: self._f(ops, t, w)
        f0 = f(r_in)
        half = r_in.dtype.type(0.5)
        pos = half * ((f(r_in + pp) - f0) + (f((r_in + pn) + pp) - f(r_in + pn)))
        neg = half * ((f(r_in + pn) - f0) + (f((r_in + pp) + pn) - f(r_in + pp)))
        return pos, neg, pos / pp, neg / pn

    def backward(self, node, m, ctx):
        ops = ctx.ops
        mode = self._mode(node)
        pos, neg = m
        shape = pos.shape
        flat = lambda a: a.reshape(a.shape[0], -1)
        m_pos = flat(pos)
        m_neg = m_pos if neg is None else flat(neg)
        if mode == NonlinearMxtsMode.RevealCancel:
            _, _, s_pos, s_neg = self._reveal_cancel(node, ctx)
            return [((m_pos * s_pos).reshape(shape), (m_neg * s_neg).reshape(shape))]
        if mode == NonlinearMxtsMode.DeconvNet:
            w = ctx.weights(self)
            out_pos = self._f(ops, m_pos, w)
            return [(out_pos.reshape(shape), None if neg is None else self._f(ops, m_neg, w).reshape(shape))]
        if mode == NonlinearMxtsMode.PassThrough:
            return [(pos, neg)]
        if mode in (NonlinearMxtsMode.Gradient, NonlinearMxtsMode.GuidedBackprop):
            _, _, w, x_in, _ = self._pieces(node, ctx)
            s_pos = self._grad(ops, x_in, w)
            if mode == NonlinearMxtsMode.GuidedBackprop:
                s_pos = s_pos * (m_pos > 0)  # the mask comes from m⁺ only and scales both halves
            s_neg = s_pos
        elif mode == NonlinearMxtsMode.Rescale:
            s_pos = s_neg = self._rescale_factor(node, ctx)
        elif mode == NonlinearMxtsMode.GuidedBackpropRescale:
            s = self._rescale_factor(node, ctx)
            s_pos, s_neg = s * (m_pos > 0), s * (m_neg > 0)
        else:  # pragma: no cover - modes are validated at conversion
            raise RuntimeError(f"Unsupported nonlinear_mxts_mode: {mode}")
        out_pos = (m_pos * s_pos).reshape(shape)
        if neg is None and mode != NonlinearMxtsMode.GuidedBackpropRescale:
            return [(out_pos, None)]
        return [(out_pos, (m_neg * s_neg).reshape(shape))]

    def split(self, node, ctx):
        src = node.inputs[0]
        shape = (len(ctx.pair_x),) + node.shape
        if self._mode(node) == NonlinearMxtsMode.RevealCancel:
            pos, neg, _, _ = self._reveal_cancel(node, ctx)
            return pos.reshape(shape), neg.reshape(shape)
        s = self._rescale_factor(node, ctx)
        d_pos, d_neg = ctx.split(src)
        return (d_pos.reshape(s.shape) * s).reshape(shape), (d_neg.reshape(s.shape) * s).reshape(shape)


def _pseudocount(ops, t):
    """The original's pseudocount_near_zero: ±1e-7 where |t| < 0.5e-7 (sign of t, 0 -> +)."""
    eps = t.dtype.type(NEAR_ZERO_THRESHOLD)
    near = ops.xp.abs(t) < t.dtype.type(0.5 * NEAR_ZERO_THRESHOLD)
    return t + eps * (near & (t >= 0)).astype(t.dtype) - eps * (near & (t < 0)).astype(t.dtype)


class OriginalActivation(_OriginalActivationRules, L.Activation):
    """`fastlift.layers.Activation` under the original's nonlinear modes."""

    def __init__(self, activation, alpha=None, name=None):
        super().__init__(activation, alpha=alpha, name=name)
        self.modes = {}


class OriginalPReLU(_OriginalActivationRules, L.PReLU):
    def __init__(self, alpha, name=None):
        super().__init__(alpha, name=name)
        self.modes = {}


class _ZeroSplit:
    """The original gives max-pool outputs zero Δ⁺/Δ⁻ ("assumes the next layer is linear")."""

    def split(self, node, ctx):
        z = ctx.ops.xp.zeros((len(ctx.pair_x),) + node.shape, dtype=ctx.delta(node).dtype)
        return z, z


class OriginalMaxPool1D(_ZeroSplit, L.MaxPool1D):
    pass


class OriginalMaxPool2D(_ZeroSplit, L.MaxPool2D):
    pass


class _GlobalMaxTies(_ZeroSplit):
    """Global max pooling whose multiplier goes, in full, to every tied maximum."""

    def backward(self, node, m, ctx):
        ops = ctx.ops
        src = node.inputs[0]
        x = self.to_nhwc(ops, ctx.x(src))[ctx.pair_x]  # (P, H, W, C)
        mask = (x == x.max(axis=(1, 2), keepdims=True)).astype(x.dtype)

        def route(a):
            return self.from_nhwc(ops, ops.xp.ascontiguousarray(mask * a.reshape(a.shape[0], 1, 1, -1)))

        pos, neg = m
        return [(route(pos), None if neg is None else route(neg))]


class OriginalGlobalMaxPool1D(_GlobalMaxTies, L.GlobalMaxPool1D):
    pass


class OriginalGlobalMaxPool2D(_GlobalMaxTies, L.GlobalMaxPool2D):
    pass


#: classes the Keras loader builds for `fastlift.compat`
ORIGINAL_CLASSES = {
    "Activation": OriginalActivation, "PReLU": OriginalPReLU, "MaxPool1D": OriginalMaxPool1D,
    "MaxPool2D": OriginalMaxPool2D, "GlobalMaxPool1D": OriginalGlobalMaxPool1D,
    "GlobalMaxPool2D": OriginalGlobalMaxPool2D,
}


# ---------------------------------------------- the layer objects a model lists


class Layer:
    """One deeplift layer of a converted model (a view of a fastlift node).

    Attributes
    ----------
    name : str
        The original's name (``"preact_1"``, ``"conv_0"``...).
    node_name : str
        The fastlift node it stands for (``fastlift.Model.get_node``).
    """

    def __init__(self, name, node, inputs=None):
        self.name = name
        self.node = node
        self.node_name = node.name
        self.inputs = inputs

    def get_name(self):
        return self.name

    def get_shape(self):
        """``(None, *shape)``, the batch axis first, as the original."""
        return (None,) + tuple(self.node.shape)

    def get_inputs(self):
        return self.inputs

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


class Input(Layer):
    pass


class Node(Layer):
    pass


class Dense(Node):
    pass


class Conv1D(Node):
    pass


class Conv2D(Node):
    pass


class BatchNormalization(Node):
    pass


class NoOp(Node):
    pass


class Flatten(Node):
    pass


class Concat(Node):
    pass


class MaxPool1D(Node):
    pass


class MaxPool2D(Node):
    pass


class GlobalMaxPool1D(Node):
    pass


class AvgPool1D(Node):
    pass


class AvgPool2D(Node):
    pass


class GlobalAvgPool1D(Node):
    pass


class Activation(Node):
    """An activation layer; ``nonlinear_mxts_mode`` is its resolved mode."""

    nonlinear_mxts_mode = None


class ReLU(Activation):
    pass


class PReLU(Activation):
    pass


class Sigmoid(Activation):
    pass


class Tanh(Activation):
    pass


class Softmax(Activation):
    pass


class OtherActivation(Activation):
    """Activations the original lacks (elu, gelu, ...), supported here."""


class Other(Node):
    """Layers the original lacks (Add, Cropping1D, ZeroPadding, Reshape, ...), supported here."""


def layer_class(node):
    """The original's class for a fastlift node."""
    layer = node.layer
    if isinstance(layer, L.InputLayer):
        return Input
    if isinstance(layer, L.PReLU):
        return PReLU
    if isinstance(layer, L.Softmax):
        return Softmax
    if isinstance(layer, L.Activation):
        act = layer.activation
        if act == "relu":
            return ReLU
        if act == "leaky_relu":
            return PReLU
        return {"sigmoid": Sigmoid, "tanh": Tanh}.get(act, OtherActivation)
    table = [(L.Dense, Dense), (L.Conv1D, Conv1D), (L.Conv2D, Conv2D), (L.BatchNormalization, BatchNormalization),
             (L.Dropout, NoOp), (L.Flatten, Flatten), (L.Concatenate, Concat), (L.MaxPool1D, MaxPool1D),
             (L.MaxPool2D, MaxPool2D), (L.GlobalMaxPool1D, GlobalMaxPool1D), (L.AvgPool1D, AvgPool1D),
             (L.AvgPool2D, AvgPool2D), (L.GlobalAvgPool1D, GlobalAvgPool1D)]
    for core, cls in table:
        if isinstance(layer, core):
            return cls
    return Other


def is_max_pool(node) -> bool:
    return isinstance(node.layer, (L.MaxPool1D, L.MaxPool2D, L.GlobalMaxPool1D, L.GlobalMaxPool2D))


__all__ = [
    "NEAR_ZERO_THRESHOLD",
    "ConvMxtsMode",
    "DenseMxtsMode",
    "MaxPoolDeepLiftMode",
    "NonlinearMxtsMode",
    "ScoringMode",
]
