"""Validation at the public boundary (DESIGN decision 7).

Every check names the argument, what was expected and what was found. Nothing
user-supplied reaches a kernel without passing through here.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


#: Largest accepted ``n_threads``: OpenMP takes a C int, and far more threads than cores only slows a run.
MAX_THREADS = 4096


def n_threads_arg(n_threads) -> int | None:
    """None (every core) or an int in [1, `MAX_THREADS`] (numpy ints accepted) -> int or None."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or not 1 <= n_threads <= MAX_THREADS:
        raise ValueError(f"n_threads must be None or an int in [1, {MAX_THREADS}]; got {n_threads!r}")
    return int(n_threads)


def dtype_arg(dtype):
    """'float32' / 'float64' (or the numpy types) -> numpy dtype."""
    try:
        dt = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would mean float64
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt


#: GEMM precisions of ``precision=``: "float32" (full FP32) or "tf32" (CUDA tensor cores).
PRECISIONS = ("float32", "tf32")


def precision_arg(precision, dtype) -> str:
    """``precision`` checked against the compute ``dtype`` (a numpy dtype): "float32", or "tf32"
    with float32 (TF32 rounds float32 GEMM inputs; the device is checked by `get_ops`)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be 'float32' or 'tf32'; got {precision!r}")
    if precision == "tf32" and np.dtype(dtype) != np.float32:
        raise ValueError(f"precision='tf32' rounds the inputs of float32 GEMMs; it does not apply to "
                         f"dtype={np.dtype(dtype).name!r} (use dtype='float32', or precision='float32')")
    return precision


def batch_size_arg(batch_size, default: int) -> int:
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None; got {batch_size!r}")
    return int(batch_size)


def numeric_array(a, what: str, dtype=None) -> np.ndarray:
    """An array of real numbers (bool/int/float), finite, and finite once cast to ``dtype`` when
    given (the compute dtype: 1e300 is finite in float64 and inf in float32); TypeError/ValueError
    otherwise."""
    if isinstance(a, (str, bytes)):
        raise TypeError(f"{what} must be an array of numbers; got a {type(a).__name__}")
    try:
        arr = np.asarray(a)
    except Exception as e:  # noqa: BLE001 - ragged lists etc.
        raise TypeError(f"{what} must be an array of numbers; got {type(a).__name__} ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must hold real numbers (bool, int or float); got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{what} contains {bad} NaN or Inf value(s); all values must be finite")
    if dtype is not None:
        fits_dtype(arr, dtype, what)
    return arr


def fits_dtype(arr, dtype, what: str) -> None:
    """ValueError naming ``what`` if finite ``arr`` overflows ``dtype`` (a float dtype) when cast."""
    dt = np.dtype(dtype)
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= dt.itemsize or arr.size == 0:
        return  # ints, bools and narrower floats always fit a float32/float64 range
    largest = float(np.max(np.abs(arr)))
    if largest > float(np.finfo(dt).max):
        bad = int(np.count_nonzero(np.abs(arr) > np.finfo(dt).max))
        raise ValueError(f"{what} has {bad} value(s) beyond the {dt.name} range (largest magnitude {largest:.3g}, "
                         f"{dt.name} holds up to {float(np.finfo(dt).max):.3g}); scale them or use dtype='float64'")


def inputs(model, X, what: str = "X", dtype=None) -> list[np.ndarray]:
    """X (array, list or dict keyed by input name) -> list of arrays in model input order.

    Checks the count, each shape (n_examples, *input_shape), a common n_examples and, with
    ``dtype``, that the values stay finite in it.
    """
    names = model.input_names
    if isinstance(X, dict):
        unknown = sorted(set(X) - set(names))
        missing = [n for n in names if n not in X]
        if unknown or missing:
            raise ValueError(f"{what} as a dict must have exactly the keys {names}; missing {missing}, "
                             f"unknown {unknown}")
        items = [X[n] for n in names]
    elif isinstance(X, (list, tuple)):
        items = list(X)
        if len(items) != len(names):
            raise ValueError(f"{what} must hold {len(names)} array(s), one per model input {names}; "
                             f"got {len(items)}")
    else:
        if len(names) != 1:
            raise ValueError(f"the model has {len(names)} inputs {names}: pass {what} as a list or dict; "
                             f"got a single {type(X).__name__}")
        items = [X]
    out = []
    for name, node, a in zip(names, model.inputs, items):
        label = what if len(names) == 1 else f"{what}[{name!r}]"
        arr = numeric_array(a, label, dtype)
        if arr.ndim != len(node.shape) + 1 or arr.shape[1:] != node.shape:
            raise ValueError(f"{label} must have shape (n_examples, {', '.join(map(str, node.shape))}); "
                             f"got {arr.shape}")
        out.append(arr)
    n = {a.shape[0] for a in out}
    if len(n) != 1:
        raise ValueError(f"all inputs in {what} must have the same number of examples; got "
                         f"{[a.shape[0] for a in out]}")
    return out


def choice(value, options, what: str):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{what} must be one of {tuple(options)}; got {value!r}")
    return value


def available_memory() -> int | None:
    """Bytes this process can still allocate: the kernel's MemAvailable, capped by a cgroup v2
    memory limit when one is set; None where neither can be read."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            avail = min(avail, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return avail


def _size(nbytes: float) -> str:
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def memory_fits(nbytes: float, what: str, budget: int | None = None) -> None:
    """ValueError before allocating when a call needs about ``nbytes`` (estimated from its
    arguments) and that exceeds ``budget`` (default: `available_memory`). ``what`` names the
    arguments responsible and the remedy."""
    budget = available_memory() if budget is None else budget
    if budget is not None and nbytes > budget:
        raise ValueError(f"{what}: needs about {_size(nbytes)} of memory, more than the {_size(budget)} "
                         "available")


def input_shape_arg(value):
    """``input_shape=``: None, a shape, or {input name: shape}; shapes as tuples of Python ints."""
    if value is None:
        return None
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"input_shape keys must be input names (str); got {key!r}")
        return {key: shape_arg(v, f"input_shape[{key!r}]") for key, v in value.items()}
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"input_shape must be a tuple of ints or a dict {{input name: tuple}}; got {value!r}")
    return shape_arg(value, "input_shape")


def shape_arg(value, what) -> tuple:
    """A shape of positive ints (numpy integers accepted; floats and bools refused, never truncated)."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{what} must be a tuple of positive ints; got {value!r}")
    out = []
    for d in value:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
            shown = repr(d.item()) if isinstance(d, np.generic) else repr(d)
            raise TypeError(f"{what} must be a tuple of positive ints; got {tuple(value)!r} ({shown} is a "
                            f"{type(d).__name__})")
        if d < 1:
            raise ValueError(f"{what} must be a tuple of positive ints; got {tuple(value)!r}")
        if d > 2**31:
            raise ValueError(f"{what} entries must be at most 2**31; got {tuple(value)!r}")
        out.append(int(d))
    return tuple(out)


def fit_input_shape(given: tuple, declared, name: str, label: str, shown=None) -> tuple:
    """``given`` (an `input_shape_arg` shape) for the input ``name`` whose file declares
    ``declared`` (without the batch axis; None for a dimension left open). ``shown``: the
    declared shape as the error shows it (default: None as "None")."""
    if len(given) != len(declared) or any(d is not None and d != g for d, g in zip(declared, given)):
        shown = shown or tuple("None" if d is None else d for d in declared)
        raise ValueError(f"input_shape {given} does not fit input {name!r} of shape {shown} (without the batch "
                         f"axis) in {label}")
    return given
