"""Input, Dense, ScaleShift and BatchNormalization, activations and the reshaping layers."""

from __future__ import annotations

import numpy as np

from ..activations import ACT_CODES, ACTIVATIONS, DEFAULT_ALPHA, Act
from ..rules import Rule
from .base import Layer, Node, as_int_tuple, as_weight, negative_part, positive_part, sign_split

# ----------------------------------------------------------------------- Input


class InputLayer(Layer):
    """Placeholder for one model input; `Input` creates it and returns its node."""

    n_inputs = 0

    def __init__(self, shape, name=None):
        super().__init__(name)
        self.shape = as_int_tuple(shape, len(shape) if hasattr(shape, "__len__") else 1, "Input shape")

    def output_shape(self, input_shapes):
        return self.shape

    def forward(self, ops, xs, w):
        raise RuntimeError("an Input has no forward; the engine feeds it")

    def backward(self, node, m, ctx):
        return []

    def gradient_reads(self, node):
        return ()

    def split(self, node, ctx):
        return sign_split(ctx.delta(node))

    def config(self):
        return {"shape": self.shape}


def Input(shape, name: str | None = None) -> Node:
    """Declare a model input of the given shape (without the batch axis); returns its Node.

    Examples
    --------
    >>> seq = Input((1000, 4), name="sequence")
    """
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"Input shape must be a non-empty tuple of ints; got {shape!r}")
    layer = InputLayer(tuple(shape), name=name)
    layer._calls = 1
    return Node(layer, (), layer.name, layer.shape)


# ---------------------------------------------------------------- linear maps


class LinearLayer(Layer):
    """A layer y = A(x) + b with a learned linear map A (Dense, Conv).

    Subclasses implement ``linear(ops, x, kernel, node)`` (A without bias) and
    ``linear_adjoint(ops, m, kernel, node, addend=None)`` (its transpose, plus ``addend``): unlike
    `Layer.adjoint` they take the kernel, since RevealCancel applies A⁺ and A⁻. Backward follows the
    original's Linear rule: when m⁺ == m⁻ the input gets Aᵀm; otherwise each input unit gets
    [Δx>0]·(A⁺ᵀm⁺ + A⁻ᵀm⁻) + [Δx<0]·(A⁻ᵀm⁺ + A⁺ᵀm⁻) + [Δx=0]·Aᵀ(m⁺+m⁻)/2, the same
    increment for both halves (so the split ends here).
    """

    derived_weights = {"kernel_pos": ("kernel", positive_part), "kernel_neg": ("kernel", negative_part)}

    def _set_kernel(self, kernel, bias, kernel_ndim):
        k = as_weight(kernel, "kernel", self.name)
        if k.ndim != kernel_ndim:
            raise ValueError(f"{self.name}: kernel must have {kernel_ndim} dimensions; got shape {k.shape}")
        n_out = k.shape[-1]
        b = np.zeros(n_out) if bias is None else as_weight(bias, "bias", self.name, (n_out,))
        self.weights = {"kernel": k, "bias": b}

    def forward(self, ops, xs, w):
        y = self.linear(ops, xs[0], w["kernel"], None)
        y += self.bias_view(w["bias"])
        return y

    def bias_view(self, bias):
        """The bias shaped to broadcast against the output (channels last by default)."""
        return bias

    def gradient_reads(self, node):
        return ()  # gradient multipliers have no negative half: only the kernel is read

    def backward(self, node, m, ctx):
        ops, w = ctx.ops, ctx.weights(self)
        pos, neg = m
        if neg is None:
            return [(self.linear_adjoint(ops, pos, w["kernel"], node), None)]
        xp = ops.xp
        d = ctx.delta(node.inputs[0])
        adj = lambda m, kernel: self.linear_adjoint(ops, m, w[kernel], node)  # noqa: E731
        up = adj(pos, "kernel_pos") + adj(neg, "kernel_neg")
        down = adj(pos, "kernel_neg") + adj(neg, "kernel_pos")
        zero = adj(0.5 * (pos + neg), "kernel")
        return [(xp.where(d > 0, up, xp.where(d < 0, down, zero)), None)]

    def split(self, node, ctx):
        ops, w = ctx.ops, ctx.weights(self)
        d_pos, d_neg = sign_split(ctx.delta(node.inputs[0]))
        kp, kn = w["kernel_pos"], w["kernel_neg"]
        pos = self.linear(ops, d_pos, kp, node) + self.linear(ops, d_neg, kn, node)
        neg = self.linear(ops, d_neg, kp, node) + self.linear(ops, d_pos, kn, node)
        return pos, neg


class Dense(LinearLayer):
    """y = x @ kernel + bias over the last axis.

    Parameters
    ----------
    kernel : array, shape=(n_in, n_out)
    bias : array, shape=(n_out,), optional (zeros)
    """

    def __init__(self, kernel, bias=None, name=None):
        super().__init__(name)
        self._set_kernel(kernel, bias, 2)

    def output_shape(self, input_shapes):
        (s,) = input_shapes
        n_in = self.weights["kernel"].shape[0]
        if s[-1] != n_in:
            raise ValueError(f"{self.name}: Dense kernel expects {n_in} input features; input shape is {s}")
        return s[:-1] + (self.weights["kernel"].shape[1],)

    def linear(self, ops, x, kernel, node):
        rows = x.shape[0]
        y = ops.matmul(x.reshape(-1, kernel.shape[0]), kernel)
        return y.reshape((rows,) + x.shape[1:-1] + (kernel.shape[1],))

    def linear_adjoint(self, ops, m, kernel, node, addend=None):
        rows = m.shape[0]
        g = ops.matmul(m.reshape(-1, kernel.shape[1]), kernel.T)
        g = g.reshape((rows,) + m.shape[1:-1] + (kernel.shape[0],))
        return g if addend is None else ops.add(addend, g)

    def config(self):
        return {"units": self.weights["kernel"].shape[1]}


class ScaleShift(Layer):
    """y = x·scale + shift, elementwise, with constant ``scale`` and ``shift``.

    Parameters
    ----------
    scale, shift : float or array
        Broadcast against the input shape without the batch axis (numpy rules), e.g. ``(C, 1)``
        for a per-channel factor on a ``(C, L)`` input. Neither may change the input's shape.

    Notes
    -----
    The map is linear in Δx (the shift cancels), so DeepLIFT's multiplier is ``scale`` for every
    rule. Downstream of a RevealCancel split the halves swap where the scale is negative, as the
    original does for batch normalisation: with s⁺ = s·[s>0], s⁻ = s·[s<0],
    m⁺_in = m⁺s⁺ + m⁻s⁻ and m⁻_in = m⁺s⁻ + m⁻s⁺ (the split is kept, not merged).
    """

    derived_weights = {"scale_pos": ("scale", positive_part), "scale_neg": ("scale", negative_part)}

    def __init__(self, scale=1.0, shift=0.0, name=None):
        super().__init__(name)
        self.scale = as_weight(scale, "scale", self.name)
        self.shift = as_weight(shift, "shift", self.name)
        self._rank = None

    def output_shape(self, input_shapes):
        (s,) = input_shapes
        for what, a in (("scale", self.scale), ("shift", self.shift)):
            if a.ndim > len(s):
                raise ValueError(f"{self.name}: {what} of shape {a.shape} has more dimensions than the input "
                                 f"shape {s} (without the batch axis)")
            try:
                ok = np.broadcast_shapes(a.shape, s) == tuple(s)
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{self.name}: {what} of shape {a.shape} does not broadcast to the input shape "
                                 f"{s} without changing it")
        if self._rank is not None and self._rank != len(s):
            raise ValueError(f"{self.name}: a ScaleShift layer serves inputs of one rank; got {s}")
        self._rank = len(s)
        lead = lambda a: a.reshape((1,) * (len(s) + 1 - a.ndim) + a.shape)  # batch axis first
        sc = lead(self.scale)
        self.weights = {"scale": sc, "shift": lead(self.shift)}
        return tuple(s)

    def _view(self, a, x):
        """Weight ``a`` shaped to broadcast against ``x`` (rows, *shape)."""
        return a

    def forward(self, ops, xs, w):
        x = xs[0]
        return x * self._view(w["scale"], x) + self._view(w["shift"], x)

    def gradient_reads(self, node):
        return ()

    def backward(self, node, m, ctx):
        w = ctx.weights(self)
        pos, neg = m
        if neg is None:
            return [(pos * self._view(w["scale"], pos), None)]
        sp, sn = self._view(w["scale_pos"], pos), self._view(w["scale_neg"], pos)
        return [(pos * sp + neg * sn, pos * sn + neg * sp)]

    def split(self, node, ctx):
        w = ctx.weights(self)
        d_pos, d_neg = ctx.split(node.inputs[0])
        sp, sn = self._view(w["scale_pos"], d_pos), self._view(w["scale_neg"], d_pos)
        return d_pos * sp + d_neg * sn, d_neg * sp + d_pos * sn

    def config(self):
        return {"scale_shape": self.scale.shape, "shift_shape": self.shift.shape}


class BatchNormalization(ScaleShift):
    """Inference-mode batch normalisation: y = γ(x-μ)/√(σ²+ε) + β along ``axis``, the
    `ScaleShift` with s = γ/√(σ²+ε) and t = β - μs per channel (and its rule, the original's).
    """

    def __init__(self, gamma=None, beta=None, moving_mean=None, moving_variance=None, epsilon=1e-3,
                 axis=-1, name=None):
        Layer.__init__(self, name)
        if moving_mean is None or moving_variance is None:
            raise ValueError(f"{self.name}: moving_mean and moving_variance are required")
        mean = as_weight(moving_mean, "moving_mean", self.name)
        if mean.ndim != 1:
            raise ValueError(f"{self.name}: moving_mean must be 1-D; got shape {mean.shape}")
        c = mean.shape[0]
        var = as_weight(moving_variance, "moving_variance", self.name, (c,))
        g = np.ones(c) if gamma is None else as_weight(gamma, "gamma", self.name, (c,))
        b = np.zeros(c) if beta is None else as_weight(beta, "beta", self.name, (c,))
        if not (isinstance(epsilon, (int, float)) and epsilon >= 0):
            raise ValueError(f"{self.name}: epsilon must be a number >= 0; got {epsilon!r}")
        if np.any(var + epsilon <= 0):
            raise ValueError(f"{self.name}: moving_variance + epsilon must be > 0")
        if isinstance(axis, (list, tuple)):  # tf.keras saves axis as a list
            if len(axis) != 1:
                raise NotImplementedError(f"{self.name}: BatchNormalization over several axes {axis}")
            axis = axis[0]
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        scale = g / np.sqrt(var + epsilon)
        self.weights = {"scale": scale, "shift": b - mean * scale}

    def _bshape(self, shape):
        ax = self.axis - 1 if self.axis > 0 else len(shape) + self.axis
        if not 0 <= ax < len(shape):
            raise ValueError(f"{self.name}: axis {self.axis} out of range for input shape {shape}")
        out = [1] * (len(shape) + 1)
        out[ax + 1] = shape[ax]
        return tuple(out)

    def output_shape(self, input_shapes):
        (s,) = input_shapes
        b = self._bshape(s)
        c = self.weights["scale"].shape[0]
        if max(b) != c and not (c == 1 and max(b) == 1):
            raise ValueError(f"{self.name}: {c} channels in the weights but axis {self.axis} of {s} has "
                             f"{max(b)}")
        return s

    def _view(self, a, x):
        return a.reshape(self._bshape(x.shape[1:]))

    def config(self):
        return {"axis": self.axis, "epsilon": self.epsilon}


# ----------------------------------------------------------------- activations

class Activation(Layer):
    """Elementwise nonlinearity y = f(x).

    Parameters
    ----------
    activation : str
        One of `ACTIVATIONS` except "softmax" (use `Softmax`).
    alpha : float, optional
        leaky_relu negative slope (0.3), elu scale (1.0) or hard_sigmoid slope
        (0.2 as in Keras 2; Keras 3 uses 1/6).
    """

    def __init__(self, activation: str, alpha: float | None = None, name=None):
        if not isinstance(activation, str):
            raise TypeError(f"activation must be a str; got {activation!r}")
        key = activation.lower()
        if key == "softmax":
            raise ValueError("use the Softmax layer for softmax (it may only end the model)")
        if key not in ACT_CODES:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
        super().__init__(name or None)
        self.activation = key
        self.act = ACT_CODES[key]
        if alpha is None:
            alpha = DEFAULT_ALPHA.get(self.act, 0.0)
        elif self.act not in DEFAULT_ALPHA:
            raise ValueError(f"{self.name}: alpha is not a parameter of {key}")
        self.weights = {"alpha": as_weight(np.atleast_1d(alpha), "alpha", self.name)}

    def output_shape(self, input_shapes):
        return input_shapes[0]

    def forward(self, ops, xs, w):
        x = xs[0]
        return ops.activation_forward(self.act, x.reshape(x.shape[0], -1), w["alpha"]).reshape(x.shape)

    def gradient_reads(self, node):
        return tuple(node.inputs)  # f'(x) at the input

    def rescale_args(self, node, ctx) -> tuple:
        """`Ops.rescale_backward`'s arguments after ``act`` and the multipliers, for this chunk:
        (x_in, r_in, x_out, r_out, pair_x, pair_r, alpha), activations flattened per row. Outputs
        the forward skipped (`fuse.DerivedActs`) are not derived here: None, and the op computes
        (or for a ReLU, recomputes) f itself."""
        (src,) = node.inputs
        flat = lambda a: a.reshape(a.shape[0], -1)
        x_out, r_out = ctx.acts_x.get(node), ctx.acts_r.get(node)
        return (flat(ctx.x(src)), flat(ctx.r(src)), None if x_out is None else flat(x_out),
                None if r_out is None else flat(r_out), ctx.pair_x, ctx.pair_r, ctx.weights(self)["alpha"])

    def backward(self, node, m, ctx):
        ops, w = ctx.ops, ctx.weights(self)
        (src,) = node.inputs
        rule = ctx.rule(node)
        pos, neg = m
        flat = lambda a: a.reshape(a.shape[0], -1)
        x_in = flat(ctx.x(src))
        if rule is Rule.REVEAL_CANCEL:
            d_pos, d_neg = ctx.split(src)
            m_neg = pos if neg is None else neg
            p, n = ops.reveal_cancel_backward(self.act, flat(pos), flat(m_neg), flat(ctx.r(src)), flat(d_pos),
                                              flat(d_neg), ctx.pair_r, w["alpha"])
            return [(p.reshape(pos.shape), n.reshape(pos.shape))]
        if rule is Rule.RESCALE:
            args = self.rescale_args(node, ctx)
            out = [ops.rescale_backward(self.act, flat(a), *args).reshape(pos.shape)
                   for a in ((pos,) if neg is None else (pos, neg))]
        elif rule is Rule.GRADIENT:
            out = [ops.gradient_backward(self.act, flat(a), x_in, ctx.pair_x, w["alpha"]).reshape(pos.shape)
                   for a in ((pos,) if neg is None else (pos, neg))]
        elif rule is Rule.GUIDED_BACKPROP:
            out = [ops.guided_backprop_backward(self.act, flat(pos), x_in, ctx.pair_x, w["alpha"])
                   .reshape(pos.shape)]
            if neg is not None:  # the original masks both halves with m⁺ > 0
                g = ops.gradient_backward(self.act, flat(neg), x_in, ctx.pair_x, w["alpha"]).reshape(pos.shape)
                out.append(ops.xp.where(pos > 0, g, 0 * g))
        else:  # pragma: no cover - rules are validated at plan time
            raise ValueError(f"unknown rule {rule}")
        return [(out[0], out[1] if len(out) > 1 else None)]

    def split(self, node, ctx):
        ops, w = ctx.ops, ctx.weights(self)
        (src,) = node.inputs
        flat = lambda a: a.reshape(a.shape[0], -1)
        d_pos, d_neg = ctx.split(src)
        shape = d_pos.shape
        if ctx.rule(node) is Rule.REVEAL_CANCEL:
            p, n = ops.reveal_cancel_split(self.act, flat(ctx.r(src)), flat(d_pos), flat(d_neg), ctx.pair_r,
                                           w["alpha"])
            return p.reshape(shape), n.reshape(shape)
        # Every other rule splits its output in proportion, like the original's naive rescale.
        args = (flat(ctx.x(src)), flat(ctx.r(src)), flat(ctx.x(node)), flat(ctx.r(node)), ctx.pair_x,
                ctx.pair_r, w["alpha"])
        return (ops.rescale_backward(self.act, flat(d_pos), *args).reshape(shape),
                ops.rescale_backward(self.act, flat(d_neg), *args).reshape(shape))

    def config(self):
        cfg = {"activation": self.activation}
        if self.act in DEFAULT_ALPHA:
            cfg["alpha"] = float(self.weights["alpha"][0])
        return cfg


class PReLU(Activation):
    """y = x if x > 0 else alpha·x, with a learned alpha.

    Parameters
    ----------
    alpha : array
        Broadcastable to the input shape (e.g. ``(1, C)`` when shared over the
        length axis, as Keras's ``shared_axes=[1]`` saves it).
    """

    def __init__(self, alpha, name=None):
        Layer.__init__(self, name)
        self.activation = "prelu"
        self.act = Act.LEAKY_RELU
        self._alpha = as_weight(alpha, "alpha", self.name)
        self.weights = {"alpha": self._alpha}

    def output_shape(self, input_shapes):
        (s,) = input_shapes
        try:
            full = np.broadcast_to(self._alpha, s)
        except ValueError:
            raise ValueError(f"{self.name}: PReLU alpha of shape {self._alpha.shape} does not broadcast to "
                             f"the input shape {s}") from None
        # Kernels index alpha by feature j % len(alpha): store the broadcast copy.
        self.weights = {"alpha": np.ascontiguousarray(full).reshape(-1)}
        return s

    def config(self):
        return {"alpha_shape": self._alpha.shape}


class Softmax(Layer):
    """Softmax over the last axis. Only allowed as the model's final layer: attributions
    target its pre-activation (the logits), the default target layer."""

    def output_shape(self, input_shapes):
        return input_shapes[0]

    def forward(self, ops, xs, w):
        x = xs[0]
        return ops.softmax_forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def backward(self, node, m, ctx):  # pragma: no cover - the engine never targets past a softmax
        raise NotImplementedError("multipliers through a softmax are not supported; target its input")


# ------------------------------------------------------------------- reshaping


class Dropout(Layer):
    """Identity at inference."""

    elementwise_linear = True

    def __init__(self, rate: float = 0.0, name=None):
        super().__init__(name)
        self.rate = float(rate)

    def output_shape(self, input_shapes):
        return input_shapes[0]

    def forward(self, ops, xs, w):
        return xs[0]

    def adjoint(self, ops, m, node):
        return [m]

    def split(self, node, ctx):
        return ctx.split(node.inputs[0])


def _channels_first_perm(ndim_without_batch: int):
    """Batch-inclusive axes that move the channel axis (1) last."""
    return (0,) + tuple(range(2, ndim_without_batch + 1)) + (1,)


class Flatten(Layer):
    """(rows, *shape) -> (rows, prod(shape)), row-major; channels_first inputs are
    first moved to channels-last order, as Keras does."""

    elementwise_linear = True

    def __init__(self, data_format: str = "channels_last", name=None):
        super().__init__(name)
        self.data_format = _check_data_format(data_format)

    def output_shape(self, input_shapes):
        return (int(np.prod(input_shapes[0])),)

    def forward(self, ops, xs, w):
        x = xs[0]
        if self.data_format == "channels_first" and x.ndim > 2:
            x = ops.xp.ascontiguousarray(x.transpose(_channels_first_perm(x.ndim - 1)))
        return x.reshape(x.shape[0], -1)

    def adjoint(self, ops, m, node):
        shape = node.inputs[0].shape
        if self.data_format == "channels_first" and len(shape) > 1:
            perm = _channels_first_perm(len(shape))
            moved = tuple(shape[p - 1] for p in perm[1:])
            g = m.reshape((m.shape[0],) + moved).transpose(np.argsort(perm))
            return [ops.xp.ascontiguousarray(g)]
        return [m.reshape((m.shape[0],) + shape)]

    def config(self):
        return {"data_format": self.data_format}


class Reshape(Layer):
    """Reshape to ``target_shape`` (one entry may be -1)."""

    elementwise_linear = True

    def __init__(self, target_shape, name=None):
        super().__init__(name)
        try:
            self.target_shape = tuple(int(t) for t in target_shape)
        except TypeError:
            raise TypeError(f"{self.name}: target_shape must be a tuple of ints; got {target_shape!r}") from None

    def output_shape(self, input_shapes):
        n = int(np.prod(input_shapes[0]))
        t = list(self.target_shape)
        if t.count(-1) > 1 or any(v == 0 or v < -1 for v in t):
            raise ValueError(f"{self.name}: invalid target_shape {self.target_shape}")
        if -1 in t:
            known = int(np.prod([v for v in t if v != -1]))
            if n % known:
                raise ValueError(f"{self.name}: cannot reshape {input_shapes[0]} to {self.target_shape}")
            t[t.index(-1)] = n // known
        if int(np.prod(t)) != n:
            raise ValueError(f"{self.name}: cannot reshape {input_shapes[0]} ({n} values) to {self.target_shape}")
        return tuple(t)

    def forward(self, ops, xs, w):
        x = xs[0]
        return x.reshape((x.shape[0],) + self.output_shape([x.shape[1:]]))

    def adjoint(self, ops, m, node):
        return [m.reshape((m.shape[0],) + node.inputs[0].shape)]

    def config(self):
        return {"target_shape": self.target_shape}


class Permute(Layer):
    """Permute the non-batch axes; ``dims`` is 1-indexed, as in Keras."""

    elementwise_linear = True

    def __init__(self, dims, name=None):
        super().__init__(name)
        self.dims = tuple(int(d) for d in dims)

    def output_shape(self, input_shapes):
        (s,) = input_shapes
        if sorted(self.dims) != list(range(1, len(s) + 1)):
            raise ValueError(f"{self.name}: dims must permute 1..{len(s)}; got {self.dims}")
        return tuple(s[d - 1] for d in self.dims)

    def forward(self, ops, xs, w):
        return ops.xp.ascontiguousarray(xs[0].transpose((0,) + self.dims))

    def adjoint(self, ops, m, node):
        inv = np.argsort((0,) + self.dims)
        return [ops.xp.ascontiguousarray(m.transpose(tuple(inv)))]

    def config(self):
        return {"dims": self.dims}


def _check_data_format(data_format):
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first'; got {data_format!r}")
    return data_format
