"""Bad ONNX input, each with a clear error: truncated or corrupt files, opsets and domains fastlift
does not read, unsupported ops and op options, dynamic shapes, and tensors stored in other files
(read only from regular files inside the model's folder, sizes checked first)."""

import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastlift as fl
from fastlift.io import ModelFileError
from fastlift.io.onnx import MAX_OPSET, MIN_OPSET, load_onnx


def _model(nodes=None, inits=None, opset=17, x_dims=("N", 4, 6), domains=(), functions=()):
    rng = np.random.default_rng(0)
    nodes = nodes or [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
                      helper.make_node("Relu", ["c"], ["y"], name="relu")]
    inits = {"W": rng.normal(size=(3, 4, 3)).astype(np.float32)} if inits is None else inits
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_dims))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    m = helper.make_model(graph, opset_imports=imports, functions=list(functions))
    m.ir_version = 8
    return m


def _bytes(**kw):
    return _model(**kw).SerializeToString()


# ------------------------------------------------------------------------------ broken files
def test_a_truncated_file_is_a_model_file_error(tmp_path):
    data = _bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match=r"'cut.onnx': not a readable ONNX model \(truncated or corrupt\?\)"):
        fl.load_model(path)


def test_a_file_cut_between_fields_lacks_its_opsets(tmp_path):
    m = _model()
    data = m.SerializeToString()
    cut = data[:data.index(m.opset_import[0].SerializeToString()) - 2]  # graph kept, opset_import gone
    with pytest.raises(ModelFileError, match="declares no opset"):
        load_onnx(cut)


def test_corrupt_bytes_are_a_model_file_error():
    data = bytearray(_bytes())
    data[2:6] = b"\xff\xff\xff\xff"  # a field of wire type 7, which protobuf does not have
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_onnx(bytes(data))


def test_protobuf_without_a_graph_is_not_a_model(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")  # ir_version 7 and nothing else
    with pytest.raises(ModelFileError, match="no graph"):
        fl.load_model(path)
    with pytest.raises(ModelFileError, match="empty"):
        load_onnx(b"")


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1])
def test_unsupported_opset_versions_are_refused(opset):
    with pytest.raises(ModelFileError, match=f"uses ONNX opset {opset}; fastlift reads opsets {MIN_OPSET} to "
                                             f"{MAX_OPSET}"):
        load_onnx(_bytes(opset=opset))


def test_ops_of_other_domains_and_file_functions_are_refused():
    nodes = [helper.make_node("FusedConv", ["x", "W"], ["y"], domain="com.microsoft", name="fused")]
    with pytest.raises(NotImplementedError, match=r"node 'fused' \(FusedConv\): op 'FusedConv' of domain "
                                                  r"'com.microsoft' is not supported"):
        load_onnx(_bytes(nodes=nodes, domains=["com.microsoft"]))
    body = helper.make_function("local", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("Twice", ["x"], ["y"], domain="local", name="call")]
    with pytest.raises(NotImplementedError, match="function defined in the file; re-export with functions inlined"):
        load_onnx(_bytes(nodes=nodes, inits={}, domains=["local"], functions=[body]))


def test_an_unsupported_op_names_the_node_its_type_and_the_supported_ops():
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("LpNormalization", ["c"], ["y"],
                                                                           name="/norm/Lp")]
    with pytest.raises(NotImplementedError) as e:
        load_onnx(_bytes(nodes=nodes))
    msg = str(e.value)
    assert "node '/norm/Lp' (LpNormalization): op LpNormalization is not supported" in msg
    assert "fastlift reads these ONNX ops: Abs, Add," in msg and "Conv" in msg and "ReduceLogSumExp" in msg


@pytest.mark.parametrize("nodes,inits,match", [
    ([helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Mul", ["c", "c"], ["y"])], None,
     "Mul of two computed tensors"),
    ([helper.make_node("Concat", ["x", "x"], ["y"], axis=0)], {}, "Concat along the batch axis"),
    ([helper.make_node("Reshape", ["x", "t"], ["y"])], {"t": np.int64([-1, 6])}, "mixes the batch axis"),
    ([helper.make_node("Div", ["k", "x"], ["y"])], {"k": np.float32(1)}, "dividing a constant by a computed tensor"),
    ([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2])], {}, "moves the batch axis"),
    ([helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])],
     {"s": np.int64([0]), "e": np.int64([6]), "a": np.int64([2]), "st": np.int64([2])}, "step 2"),
    ([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")], {"p": np.int64([0, 0, 1, 0, 0, 1])},
     "mode 'reflect'"),
    ([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {}, "over axis 1"),
    ([helper.make_node("ReduceSum", ["x"], ["y"])], {}, "reduces every axis, the batch axis too"),
    ([helper.make_node("Gather", ["x", "i"], ["y"], axis=0)], {"i": np.int64(0)}, "along the batch axis"),
    ([helper.make_node("Gather", ["x", "i"], ["y"], axis=2)], {"i": np.int64([0, 2])}, "contiguous range"),
    ([helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Relu", ["e"], ["y"])], {}, "exact GELU"),
    ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"lo": np.float32(-1), "hi": np.float32(1)},
     r"Clip to \[-1.0, 1.0\]"),
    ([helper.make_node("Dropout", ["x", "r", "t"], ["y"])], {"r": np.float32(0.5), "t": np.bool_(True)},
     "training mode"),
    ([helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2]),
      helper.make_node("Identity", ["idx"], ["z"])], {}, r"output 1 \('idx'\)"),
])
def test_what_has_no_rule_is_refused_with_the_reason(nodes, inits, match):
    with pytest.raises(NotImplementedError, match=match):
        load_onnx(_bytes(nodes=nodes, inits=inits))


def test_malformed_graphs_are_model_file_errors():
    nodes = [helper.make_node("Relu", ["nowhere"], ["y"], name="r")]
    with pytest.raises(ModelFileError, match=r"node 'r' \(Relu\): reads 'nowhere', which no earlier node"):
        load_onnx(_bytes(nodes=nodes, inits={}))
    m = _model()
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    m.graph.output[0].type.tensor_type.shape.dim.add().dim_param = "N"
    m.graph.output[0].type.tensor_type.shape.dim.add().dim_value = 7  # the graph computes 3 channels
    m.graph.output[0].type.tensor_type.shape.dim.add().dim_value = 4
    with pytest.raises(ModelFileError, match="declared with shape"):
        load_onnx(m.SerializeToString())
    w = np.zeros((3, 5, 3), np.float32)  # 5 input channels for a 4-channel input
    with pytest.raises(ModelFileError, match=r"group=1 does not fit 4 input channels and weight of shape \(3, 5, 3\)"):
        load_onnx(_bytes(inits={"W": w}))


# ------------------------------------------------------------------------------ dynamic shapes
def test_dynamic_dimensions_need_input_shape(tmp_path):
    path = tmp_path / "dyn.onnx"
    onnx.save(_model(x_dims=("N", 4, "length")), path)
    with pytest.raises(NotImplementedError, match=r"input 'x' has dynamic dimension\(s\): shape \(4, 'length'\).*"
                                                  r"pass input_shape="):
        fl.load_model(path)
    model = fl.load_model(path, input_shape=(4, 9))
    assert model.get_node("x").shape == (4, 9) and model.outputs[0].shape == (3, 7)
    assert fl.load_model(path, input_shape={"x": (4, 5)}).outputs[0].shape == (3, 3)
    with pytest.raises(ValueError, match=r"input_shape \(3, 9\) does not fit input 'x'"):
        fl.load_model(path, input_shape=(3, 9))
    with pytest.raises(ValueError, match="unknown input"):
        fl.load_model(path, input_shape={"seq": (4, 9)})
    # load_onnx itself checks input_shape as load_model does: never truncated, never zero
    with pytest.raises(TypeError, match=r"input_shape must be a tuple of positive ints; got \(4, 9.5\)"):
        load_onnx(path.read_bytes(), input_shape=(4, 9.5))
    with pytest.raises(ValueError, match=r"input_shape must be a tuple of positive ints; got \(4, 0\)"):
        load_onnx(path.read_bytes(), input_shape=(4, 0))


def test_non_float_inputs_are_refused():
    m = _model()
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(NotImplementedError, match="not a float tensor"):
        load_onnx(m.SerializeToString())


def test_without_the_onnx_package_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(_bytes())
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"'m.onnx' is an ONNX file; .*pip install 'fastlift\[onnx\]'"):
        fl.load_model(path)


# ------------------------------------------------------------------------------ external data
def _external(tmp_path, location="weights.bin"):
    """A model whose weight lies in ``location`` beside it; returns (model path, expected output)."""
    folder = tmp_path / "model"
    folder.mkdir()
    m = _model()
    onnx.save_model(m, folder / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    return folder


def _set_external(path, **entries):
    m = onnx.load_model(path, load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key in entries:
                e.value = str(entries[e.key])
    onnx.save_model(m, path)


def test_external_data_beside_the_model_is_read(tmp_path):
    import onnxruntime as ort

    folder = _external(tmp_path)
    assert (folder / "weights.bin").stat().st_size == 144  # the weight really lies outside
    model = fl.load_model(folder / "m.onnx")
    X = np.random.default_rng(1).normal(size=(2, 4, 6))
    want = ort.InferenceSession(str(folder / "m.onnx")).run(None, {"x": X.astype(np.float32)})[0]
    np.testing.assert_allclose(model.predict(X, dtype="float64"), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("location,match", [
    ("/etc/hostname", "must be a relative path"),
    ("../weights.bin", r"may not contain '\.\.'"),
    ("sub/../weights.bin", r"may not contain '\.\.'"),
    ("missing.bin", "cannot be opened"),
    ("adir", "not a regular file"),
    ("weights.bin\0.txt", "must be a relative path"),
])
def test_external_data_outside_the_folder_or_not_a_file_is_refused(tmp_path, location, match):
    folder = _external(tmp_path)
    (folder / "adir").mkdir()
    (tmp_path / "weights.bin").write_bytes((folder / "weights.bin").read_bytes())
    _set_external(folder / "m.onnx", location=location)
    with pytest.raises(ModelFileError, match=r"tensor 'W' is stored outside the model file.*" + match):
        fl.load_model(folder / "m.onnx")


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    folder = _external(tmp_path)
    outside = tmp_path / "outside.bin"
    outside.write_bytes((folder / "weights.bin").read_bytes())
    os.symlink(outside, folder / "link.bin")
    _set_external(folder / "m.onnx", location="link.bin")
    with pytest.raises(ModelFileError, match="leads outside the model's folder"):
        fl.load_model(folder / "m.onnx")
    os.symlink(folder / "weights.bin", folder / "inside.bin")  # a link that stays inside is a file like any
    _set_external(folder / "m.onnx", location="inside.bin")
    fl.load_model(folder / "m.onnx")


@pytest.mark.parametrize("entries,match", [
    ({"length": 12}, r"12 bytes in 'weights.bin', but shape \[3, 4, 3\] needs 144"),
    ({"offset": 100}, r"bytes \[100, 244\) lie outside 'weights.bin' \(144 bytes\)"),
    ({"offset": "x"}, "not integers"),
])
def test_external_data_sizes_are_checked_before_reading(tmp_path, entries, match):
    folder = _external(tmp_path)
    _set_external(folder / "m.onnx", **entries)
    with pytest.raises(ModelFileError, match=match):
        fl.load_model(folder / "m.onnx")


def test_external_data_from_bytes_is_refused(tmp_path):
    folder = _external(tmp_path)
    with pytest.raises(ModelFileError, match="a model given as bytes cannot refer to other files"):
        load_onnx((folder / "m.onnx").read_bytes())


@pytest.mark.parametrize("nodes,inits", [
    ([helper.make_node("ConstantOfShape", ["s"], ["k"])], {"s": np.int64([2**20, 2**20])}),
    ([helper.make_node("Expand", ["one", "s"], ["k"])], {"one": np.float32([1]), "s": np.int64([2**15, 2**15])}),
    ([helper.make_node("Tile", ["one", "s"], ["k"])], {"one": np.float32([1]), "s": np.int64([2**30])}),
    ([helper.make_node("Range", ["a", "b", "c"], ["k"])], {"a": np.int64(0), "b": np.int64(2**40), "c": np.int64(1)}),
])
def test_constants_the_file_would_blow_up_are_refused_before_they_are_made(nodes, inits):
    nodes = nodes + [helper.make_node("Conv", ["x", "W"], ["y"])]
    with pytest.raises(ModelFileError, match="would make a constant of shape"):
        load_onnx(_bytes(nodes=nodes, inits={**inits, "W": np.zeros((3, 4, 3), np.float32)}))


@pytest.mark.parametrize("nodes,inits", [
    ([helper.make_node("Add", ["a", "b"], ["k"])],
     {"a": np.zeros((2**15, 1), np.float32), "b": np.zeros((1, 2**15), np.float32)}),
    ([helper.make_node("Concat", ["a"] * 64, ["k1"], axis=0), helper.make_node("Concat", ["k1"] * 64, ["k2"], axis=0),
      helper.make_node("Concat", ["k2"] * 64, ["k3"], axis=0)], {"a": np.zeros(2**11, np.float32)}),
    ([helper.make_node("Gather", ["a", "i"], ["k"])],
     {"a": np.zeros((1, 2**14), np.float32), "i": np.zeros(2**16, np.int64)}),
])
def test_constants_grown_by_broadcasting_concatenating_or_gathering_are_refused_before_they_are_made(nodes, inits):
    nodes = nodes + [helper.make_node("Conv", ["x", "W"], ["y"])]
    with pytest.raises(ModelFileError, match="would make a constant of shape"):
        load_onnx(_bytes(nodes=nodes, inits={**inits, "W": np.zeros((3, 4, 3), np.float32)}))


@pytest.mark.parametrize("node,inits", [
    (helper.make_node("Concat", ["x", "x"], ["y"], name="cat"), {}),  # axis is required
    (helper.make_node("Concat", ["x", "x"], ["y"], name="cat", axis=[1]), {}),
    (helper.make_node("Conv", ["x"], ["y"], name="cat"), {}),  # no weight
    (helper.make_node("Add", ["x"], ["y"], name="cat"), {}),
    (helper.make_node("Softmax", ["x"], ["y"], name="cat", axis="last"), {}),
    (helper.make_node("Transpose", ["x"], ["y"], name="cat", perm="abc"), {}),
    (helper.make_node("LeakyRelu", ["x"], ["y"], name="cat", alpha="a"), {}),
    (helper.make_node("BatchNormalization", ["x", "s", "b"], ["y"], name="cat"),
     {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)}),
    (helper.make_node("Shape", ["x"], ["y"], name="cat", start="a"), {}),
])
def test_missing_inputs_and_attributes_of_the_wrong_type_name_the_node(node, inits):
    with pytest.raises(ModelFileError, match=rf"node 'cat' \({node.op_type}\): malformed inputs or attributes"):
        load_onnx(_bytes(nodes=[node], inits=inits))


def test_a_node_without_outputs_or_name_is_named_by_its_op():
    node = helper.make_node("Concat", ["x", "x"], [])
    with pytest.raises(ModelFileError, match=r"node '' \(Concat\): malformed"):
        load_onnx(_bytes(nodes=[node, helper.make_node("Relu", ["x"], ["y"])], inits={}))


def test_bfloat16_weights_are_read_as_float32():
    import onnxruntime as ort

    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 4, 3)).astype(np.float32)
    bf = helper.make_tensor("W", TensorProto.BFLOAT16, w.shape, w.reshape(-1).tolist())
    m = _model(inits={})
    m.graph.initializer.append(bf)
    model = load_onnx(m.SerializeToString())
    w16 = numpy_helper.to_array(bf).astype(np.float32)  # the values bfloat16 keeps
    X = rng.normal(size=(2, 4, 6))
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w16, "W"))
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": X.astype(np.float32)})[0]
    np.testing.assert_allclose(model.predict(X, dtype="float64"), want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_external_data_that_becomes_a_fifo_after_its_check_is_refused_without_waiting(tmp_path, monkeypatch):
    import threading

    import fastlift.io.onnx as onnx_io

    folder = _external(tmp_path)
    os.mkfifo(folder / "fifo")
    _set_external(folder / "m.onnx", location="fifo")
    real_stat, regular = os.stat, os.stat(folder / "weights.bin")
    # the check sees a regular file; the open that follows meets the FIFO (a file swapped in between)
    monkeypatch.setattr(onnx_io.os, "stat",
                        lambda p, *a, **k: regular if str(p).endswith("fifo") else real_stat(p, *a, **k))
    result = []

    def load():
        try:
            fl.load_model(folder / "m.onnx")
        except Exception as e:  # noqa: BLE001
            result.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    waited = t.is_alive()
    if waited:  # unblock the waiting open before failing
        os.close(os.open(folder / "fifo", os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
    assert not waited, "opening the FIFO waited for a writer"
    assert result and isinstance(result[0], ModelFileError) and "not a regular file" in str(result[0])


def test_a_pad_with_a_value_too_large_to_mask_is_refused_before_it_allocates():
    # a few bytes of pads ask for a (4, 2**40) mask of where the fill value goes
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Pad", ["c", "p", "v"], ["y"])]
    inits = {"W": np.zeros((3, 4, 3), np.float32), "p": np.int64([0, 0, 0, 0, 0, 2**40]), "v": np.float32(1.5)}
    with pytest.raises(ModelFileError, match=r"a Pad with value 1.5 .* would make a constant mask of more than"):
        load_onnx(_bytes(nodes=nodes, inits=inits))
