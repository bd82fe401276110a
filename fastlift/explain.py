"""Public entry points `deeplift` and `attribute`: one-call sessions of `Explainer`.

Each call builds an `Explainer`, runs it once and closes it, so its results are those of
``Explainer(...).deeplift(...)`` bit for bit. Code that explains many batches of one model keeps
one Explainer instead, and pays for validation, rule resolution, weight conversion and packing,
and shared-reference forward passes once.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import _validate
from .explainer import METHODS, Explainer, steps_arg
from .model import Model
from .result import Attributions

__all__ = ["METHODS", "Attributions", "attribute", "deeplift"]


def deeplift(model: Model, X, references=None, *, rule: str = "rescale", target=0, target_layer=None,
             layers=None, hypothetical: bool = False, device: str = "auto", dtype="float32",
             batch_size: int | None = None, progress: bool = False, seed: int | None = None,
             max_pool: str = "exact", n_threads: int | None = None, precision: str = "float32",
             reverse_complement: bool = False, strand_swap: bool | Sequence[int] = True) -> Attributions:
    """DeepLIFT contributions of the inputs (or named layers) to a target.

    Parameters
    ----------
    model : Model
    X : array (n_examples, *input_shape), or a list / dict {input name: array}
    references : None, array, callable or spec (see `fastlift.references`)
        None = zeros; (1, *S) or (N, *S) one per example; (N, K, *S) or (1, K, *S)
        K per example; ``f(X, rng) -> (1, K, *S)``. Results average over K.
    rule : {"rescale", "reveal_cancel", "genomics_default", "gradient", "guided_backprop"}
    target : int, str, array, or a list of these
        A unit of the target layer (flattened index), weights over the target layer's units
        (shape of the layer output), a preset, or a list of these computed in one pass
        sharing every forward pass (the result gains a leading target axis). Presets:
        ``"profile"``: a profile head's logits z (length,) or (length, channels) weighted
        by softmax(z) - 1/length along the length axis, per channel, with the softmax taken
        from each example and held constant (the softmax-weighted, mean-normalised logits as
        the formula is written; contributions sum to its change);
        ``"profile_chrombpnet"``: the numbers ChromBPNet/BPNet's kundajelab-shap path gives,
        weights ½(softmax(z_x) + softmax(z_ref)) - 1/length per reference (they do not sum to
        the target's change; the deltas say by how much); ``"profile_bpnetlite"``: bpnet-lite/
        tangermeme's profile wrapper (softmax over strands and positions together, l·softmax(l)
        under the Rescale rule); ``"sum"``: the sum of all units (e.g. both strands of a
        counts head). See `fastlift.targets`.
    target_layer : str or list of str, optional
        Default: the pre-activation of the first output (logits before a sigmoid or softmax).
        A list scores several heads in one pass: ``target`` is then one target per layer
        (or one target for all), e.g. ``target=["profile", 0],
        target_layer=["profile", "counts"]``; the result has a leading target axis.
    layers : str or list of str, optional
        Layers to score (default: the model inputs).
    hypothetical : bool
        Also return hypothetical contributions of the scored inputs (one-hot inputs).
    device : {"auto", "cpu", "cuda", "numpy"}
    dtype : {"float32", "float64"}
    batch_size : int, optional
        Examples per chunk (default: sized from a memory budget). Results do not depend on it.
    progress : bool
        Print a progress bar to stderr.
    seed : int, optional
        Seed for generated references (default 0: runs are reproducible).
    max_pool : {"exact", "gradient"}
        Max-pooling rule (see `fastlift.rules`).
    n_threads : int, optional
        CPU threads (default: all cores). Results do not depend on it.
    precision : {"float32", "tf32"}
        Float32 GEMMs in full FP32 (default) or, with device="cuda", on TF32 tensor cores
        (inputs rounded to a 10-bit mantissa, FP32 sums; see `Explainer`).
    reverse_complement : bool
        Average each example's scores with those of its reverse complement (scored with the
        reverse complements of the same references, mapped back: positions reversed, A↔T,
        C↔G). One-hot DNA inputs ((length, 4), or (4, length) channels-first) only. See `Explainer.deeplift`.
    strand_swap : bool or sequence of int
        How a unit or weight target maps onto the reverse strand (default True: the target
        layer's two channels are the (+, -) strands). See `Explainer`.

    Returns
    -------
    Attributions
    """
    with Explainer(model, rule=rule, max_pool=max_pool, target=target, target_layer=target_layer, device=device,
                   dtype=dtype, n_threads=n_threads, batch_size=batch_size, precision=precision,
                   strand_swap=strand_swap) as ex:
        return ex.deeplift(X, references, hypothetical=hypothetical, layers=layers, seed=seed, progress=progress,
                           reverse_complement=reverse_complement)


def attribute(model: Model, X, method: str = "deeplift", references=None, *, steps: int = 50,
              **kwargs) -> Attributions:
    """Any attribution method on the same engine.

    Parameters
    ----------
    method : {"deeplift", "gradient", "grad_x_input", "integrated_gradients", "guided_backprop"}
        * deeplift: as `deeplift` (``rule`` etc. in ``kwargs``);
        * gradient: ∂target/∂x (contributions = multipliers = the gradient);
        * grad_x_input: gradient · x;
        * integrated_gradients: (x - ref) · mean of the gradient at ref + (s + ½)/steps·(x - ref),
          s = 0..steps-1 (midpoint rule), averaged over references;
        * guided_backprop: the guided-backprop gradient.
    steps : int
        Integrated-gradients steps.
    **kwargs
        Any keyword of `deeplift` (target, target_layer, layers, device, dtype, ...).
    """
    _validate.choice(method, METHODS, "method")
    unknown = sorted(set(kwargs) - _DEEPLIFT_KEYWORDS)
    if unknown:
        raise TypeError(f"attribute() got unexpected keyword(s) {unknown}; it takes the keywords of deeplift(): "
                        f"{sorted(_DEEPLIFT_KEYWORDS)}")
    steps_arg(steps)
    if method == "deeplift":
        return deeplift(model, X, references, **kwargs)
    if "rule" in kwargs:
        raise ValueError(f"rule only applies to method='deeplift'; got rule={kwargs['rule']!r} with "
                         f"method={method!r}")
    session = {k: kwargs[k] for k in _SESSION_KEYWORDS if k in kwargs}
    call = {k: kwargs[k] for k in _CALL_KEYWORDS if k in kwargs}
    with Explainer(model, **session) as ex:
        return ex.attribute(X, method, references, steps=steps, **call)


_DEEPLIFT_KEYWORDS = {"rule", "target", "target_layer", "layers", "hypothetical", "device", "dtype", "batch_size",
                      "progress", "seed", "max_pool", "n_threads", "precision", "reverse_complement", "strand_swap"}
_SESSION_KEYWORDS = ("target", "target_layer", "device", "dtype", "batch_size", "max_pool", "n_threads",
                     "precision", "strand_swap")
_CALL_KEYWORDS = ("layers", "hypothetical", "seed", "progress", "reverse_complement")
