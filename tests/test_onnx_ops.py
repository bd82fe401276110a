"""ONNX ops one at a time: small graphs built with onnx.helper, loaded by fastlift and compared with
onnxruntime (forward), then DeepLIFT's summation-to-delta on them in float64 (Rescale, exact
max pooling, two random references per example)."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastlift as fl
from fastlift.io.onnx import load_onnx

INT_MAX = np.iinfo(np.int64).max


def graph_bytes(nodes, x_shape, inits=None, opset=17, outputs=("y",), inputs=None, x_dims=None):
    """A model with input "x" of shape (N, *x_shape) and the given outputs (shapes left to inference)."""
    inits = inits or {}
    ins = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims or ["N", *x_shape])]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    graph = helper.make_graph(nodes, "case", ins, outs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def ort_run(data, feeds):
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.astype(np.float32) for k, v in feeds.items()})


def check(data, X, *, refs=None, sum_tol=1e-10, rule="rescale"):
    """Forward equals onnxruntime; DeepLIFT sums to delta. Returns the model."""
    model = load_onnx(data)
    want = ort_run(data, {"x": X})
    got = model.predict(X, dtype="float64")
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = w.reshape(w.shape[0], -1) if w.ndim == 1 else w
        g = g.reshape(w.shape)
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5 * max(1.0, np.abs(w).max()))
    rng = np.random.default_rng(99)
    R = refs if refs is not None else X[None].repeat(2, 0).transpose(1, 0, *range(2, X.ndim + 1)) + \
        rng.normal(size=(X.shape[0], 2) + X.shape[1:]) * 0.7
    res = fl.deeplift(model, X, R, rule=rule, dtype="float64", device="numpy")
    scale = np.maximum(1.0, np.abs(res.contributions.reshape(len(X), -1)).sum(axis=1))
    assert np.all(np.abs(res.deltas) <= sum_tol * scale), res.deltas
    return model


def rand(rng, *shape, scale=0.5):
    return (rng.normal(size=shape) * scale).astype(np.float32)


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


# ------------------------------------------------------------------------------------- cases
# Each case: (nodes, inits, x shape without batch, opset); input "x", output "y".
def _conv(rng, w_shape, **attrs):
    return ([node("Conv", ["x", "W", "B"], ["y"], **attrs)],
            {"W": rand(rng, *w_shape), "B": rand(rng, w_shape[0])})


def conv_cases(rng):
    yield "conv1d_same_pads", *_conv(rng, (6, 4, 5), pads=[2, 2]), (4, 12), 17
    yield "conv1d_asymmetric_pads", *_conv(rng, (6, 4, 5), pads=[1, 3]), (4, 12), 17
    yield "conv1d_stride_dilation", *_conv(rng, (6, 4, 3), strides=[2], dilations=[2], pads=[2, 1]), (4, 13), 17
    yield "conv1d_same_lower", *_conv(rng, (6, 4, 4), auto_pad="SAME_LOWER"), (4, 11), 13
    yield "conv1d_same_upper_stride", *_conv(rng, (6, 4, 4), auto_pad="SAME_UPPER", strides=[2]), (4, 11), 13
    yield "conv1d_valid_no_bias", [node("Conv", ["x", "W"], ["y"])], {"W": rand(rng, 3, 4, 3)}, (4, 9), 9
    yield "conv1d_grouped", *_conv(rng, (6, 2, 3), group=2, pads=[1, 1]), (4, 10), 17
    yield "conv1d_depthwise", *_conv(rng, (4, 1, 3), group=4), (4, 10), 17
    yield "conv2d_pads_strides", *_conv(rng, (5, 3, 3, 2), pads=[1, 0, 1, 1], strides=[2, 1]), (3, 7, 6), 17
    yield "conv2d_dilation", *_conv(rng, (5, 3, 2, 2), dilations=[2, 1]), (3, 7, 6), 11
    yield "conv2d_one_row", *_conv(rng, (5, 4, 1, 4)), (4, 1, 12), 17  # Beluga's (1, k) kernels


def dense_cases(rng):
    yield ("gemm_transB_alpha_beta", [node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "G", "C"], ["y"], transB=1,
                                                                             alpha=0.5, beta=2.0)],
           {"G": rand(rng, 3, 12), "C": rand(rng, 3)}, (4, 3), 13)
    yield ("gemm_row_bias", [node("Gemm", ["x", "G", "C"], ["y"])], {"G": rand(rng, 5, 3), "C": rand(rng, 1, 3)},
           (5,), 11)
    yield "gemm_no_bias", [node("Gemm", ["x", "G"], ["y"], transB=1)], {"G": rand(rng, 3, 5)}, (5,), 13
    yield ("matmul_add_2d", [node("MatMul", ["x", "W"], ["m"]), node("Add", ["m", "B"], ["y"])],
           {"W": rand(rng, 5, 3), "B": rand(rng, 3)}, (5,), 17)
    yield ("matmul_add_3d", [node("MatMul", ["x", "W"], ["m"]), node("Add", ["B", "m"], ["y"])],
           {"W": rand(rng, 6, 2), "B": rand(rng, 2)}, (4, 6), 17)
    yield ("matmul_read_twice", [node("MatMul", ["x", "W"], ["m"]), node("Add", ["m", "B"], ["a"]),
                                 node("Add", ["a", "m"], ["y"])],
           {"W": rand(rng, 5, 3), "B": rand(rng, 3)}, (5,), 17)
    yield ("matmul_vector", [node("MatMul", ["x", "W"], ["y"])], {"W": rand(rng, 6)}, (3, 6), 17)
    yield ("batch_norm", [node("Conv", ["x", "W"], ["c"]),
                          node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=1e-3)],
           {"W": rand(rng, 5, 4, 3), "g": rand(rng, 5), "b": rand(rng, 5), "m": rand(rng, 5),
            "v": np.abs(rand(rng, 5)) + 0.5}, (4, 9), 15)


def activation_cases(rng):
    w = {"W": rand(rng, 5, 4, 3, scale=0.8), "B": rand(rng, 5)}
    conv = node("Conv", ["x", "W", "B"], ["c"])
    for op, attrs in [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Elu", {"alpha": 0.5}), ("Selu", {}),
                      ("Sigmoid", {}), ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.6}),
                      ("Tanh", {}), ("Softplus", {}), ("Softsign", {}), ("Exp", {})]:
        yield f"{op}_{len(attrs)}", [conv, node(op, ["c"], ["y"], **attrs)], w, (4, 9), 17
    yield "prelu_per_channel", [conv, node("PRelu", ["c", "s"], ["y"])], {**w, "s": rand(rng, 5, 1)}, (4, 9), 17
    yield "prelu_shared", [conv, node("PRelu", ["c", "s"], ["y"])], {**w, "s": np.float32([0.25])}, (4, 9), 9
    yield ("log_of_positive", [conv, node("Softplus", ["c"], ["p"]), node("Add", ["p", "e"], ["q"]),
                               node("Log", ["q"], ["y"])], {**w, "e": np.float32(0.1)}, (4, 9), 17)
    yield ("clip_relu6", [conv, node("Clip", ["c", "lo", "hi"], ["y"])], {**w, "lo": np.float32(0), "hi": np.float32(6)},
           (4, 9), 13)
    yield "clip_relu_attrs", [conv, node("Clip", ["c"], ["y"], min=0.0, max=float("inf"))], w, (4, 9), 9
    yield "gelu_op", [conv, node("Gelu", ["c"], ["y"])], w, (4, 9), 20
    yield "gelu_op_tanh", [conv, node("Gelu", ["c"], ["y"], approximate="tanh")], w, (4, 9), 20
    erf_parts = {**w, "r2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5),
                 "inv": np.float32(1 / np.sqrt(2))}
    yield ("gelu_erf_torchscript", [conv, node("Div", ["c", "r2"], ["d"]), node("Erf", ["d"], ["e"]),
                                    node("Add", ["e", "one"], ["a"]), node("Mul", ["c", "a"], ["m"]),
                                    node("Mul", ["m", "half"], ["y"])], erf_parts, (4, 9), 13)
    yield ("gelu_erf_half_first", [conv, node("Mul", ["c", "inv"], ["d"]), node("Erf", ["d"], ["e"]),
                                   node("Add", ["one", "e"], ["a"]), node("Mul", ["half", "c"], ["h"]),
                                   node("Mul", ["a", "h"], ["y"])], erf_parts, (4, 9), 13)
    yield ("gelu_erf_scaled_input", [conv, node("Mul", ["c", "r2"], ["s"]), node("Div", ["s", "r2"], ["d"]),
                                     node("Erf", ["d"], ["e"]), node("Add", ["e", "one"], ["a"]),
                                     node("Mul", ["a", "half"], ["ah"]), node("Mul", ["s", "ah"], ["y"])],
           erf_parts, (4, 9), 13)
    yield "silu", [conv, node("Sigmoid", ["c"], ["s"]), node("Mul", ["c", "s"], ["y"])], w, (4, 9), 17
    yield "silu_swapped", [conv, node("Sigmoid", ["c"], ["s"]), node("Mul", ["s", "c"], ["y"])], w, (4, 9), 17


def pool_cases(rng):
    yield "maxpool_pads", [node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2], pads=[1, 1])], {}, (3, 10), 17
    yield "maxpool_ceil", [node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2], ceil_mode=1)], {}, (3, 10), 17
    yield ("maxpool_ceil_pads", [node("MaxPool", ["x"], ["y"], kernel_shape=[2], strides=[2], pads=[1, 1],
                                      ceil_mode=1)], {}, (3, 9), 17)
    yield ("maxpool2d", [node("MaxPool", ["x"], ["y"], kernel_shape=[2, 3], strides=[2, 1], pads=[1, 1, 0, 1])], {},
           (2, 5, 6), 12)
    yield ("avgpool_exclude_pad", [node("AveragePool", ["x"], ["y"], kernel_shape=[3], strides=[2], pads=[1, 1])], {},
           (3, 10), 17)
    yield ("avgpool_include_pad", [node("AveragePool", ["x"], ["y"], kernel_shape=[3], strides=[2], pads=[1, 2],
                                        count_include_pad=1)], {}, (3, 10), 17)
    yield ("avgpool_ceil", [node("AveragePool", ["x"], ["y"], kernel_shape=[3], strides=[2], ceil_mode=1)], {},
           (3, 10), 17)
    yield ("avgpool2d_same_upper", [node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                                         auto_pad="SAME_UPPER")], {}, (2, 5, 5), 11)
    yield ("global_avg_flatten", [node("GlobalAveragePool", ["x"], ["g"]), node("Flatten", ["g"], ["y"])], {},
           (3, 8), 17)
    yield ("global_max_2d_squeeze", [node("GlobalMaxPool", ["x"], ["g"]), node("Squeeze", ["g", "ax"], ["y"])],
           {"ax": np.int64([2, 3])}, (3, 4, 5), 13)


def reduce_cases(rng):
    yield "reduce_mean_attr", [node("ReduceMean", ["x"], ["y"], axes=[2], keepdims=0)], {}, (3, 8), 13
    yield "reduce_mean_input", [node("ReduceMean", ["x", "ax"], ["y"])], {"ax": np.int64([-1])}, (3, 8), 18
    yield "reduce_sum_channels", [node("ReduceSum", ["x", "ax"], ["y"])], {"ax": np.int64([1])}, (3, 8), 13
    yield ("reduce_sum_to_rows", [node("ReduceSum", ["x", "ax"], ["s"], keepdims=0),
                                 node("Unsqueeze", ["s", "u"], ["y"])], {"ax": np.int64([1, 2]), "u": np.int64([1])},
           (3, 8), 13)
    yield "reduce_max_two_axes", [node("ReduceMax", ["x"], ["y"], axes=[1, 2], keepdims=1)], {}, (3, 4, 5), 13
    yield "reduce_max_middle", [node("ReduceMax", ["x"], ["y"], axes=[2], keepdims=0)], {}, (3, 4, 5), 13
    yield "reduce_lse_channels", [node("ReduceLogSumExp", ["x"], ["y"], axes=[1], keepdims=1)], {}, (3, 8), 13
    yield ("reduce_lse_two_axes", [node("ReduceLogSumExp", ["x", "ax"], ["y"], keepdims=0)], {"ax": np.int64([1, 2])},
           (3, 4, 5), 18)
    yield "reduce_lse_last", [node("ReduceLogSumExp", ["x"], ["y"], axes=[-1], keepdims=0)], {}, (3, 8), 13


def arithmetic_cases(rng):
    yield "mul_per_channel", [node("Mul", ["x", "k"], ["y"])], {"k": rand(rng, 3, 1)}, (3, 5), 17
    yield "div_scalar", [node("Div", ["x", "k"], ["y"])], {"k": np.float32(-2.5)}, (3, 5), 17
    yield "add_batch1_const", [node("Add", ["k", "x"], ["y"])], {"k": rand(rng, 1, 3, 1)}, (3, 5), 17
    yield "sub_const", [node("Sub", ["x", "k"], ["y"])], {"k": rand(rng, 5)}, (3, 5), 17
    yield "const_minus_x", [node("Sub", ["k", "x"], ["y"])], {"k": rand(rng, 3, 5)}, (3, 5), 17
    yield "neg", [node("Neg", ["x"], ["y"])], {}, (3, 5), 17
    yield ("mul_chain_composes", [node("Mul", ["x", "a"], ["m"]), node("Add", ["m", "b"], ["s"]),
                                 node("Div", ["s", "a"], ["y"])], {"a": np.float32(4), "b": rand(rng, 3, 1)}, (3, 5), 17)
    two = {"W": rand(rng, 4, 3, 3), "V": rand(rng, 4, 3, 3)}
    convs = [node("Conv", ["x", "W"], ["a"], pads=[1, 1]), node("Conv", ["x", "V"], ["b"], pads=[1, 1])]
    yield "add_two_tensors", [*convs, node("Add", ["a", "b"], ["y"])], two, (3, 7), 17
    yield "sub_two_tensors", [*convs, node("Sub", ["a", "b"], ["y"])], two, (3, 7), 17
    yield "concat_channels", [*convs, node("Concat", ["a", "b"], ["y"], axis=1)], two, (3, 7), 17
    yield "concat_last", [*convs, node("Concat", ["a", "b", "a"], ["y"], axis=-1)], two, (3, 7), 17
    yield ("constant_node", [node("Constant", [], ["k"], value=numpy_helper.from_array(rand(rng, 3, 1))),
                             node("Mul", ["x", "k"], ["y"])], {}, (3, 5), 17)
    yield ("stack_logsumexp", [node("Gemm", ["x", "G1"], ["h1"]), node("Gemm", ["x", "G2"], ["h2"]),
                               node("Unsqueeze", ["h1", "z"], ["u1"]), node("Unsqueeze", ["h2", "z"], ["u2"]),
                               node("Concat", ["u1", "u2"], ["st"], axis=0),
                               node("ReduceLogSumExp", ["st", "z"], ["y"], keepdims=0)],
           {"G1": rand(rng, 6, 1), "G2": rand(rng, 6, 1), "z": np.int64([0])}, (6,), 18)
    yield ("stack_mean_opset11", [node("Gemm", ["x", "G1"], ["h1"]), node("Gemm", ["x", "G2"], ["h2"]),
                                  node("Unsqueeze", ["h1"], ["u1"], axes=[0]), node("Unsqueeze", ["h2"], ["u2"], axes=[0]),
                                  node("Concat", ["u1", "u2"], ["st"], axis=0),
                                  node("ReduceMean", ["st"], ["y"], axes=[0], keepdims=0)],
           {"G1": rand(rng, 6, 2), "G2": rand(rng, 6, 2)}, (6,), 11)


def shape_cases(rng):
    chain = [node("Shape", ["x"], ["sh"]), node("Gather", ["sh", "i0"], ["n"], axis=0),
             node("Unsqueeze", ["n", "z"], ["n1"]), node("Concat", ["n1", "m1"], ["target"], axis=0),
             node("Reshape", ["x", "target"], ["f"]), node("Gemm", ["f", "G"], ["y"], transB=1)]
    yield ("shape_gather_concat_reshape", chain, {"i0": np.int64(0), "z": np.int64([0]), "m1": np.int64([-1]),
                                                  "G": rand(rng, 2, 15)}, (3, 5), 13)
    yield ("reshape_keep_zero", [node("Reshape", ["x", "t"], ["y"])], {"t": np.int64([0, 5, -1])}, (3, 5, 2), 13)
    yield "flatten_axis1", [node("Flatten", ["x"], ["y"])], {}, (3, 4, 2), 13
    yield ("transpose_then_matmul", [node("Transpose", ["x"], ["t"], perm=[0, 2, 1]), node("MatMul", ["t", "W"], ["y"])],
           {"W": rand(rng, 3, 2)}, (3, 5), 13)
    yield ("squeeze_unsqueeze", [node("Unsqueeze", ["x", "a"], ["u"]), node("Mul", ["u", "k"], ["m"]),
                                 node("Squeeze", ["m", "a"], ["y"])], {"a": np.int64([2]), "k": rand(rng, 3, 1, 1)},
           (3, 5), 13)
    yield ("unsqueeze_attr_conv2d", [node("Unsqueeze", ["x"], ["u"], axes=[2]), node("Conv", ["u", "W"], ["y"])],
           {"W": rand(rng, 2, 3, 1, 3)}, (3, 6), 11)
    yield ("identity_dropout_cast", [node("Identity", ["x"], ["i"]), node("Dropout", ["i", "r"], ["d"]),
                                    node("Cast", ["d"], ["c"], to=TensorProto.FLOAT), node("Mul", ["c", "k"], ["y"])],
           {"r": np.float32(0.3), "k": rand(rng, 3, 1)}, (3, 5), 13)
    yield ("expand_noop", [node("Expand", ["x", "s"], ["e"]), node("Mul", ["e", "k"], ["y"])],
           {"s": np.int64([1, 1, 5]), "k": rand(rng, 3, 1)}, (3, 5), 13)


def slice_cases(rng):
    yield ("slice_length", [node("Slice", ["x", "s", "e", "a"], ["y"])],
           {"s": np.int64([2]), "e": np.int64([-3]), "a": np.int64([2])}, (3, 12), 13)
    yield ("slice_channels_int_max", [node("Slice", ["x", "s", "e", "a", "st"], ["y"])],
           {"s": np.int64([1]), "e": np.int64([INT_MAX]), "a": np.int64([1]), "st": np.int64([1])}, (4, 6), 13)
    yield ("slice_batch_whole_and_length", [node("Slice", ["x", "s", "e", "a"], ["y"])],
           {"s": np.int64([0, 1]), "e": np.int64([INT_MAX, 5]), "a": np.int64([0, 2])}, (3, 8), 13)
    yield ("slice_attrs_opset9", [node("Slice", ["x"], ["y"], starts=[1, 2], ends=[3, 100], axes=[1, 2])], {},
           (4, 7), 9)
    yield ("slice_2d_both", [node("Slice", ["x", "s", "e", "a"], ["y"])],
           {"s": np.int64([1, 0]), "e": np.int64([4, -1]), "a": np.int64([2, 3])}, (2, 5, 6), 13)
    yield ("slice_4d_axis", [node("Slice", ["x", "s", "e", "a"], ["y"])],
           {"s": np.int64([1]), "e": np.int64([3]), "a": np.int64([2])}, (2, 4, 3, 2), 13)
    yield ("pad_zeros", [node("Pad", ["x", "p"], ["y"])], {"p": np.int64([0, 0, 2, 0, 0, 1])}, (3, 5), 13)
    yield ("pad_value", [node("Pad", ["x", "p", "v"], ["y"])], {"p": np.int64([0, 1, 2, 0, 0, 1]),
                                                              "v": np.float32(0.5)}, (3, 5), 13)
    yield ("pad_negative_crops", [node("Pad", ["x", "p"], ["y"])], {"p": np.int64([0, 0, -1, 0, 0, 2])}, (3, 5), 13)
    yield ("pad_axes_opset18", [node("Pad", ["x", "p", "", "ax"], ["y"])], {"p": np.int64([1, 2]),
                                                                          "ax": np.int64([-1])}, (3, 5), 18)
    yield "pad_attrs_opset9", [node("Pad", ["x"], ["y"], pads=[0, 0, 1, 0, 0, 3])], {}, (3, 5), 9
    yield "gather_channel", [node("Gather", ["x", "i"], ["y"], axis=1)], {"i": np.int64(2)}, (4, 6), 13
    yield "gather_range", [node("Gather", ["x", "i"], ["y"], axis=2)], {"i": np.int64([1, 2, 3])}, (4, 6), 13
    yield ("split_and_rejoin", [node("Split", ["x", "sp"], ["a", "b"], axis=1), node("Concat", ["b", "a"], ["y"], axis=1)],
           {"sp": np.int64([1, 3])}, (4, 6), 13)
    yield ("split_equal_opset18", [node("Split", ["x"], ["a", "b"], axis=2, num_outputs=2),
                                   node("Sub", ["a", "b"], ["y"])], {}, (4, 6), 18)


CASES = {}
for _gen in (conv_cases, dense_cases, activation_cases, pool_cases, reduce_cases, arithmetic_cases, shape_cases,
             slice_cases):
    for _case in _gen(np.random.default_rng(len(CASES))):
        CASES[_case[0]] = _case[1:]


@pytest.mark.parametrize("name", list(CASES))
def test_op_forward_matches_onnxruntime_and_deeplift_sums_to_delta(name):
    nodes, inits, x_shape, opset = CASES[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    X = rng.normal(size=(3,) + tuple(x_shape))
    check(graph_bytes(nodes, x_shape, inits, opset), X)


# ------------------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("op,opset", [("Softmax", 13), ("LogSoftmax", 13), ("Softmax", 11)])
def test_softmax_is_the_final_layer_and_the_default_target_is_its_input(op, opset):
    rng = np.random.default_rng(1)
    nodes = [node("Gemm", ["x", "G", "C"], ["logits"]), node(op, ["logits"], ["y"], **({"axis": 1} if opset < 13 else {}))]
    data = graph_bytes(nodes, (5,), {"G": rand(rng, 5, 3), "C": rand(rng, 3)}, opset)
    model = check(data, rng.normal(size=(4, 5)))
    assert model.default_target().name == "logits"


# ------------------------------------------------------------------------------------- names, layout
def test_names_are_the_onnx_tensor_names_and_the_layout_is_channels_first():
    rng = np.random.default_rng(2)
    nodes = [node("Conv", ["seq", "W"], ["/conv/Conv_output_0"], pads=[1, 1]),
             node("Relu", ["/conv/Conv_output_0"], ["/relu/Relu_output_0"]),
             node("GlobalAveragePool", ["/relu/Relu_output_0"], ["gap"]),
             node("Flatten", ["gap"], ["flat"]), node("Gemm", ["flat", "G"], ["logit"], transB=1),
             node("Identity", ["logit"], ["profile"]), node("Identity", ["logit"], ["counts"])]
    data = graph_bytes(nodes, None, {"W": rand(rng, 3, 4, 3), "G": rand(rng, 2, 3)},
                       inputs=[helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["batch", 4, 10])],
                       outputs=("profile", "counts"))
    model = load_onnx(data)
    assert model.input_names == ["seq"] and model.output_names == ["profile", "counts"]
    assert model.input_layout == "channels_first" and model.channel_axis == 1
    assert "/conv/Conv_output_0" in model.layer_names
    X = np.eye(4)[rng.integers(0, 4, (2, 10))].transpose(0, 2, 1)
    res = fl.deeplift(model, X, fl.references.dinuc_shuffle(3), target_layer="/relu/Relu_output_0", target=[0, 2],
                      hypothetical=True, dtype="float64")
    assert res.hypothetical.shape == (2, 2, 4, 10)
    assert np.abs(res.deltas).max() < 1e-10


def test_load_model_reads_an_onnx_file_by_its_content(tmp_path):
    rng = np.random.default_rng(3)
    data = graph_bytes([node("Conv", ["x", "W"], ["y"])], (4, 6), {"W": rand(rng, 2, 4, 3)})
    path = tmp_path / "model.bin"  # the name says nothing
    path.write_bytes(data)
    model = fl.load_model(path)
    X = rng.normal(size=(2, 4, 6))
    np.testing.assert_allclose(model.predict(X, dtype="float64"), ort_run(data, {"x": X})[0], rtol=1e-5, atol=1e-6)


def test_fixed_batch_exports_accept_any_batch_size():
    rng = np.random.default_rng(4)
    chain = [node("Shape", ["x"], ["sh"]), node("Slice", ["sh", "z", "one"], ["n"]),
             node("Concat", ["n", "m1"], ["t"], axis=0), node("Reshape", ["x", "t"], ["f"]),
             node("Gemm", ["f", "G"], ["y"])]
    data = graph_bytes(chain, None, {"z": np.int64([0]), "one": np.int64([1]), "m1": np.int64([-1]),
                                     "G": rand(rng, 12, 2)}, x_dims=[1, 3, 4])
    model = load_onnx(data)
    X = rng.normal(size=(5, 3, 4))
    want = np.concatenate([ort_run(data, {"x": X[i:i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(model.predict(X, dtype="float64"), want, rtol=1e-5, atol=1e-6)


def test_a_rank_one_output_comes_back_with_a_unit_axis():
    rng = np.random.default_rng(5)
    nodes = [node("Gemm", ["x", "G"], ["g"]), node("Squeeze", ["g", "a"], ["s"]), node("Sigmoid", ["s"], ["y"])]
    data = graph_bytes(nodes, (4,), {"G": rand(rng, 4, 1), "a": np.int64([1])})
    model = load_onnx(data)
    X = rng.normal(size=(3, 4))
    assert model.predict(X).shape == (3, 1)
    res = fl.deeplift(model, X, dtype="float64")
    assert res.target_layer == "s"
    np.testing.assert_allclose(res.contributions.sum(axis=1) - res.deltas,
                               (ort_run(data, {"x": X})[0] * 0 + (X @ data_weights(data, "G"))[:, 0]), rtol=1e-5)


def data_weights(data, name):
    from onnx import ModelProto
    m = ModelProto()
    m.ParseFromString(data)
    return next(numpy_helper.to_array(t) for t in m.graph.initializer if t.name == name).astype(np.float64)


# ------------------------------------------------------------------------------------- what patterns become
def _classes(name):
    nodes, inits, x_shape, opset = CASES[name]
    model = load_onnx(graph_bytes(nodes, x_shape, inits, opset))
    return [(type(n.layer).__name__, getattr(n.layer, "activation", None)) for n in model.nodes]


@pytest.mark.parametrize("name,want", [
    ("matmul_add_2d", [("InputLayer", None), ("Dense", None)]),  # MatMul + Add: one Dense with its bias
    ("gelu_erf_torchscript", [("InputLayer", None), ("Conv1D", None), ("Activation", "gelu")]),
    ("gelu_erf_half_first", [("InputLayer", None), ("Conv1D", None), ("Activation", "gelu")]),
    ("silu", [("InputLayer", None), ("Conv1D", None), ("Activation", "swish")]),
    ("mul_chain_composes", [("InputLayer", None), ("ScaleShift", None)]),
    ("conv1d_same_pads", [("InputLayer", None), ("Conv1D", None)]),
    ("conv1d_asymmetric_pads", [("InputLayer", None), ("ZeroPadding1D", None), ("Conv1D", None)]),
    ("stack_logsumexp", [("InputLayer", None), ("Dense", None), ("Dense", None), ("LogSumExp", None)]),
    ("shape_gather_concat_reshape", [("InputLayer", None), ("Reshape", None), ("Dense", None)]),
    ("reduce_mean_attr", [("InputLayer", None), ("GlobalAvgPool1D", None)]),
])
def test_patterns_become_the_layers_they_compute(name, want):
    got = _classes(name)
    assert sorted(got, key=str) == sorted(want, key=str), got
