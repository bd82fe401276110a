"""Every backend exposes the oracle's ops under the same names with the same signatures.

Layers call ``ops.<name>(...)`` without knowing the backend, so a renamed argument or a changed
default in one backend is a bug even when its own tests pass.
"""

import inspect

import pytest

from fastlift.backends.cpu_ops import CpuOps
from fastlift.backends.ops import Ops

#: Ops that CpuOps implements with its own kernels (the rest are inherited from Ops).
CPU_KERNEL_OPS = [
    "matmul", "im2col", "col2im", "max_pool_forward", "avg_pool_forward", "avg_pool_backward",
    "max_pool_backward", "activation_forward", "activation_grad", "rescale_backward",
    "gradient_backward", "guided_backprop_backward", "reveal_cancel_split", "reveal_cancel_backward",
    "pair_delta", "pair_contributions", "mean_over_refs", "compute_context", "conv_forward", "conv_adjoint",
    "add", "conv_skips_zeros", "add_activation", "conv_relu", "conv_residual_relu", "conv_adjoint_relu",
    "conv_adjoint_rescale", "close",
    "assign",
]


def test_capabilities_are_declared_on_the_base_class():
    for name in ("fused_ops", "prefetch_chunks", "memory_budget", "close", "conv_skips_zeros", "compute_context"):
        assert hasattr(Ops, name), name
    assert Ops.fused_ops == frozenset() and not Ops.prefetch_chunks
    assert CpuOps.fused_ops <= {"add_activation", "conv_relu", "conv_residual_relu", "conv_adjoint_relu",
                                "conv_adjoint_rescale"}
    assert all(callable(getattr(Ops, f)) for f in CpuOps.fused_ops)


def public_methods(cls):
    return sorted(name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_"))


def assert_same_signatures(backend):
    """The same public methods as Ops (no more: a backend's extra public method would be an op that
    the engine cannot call on the others) with the same signatures."""
    ops_methods = public_methods(Ops)
    assert set(public_methods(backend)) == set(ops_methods), set(public_methods(backend)) ^ set(ops_methods)
    for name in ops_methods + ["__init__"]:
        got, want = inspect.signature(getattr(backend, name)), inspect.signature(getattr(Ops, name))
        assert got == want, f"{backend.__name__}.{name}{got} differs from Ops.{name}{want}"


def test_cpu_ops_signatures_match_ops():
    assert_same_signatures(CpuOps)


@pytest.mark.parametrize("name", CPU_KERNEL_OPS)
def test_cpu_ops_overrides_kernel_op(name):
    assert name in vars(CpuOps), f"CpuOps.{name} is inherited from Ops instead of using a kernel"
    assert name in public_methods(Ops)


def test_cupy_ops_signatures_match_ops():
    cupy_ops = pytest.importorskip("fastlift.backends.cupy_ops", exc_type=ImportError,
                                   reason="no CUDA backend in this build")
    assert_same_signatures(cupy_ops.CupyOps)
