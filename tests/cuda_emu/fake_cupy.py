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
"""

from __future__ import annotations

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

#: Host <-> device copies made through the explicit calls (tests may inspect them).
TRANSFERS = {"to_device": 0, "to_host": 0}


class HostDeviceMixError(TypeError):
    pass


class DevArray(NDArrayOperatorsMixin):
    """A device array: a numpy array that only device code may touch."""

    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray):
        assert isinstance(a, np.ndarray)
        self._a = a

    # -- explicit host access only
    def __array__(self, dtype=None, copy=None):
        raise HostDeviceMixError("Implicit conversion to a NumPy array is not allowed (emulated device "
                                 "array); use xp.asnumpy(a) or a.get()")

    def get(self):
        TRANSFERS["to_host"] += 1
        return self._a.copy()

    # -- numpy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return wrap(getattr(ufunc, method)(*unwrap(inputs), **unwrap(kwargs)))

    def __array_function__(self, func, types, args, kwargs):
        return wrap(func(*unwrap(args), **unwrap(kwargs)))

    # -- container protocol
    def __getitem__(self, index):
        return wrap(self._a[unwrap(index)])

    def __setitem__(self, index, value):
        self._a[unwrap(index)] = unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (wrap(row) for row in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __repr__(self):
        return f"DevArray({self._a!r})"

    # -- everything else: ndarray attributes and methods, results kept on the device
    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__ / __array_struct__: those are host access
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if name in _SHAPE_METHODS:  # CuPy reads axes / shapes as sequences of ints, numpy arrays too
            return lambda *args: wrap(attr(*(_int_sequence(a) for a in args)))
        if callable(attr):
            return lambda *args, **kwargs: wrap(attr(*unwrap(args), **unwrap(kwargs)))
        return wrap(attr)

    @property
    def device(self):
        return "emu"


_SHAPE_METHODS = {"transpose", "reshape"}


def _int_sequence(a):
    if isinstance(a, np.ndarray) and a.dtype.kind in "iu":
        return tuple(int(v) for v in a.reshape(-1))
    return unwrap(a)


def unwrap(obj):
    """Device arrays -> their numpy data; host arrays -> HostDeviceMixError; containers recursively."""
    if isinstance(obj, DevArray):
        return obj._a
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


class FakeCupy:
    """The ``xp`` of the emulated device: numpy's functions over device arrays only."""

    ndarray = DevArray

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

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes (xp.float32), constants (xp.newaxis, xp.inf)
        return lambda *args, **kwargs: wrap(attr(*unwrap(args), **unwrap(kwargs)))


xp = FakeCupy()
