"""A strict stand-in for CuPy's array module, backed by numpy, for running CupyOps and the engine
on the host emulator.

What it enforces is what breaks first when numpy code meets CuPy arrays:

* a device array never converts to numpy implicitly (``__array__`` raises, as CuPy's does): host
  code that indexes a numpy array with a device array, or calls ``np.asarray`` on one, fails;
* ufuncs, array functions and indexing refuse host arrays mixed with device arrays (CuPy raises
  TypeError for a numpy operand);
* ``xp.ascontiguousarray`` and friends take device arrays only; ``xp.asarray`` / ``xp.array`` are
  the explicit uploads and ``xp.asnumpy`` / ``.get()`` the explicit downloads.

Reductions return 0-d device arrays, as CuPy's do. Everything else is numpy's behaviour, so this
proves host/device discipline, not CuPy's numerics.

Pinned memory and streams are modelled too, as far as fastlift uses them: `empty_pinned` (for
``cupyx.empty_pinned``) returns host arrays marked page-locked (`PinnedHostArray`, views included),
``xp.cuda.Stream`` / ``Event`` / ``get_current_stream`` exist, and ``DevArray.set`` / ``get`` take
a stream. A copy on a non-null stream is deferred until that stream is synchronized: it reads the
host buffer then (so reusing a staging buffer too early gives wrong data), and the device array it
fills refuses every use until then (so a missing synchronize raises). `COPIES` logs every
explicit copy, with whether its host side was pinned.

GEMMs (``xp.matmul`` and ``@``) follow a process-wide float32 compute type, as CuPy's
``set_compute_type`` does: under "tf32" (`GEMM_COMPUTE`) float32 inputs are rounded to TF32 first,
as cuBLAS's TF32 mode does (`tf32.round_tf32`); `GEMM_LOG` records each GEMM's compute type.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from .tf32 import matmul_tf32

#: Host <-> device copies made through the explicit calls (tests may inspect them).
TRANSFERS = {"to_device": 0, "to_host": 0}
#: Every explicit copy: (direction, nbytes, host side pinned?, stream or None).
COPIES: list[tuple[str, int, bool, object]] = []
#: Pinned host memory handed out by `empty_pinned`.
PINNED = {"allocations": 0, "bytes": 0}
#: The float32 GEMM compute type, process-wide like CuPy's: "fp32" or "tf32".
GEMM_COMPUTE = {"float32": "fp32"}
#: The compute type of every GEMM run: "fp32", "tf32" or "other" (non-float32 operands).
GEMM_LOG: list[str] = []


class HostDeviceMixError(TypeError):
    pass


class DevArray(NDArrayOperatorsMixin):
    """A device array: a numpy array that only device code may touch."""

    __slots__ = ("_a", "_pending")

    def __init__(self, a: np.ndarray):
        assert isinstance(a, np.ndarray)
        self._a = a
        self._pending = None  # the stream whose queued copy fills this array

    # -- explicit host access only
    def __array__(self, dtype=None, copy=None):
        raise HostDeviceMixError("Implicit conversion to a NumPy array is not allowed (emulated device "
                                 "array); use xp.asnumpy(a) or a.get()")

    def get(self, stream=None, order="C", out=None, blocking=True):
        src = ready(self)
        if out is None:
            out = np.empty(src.shape, src.dtype, order=order)
        elif not isinstance(out, np.ndarray) or out.shape != src.shape or out.dtype != src.dtype:
            raise ValueError("out must be a numpy array of the same shape and dtype")
        TRANSFERS["to_host"] += 1
        COPIES.append(("to_host", src.nbytes, is_pinned(out), stream))

        def copy():
            out[...] = src

        _on(stream, copy, blocking)
        return out

    def set(self, arr, stream=None):
        """Host -> device copy into this array (CuPy: same shape and dtype, else an error)."""
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray; got {type(arr).__name__}")
        if arr.shape != self._a.shape or arr.dtype != self._a.dtype:
            raise (ValueError if arr.shape != self._a.shape else TypeError)(
                f"set: {arr.shape} {arr.dtype} into {self._a.shape} {self._a.dtype}")
        dst = ready(self)
        stream = get_current_stream() if stream is None else stream
        TRANSFERS["to_device"] += 1
        COPIES.append(("to_device", arr.nbytes, is_pinned(arr), stream))

        def copy():
            dst[...] = arr
            self._pending = None

        if _on(stream, copy, blocking=False):
            self._pending = stream

    # -- numpy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul and method == "__call__":
            return FakeCupy.matmul(*inputs, **kwargs)
        return wrap(getattr(ufunc, method)(*unwrap(inputs), **unwrap(kwargs)))

    def __array_function__(self, func, types, args, kwargs):
        return wrap(func(*unwrap(args), **unwrap(kwargs)))

    # -- container protocol
    def __getitem__(self, index):
        return wrap(self._a[unwrap(index)])

    def __setitem__(self, index, value):
        ready(self)[unwrap(index)] = unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (wrap(row) for row in ready(self))

    def __bool__(self):
        return bool(ready(self))

    def __float__(self):
        return float(ready(self))

    def __int__(self):
        return int(ready(self))

    def __repr__(self):
        return f"DevArray({self._a!r})"

    # -- everything else: ndarray attributes and methods, results kept on the device
    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__ / __array_struct__: those are host access
            raise AttributeError(name)
        if name in _METADATA:  # readable while a copy into the array is queued, as in CuPy
            return getattr(self._a, name)
        attr = getattr(ready(self), name)
        if name in _SHAPE_METHODS:  # CuPy reads axes / shapes as sequences of ints, numpy arrays too
            return lambda *args: wrap(attr(*(_int_sequence(a) for a in args)))
        if callable(attr):
            return lambda *args, **kwargs: wrap(attr(*unwrap(args), **unwrap(kwargs)))
        return wrap(attr)

    @property
    def device(self):
        return "emu"


_SHAPE_METHODS = {"transpose", "reshape"}
_METADATA = {"shape", "dtype", "size", "ndim", "nbytes", "itemsize", "flags", "strides"}


def _int_sequence(a):
    if isinstance(a, np.ndarray) and a.dtype.kind in "iu":
        return tuple(int(v) for v in a.reshape(-1))
    return unwrap(a)


def ready(a: DevArray) -> np.ndarray:
    """The data of device array ``a``; refused while a stream copy into it is not synchronized."""
    if a._pending is not None:
        raise HostDeviceMixError("device array used before the stream copy that fills it was synchronized "
                                 "(stream.synchronize())")
    return a._a


def unwrap(obj):
    """Device arrays -> their numpy data; host arrays -> HostDeviceMixError; containers recursively."""
    if isinstance(obj, DevArray):
        return ready(obj)
    if isinstance(obj, np.ndarray):
        raise HostDeviceMixError(f"a host numpy array {obj.shape} {obj.dtype} was mixed with device arrays; "
                                 "upload it with xp.asarray first (CuPy raises TypeError here)")
    if isinstance(obj, tuple):
        return tuple(unwrap(o) for o in obj)
    if isinstance(obj, list):
        return [unwrap(o) for o in obj]
    if isinstance(obj, dict):
        return {k: unwrap(v) for k, v in obj.items()}
    return obj


def wrap(obj):
    """numpy results -> device arrays (scalars as 0-d arrays, as CuPy reductions return)."""
    if isinstance(obj, np.ndarray):
        return DevArray(obj)
    if isinstance(obj, np.generic):
        return DevArray(np.asarray(obj))
    if isinstance(obj, tuple) and any(isinstance(o, (np.ndarray, np.generic)) for o in obj):
        return tuple(wrap(o) for o in obj)
    if isinstance(obj, list) and any(isinstance(o, (np.ndarray, np.generic)) for o in obj):
        return [wrap(o) for o in obj]
    return obj


# --------------------------------------------------------------------------- pinned memory, streams
class PinnedHostArray(np.ndarray):
    """Host memory from `empty_pinned` ("page-locked"); its views and slices stay marked."""


def empty_pinned(shape, dtype=float, order="C"):
    """Stand-in for ``cupyx.empty_pinned``: a host array marked pinned."""
    a = np.empty(shape, dtype, order=order).view(PinnedHostArray)
    PINNED["allocations"] += 1
    PINNED["bytes"] += a.nbytes
    return a


def is_pinned(a) -> bool:
    return isinstance(a, PinnedHostArray)


_current = threading.local()


class Event:
    def __init__(self, stream=None, upto=0):
        self.stream, self.upto = stream, upto


class Stream:
    """A CUDA stream. The null stream runs work at once; another stream queues it until
    `synchronize` (or until a stream waiting on one of its events is synchronized)."""

    def __init__(self, null=False, non_blocking=False):
        self.is_null, self.is_non_blocking = null, non_blocking
        self._queue: list = []
        self.log: list[str] = []  # "wait", "copy", "sync": what this stream was asked to do, in order

    def __enter__(self):
        stack = getattr(_current, "stack", None) or []
        _current.stack = stack + [self]
        return self

    def __exit__(self, *exc):
        _current.stack = _current.stack[:-1]

    def enqueue(self, fn):
        self.log.append("copy")
        self._queue.append(fn)

    def synchronize(self):
        self.log.append("sync")
        queue, self._queue = self._queue, []
        for fn in queue:
            fn()

    def record(self, event=None):
        return Event(self, len(self._queue))

    def wait_event(self, event):
        self.log.append("wait")
        if event.stream is not None and event.stream is not self and event.stream._queue:
            self._queue.append(event.stream.synchronize)


Stream.null = Stream(null=True)


def get_current_stream():
    stack = getattr(_current, "stack", None)
    return stack[-1] if stack else Stream.null


def _on(stream, fn, blocking):
    """Run copy ``fn`` on ``stream`` (None: the current stream). Returns True if it was queued."""
    stream = get_current_stream() if stream is None else stream
    if stream.is_null:
        fn()
        return False
    stream.enqueue(fn)
    if blocking:
        stream.synchronize()
        return False
    return True


class _Cuda:
    Stream = Stream
    Event = Event
    get_current_stream = staticmethod(get_current_stream)


class FakeCupy:
    """The ``xp`` of the emulated device: numpy's functions over device arrays only."""

    ndarray = DevArray
    cuda = _Cuda

    @staticmethod
    def asarray(a, dtype=None, order=None):
        if isinstance(a, DevArray):
            return a if dtype is None or a.dtype == np.dtype(dtype) else DevArray(a._a.astype(dtype))
        TRANSFERS["to_device"] += 1
        return DevArray(np.array(a, dtype=dtype, order=order or "K", copy=True))

    @staticmethod
    def array(a, dtype=None, copy=True, order="K"):
        if isinstance(a, DevArray):
            return DevArray(np.array(a._a, dtype=dtype, copy=copy, order=order))
        return FakeCupy.asarray(a, dtype, order)

    @staticmethod
    def asnumpy(a):
        return a.get() if isinstance(a, DevArray) else np.asarray(a)

    @staticmethod
    def matmul(a, b, out=None):
        """cuBLAS through CuPy: float32 operands under the "tf32" compute type are rounded to TF32
        and their products summed in float32; everything else is numpy's matmul."""
        a_, b_ = unwrap(a), unwrap(b)
        out_ = None if out is None else unwrap(out)
        if a_.dtype == b_.dtype == np.float32:
            mode = GEMM_COMPUTE["float32"]
            GEMM_LOG.append(mode)
            r = matmul_tf32(a_, b_, out=out_) if mode == "tf32" else np.matmul(a_, b_, out=out_)
        else:
            GEMM_LOG.append("other")
            r = np.matmul(a_, b_, out=out_)
        return out if out is not None else wrap(r)

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes (xp.float32), constants (xp.newaxis, xp.inf)
        return lambda *args, **kwargs: wrap(attr(*unwrap(args), **unwrap(kwargs)))


xp = FakeCupy()
