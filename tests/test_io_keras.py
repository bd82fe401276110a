"""Loading real Keras files: forward parity with Keras's own predictions, node naming,
every file layout, and a clear error for every kind of bad file.

The fixtures in ``tests/fixtures/keras`` were written by real tf-keras 2.x and Keras 3
(``tests/fixtures/make_keras_fixtures.py``; its docstring lists the layouts); the
Keras 2.2.4-layout files were crafted from them with h5py. Inputs are stored as int8/16.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

import fastlift as fl
from fastlift.io import ModelFileError
from fastlift.io.loader import read_keras

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures", "keras")
GENERATOR = os.path.join(HERE, "fixtures", "make_keras_fixtures.py")
REFUSED = ("lambda_layer", "custom_layer")


def fixture(name):
    return os.path.join(FIXTURES, name)


def model_files(directory=FIXTURES):
    out = []
    for base in sorted(os.listdir(directory)):
        if base.endswith((".npz", ".json")) or base.split(".")[0] in REFUSED:
            continue
        out.append(base)
    return out


def flavour_of(base):
    return "tfkeras" if ("tfkeras" in base or base.endswith(".k224.h5")) else "keras3"


def config_json_for(path):
    return path.replace(".weights.h5", ".json") if path.endswith(".weights.h5") else None


def load_inputs(npz):
    return [npz[k].astype(np.float32) / 16 for k in sorted(npz.files) if k.startswith("x")]


def check_parity(directory, base):
    path = os.path.join(directory, base)
    model = fl.load_model(path, config_json_for(path))
    with np.load(os.path.join(directory, base.split(".")[0] + ".npz")) as z:
        xs = load_inputs(z)
        ys = model.predict(xs if len(xs) > 1 else xs[0], dtype="float32")
        ys = ys if isinstance(ys, list) else [ys]
        flavour = flavour_of(base)
        expected = [z[f"{flavour}_y{i}"] for i in range(len(ys))]
        assert f"{flavour}_y{len(ys)}" not in z.files, "the model lost an output"
    for y, e in zip(ys, expected):
        assert y.dtype == np.float32 and y.shape == e.shape
        scale = max(float(np.abs(e).max()), 1e-30)
        assert np.abs(y - e).max() <= 1e-5 * scale, (base, np.abs(y - e).max() / scale)


@pytest.mark.parametrize("base", model_files())
def test_forward_parity_with_keras(base):
    check_parity(FIXTURES, base)


def test_fixtures_cover_every_layout_and_stay_small():
    files = os.listdir(FIXTURES)
    for suffix in (".tfkeras.h5", ".keras", ".keras3.h5", ".k224.h5", ".tfkeras.weights.h5", ".keras3.weights.h5"):
        assert any(f.endswith(suffix) for f in files), suffix
    total = sum(os.path.getsize(fixture(f)) for f in files)
    assert total < 2 * 2**20, total


# ------------------------------------------------------------------- formats and layouts


def test_tfkeras_file_has_the_tf2_quirks_and_loads():
    with h5py.File(fixture("zoo_1d.tfkeras.h5"), "r") as f:
        config = json.loads(f.attrs["model_config"])
        assert config["class_name"] == "Functional"
        bn = [layer for layer in config["config"]["layers"] if layer["class_name"] == "BatchNormalization"]
        assert isinstance(bn[0]["config"]["axis"], list)
        assert f["model_weights/seq"].attrs["weight_names"].size == 0  # InputLayer: no weights
    assert fl.load_model(fixture("zoo_1d.tfkeras.h5")).input_names == ["seq"]


def test_keras224_layout_is_what_the_original_read():
    with h5py.File(fixture("dl_functional_concat.k224.h5"), "r") as f:
        assert f.attrs["keras_version"] == b"2.2.4"
        config = json.loads(f.attrs["model_config"])
        assert config["class_name"] == "Model"
    with h5py.File(fixture("seq_mlp.k224.h5"), "r") as f:
        config = json.loads(f.attrs["model_config"])
        assert config["class_name"] == "Sequential"
        assert config["config"]["layers"][0]["class_name"] == "Dense"
        assert "batch_input_shape" in config["config"]["layers"][0]["config"]


def test_weights_only_needs_config_json(tmp_path):
    with pytest.raises(ModelFileError, match=r"weights only .*config_json="):
        fl.load_model(fixture("seq_mlp.tfkeras.weights.h5"))
    with open(fixture("seq_mlp.tfkeras.json")) as f:
        text = f.read()
    a = fl.load_model(fixture("seq_mlp.tfkeras.weights.h5"), config_json=text)  # JSON text works too
    b = fl.load_model(fixture("seq_mlp.tfkeras.h5"))
    x = np.random.default_rng(0).normal(size=(3, 12))
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def test_config_json_overrides_the_stored_config():
    m = fl.load_model(fixture("seq_mlp.keras3.weights.h5"), config_json=fixture("seq_mlp.keras3.json"))
    assert m.layer_names[0] == "features"


# ------------------------------------------------------------------------- node names


def test_names_preact_shared_and_nested():
    m = fl.load_model(fixture("nested_shared.tfkeras.h5"))
    names = set(m.layer_names)
    assert {"a", "b", "shared/preact", "shared", "shared:1/preact", "shared:1", "inner/ibn", "inner/idense/preact",
            "inner/idense", "inner:1/idense", "add", "block/sd", "block/sp", "o1", "o2/preact", "o2"} <= names
    # the same names whatever the format
    for other in ("nested_shared.keras", "nested_shared.keras3.h5"):
        assert set(fl.load_model(fixture(other)).layer_names) == names
    assert m.output_names == ["o1", "o2"]


def test_dense_with_activation_targets_the_preactivation_by_default():
    m = fl.load_model(fixture("seq_mlp.keras"))
    assert m.default_target().name == "probs/preact"
    assert type(m.get_node("probs").layer).__name__ == "Softmax"
    assert m.get_node("hidden1/preact").layer.__class__.__name__ == "Dense"
    res = fl.deeplift(m, np.ones((2, 12)), rule="rescale")
    assert res.target_layer == "probs/preact"
    assert np.abs(res.deltas).max() < 1e-5


def test_bpnet_attributions_on_both_heads():
    m = fl.load_model(fixture("bpnet.keras"))
    with np.load(fixture("bpnet.npz")) as z:
        x = load_inputs(z)[0]
    refs = x[:, None, ::-1]  # one reversed-sequence reference each
    for head in ("logits_profile_predictions", "logcount_predictions"):
        res = fl.deeplift(m, x, refs, target_layer=head, rule="rescale", dtype="float64")
        assert np.abs(res.deltas).max() < 1e-9


def test_gradient_matches_keras_autodiff():
    """tf.GradientTape's input gradient of the pre-activation equals fastlift's gradient."""
    for name, target in (("dl_sigmoid_tanh", None), ("zoo_1d", "logits"), ("nested_shared", "o1"),
                         ("bpnet", "logits_profile_predictions"), ("zoo_2d", "out")):
        m = fl.load_model(fixture(name + ".tfkeras.h5"))
        with np.load(fixture(name + ".npz")) as z:
            xs = load_inputs(z)
            grads = [z[f"tfkeras_grad{i}"] for i in range(len(xs))]
        x = xs if len(xs) > 1 else xs[0]
        res = fl.attribute(m, x, "gradient", target=0, target_layer=target, dtype="float64")
        got = res.multipliers if isinstance(res.multipliers, list) else [res.multipliers]
        for g, e in zip(got, grads):
            np.testing.assert_allclose(g.sum(axis=0), e.sum(axis=0), rtol=1e-4, atol=1e-5 * np.abs(e).max())


def test_unknown_input_dimension_needs_input_shape(tmp_path):
    src = fixture("seq_mlp.tfkeras.h5")
    dst = tmp_path / "varlen.h5"
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        c = json.loads(f.attrs["model_config"])
        c["config"]["layers"][0]["config"]["batch_input_shape"] = [None, None]
        f.attrs["model_config"] = json.dumps(c)
    with pytest.raises(NotImplementedError, match=r"unknown dimension; .* pass input_shape="):
        fl.load_model(dst)
    m = fl.load_model(dst, input_shape=(12,))
    assert m.inputs[0].shape == (12,)
    with pytest.raises(ValueError, match=r"input_shape \(13,\) does not fit input"):
        fl.load_model(fixture("seq_mlp.tfkeras.h5"), input_shape={"features": (13,)})


# ----------------------------------------------------------------------- refusals


@pytest.mark.parametrize("base, layer, cls", [
    ("lambda_layer.tfkeras.h5", "times_two", "Lambda"),
    ("lambda_layer.keras", "times_two", "Lambda"),
    ("custom_layer.tfkeras.h5", "scale", "Scale"),
    ("custom_layer.keras", "scale", "Scale"),
])
def test_code_in_the_file_is_refused(base, layer, cls):
    with pytest.raises(NotImplementedError) as e:
        fl.load_model(fixture(base))
    msg = str(e.value)
    assert base in msg and repr(layer) in msg and cls in msg
    assert "never" in msg  # says it will not run it ...
    assert "fastlift.layers" in msg or "Supported Keras layers" in msg  # ... and what to do instead


def _edit_h5_config(tmp_path, src, edit, name="edited.h5"):
    dst = tmp_path / name
    shutil.copy(fixture(src), dst)
    with h5py.File(dst, "r+") as f:
        c = json.loads(f.attrs["model_config"])
        edit(c)
        f.attrs["model_config"] = json.dumps(c)
    return dst


def _layer(c, name):
    return next(layer for layer in c["config"]["layers"] if layer["config"]["name"] == name)


def test_tf_op_lambda_and_custom_activation_are_refused(tmp_path):
    def op(c):
        _layer(c, "add")["class_name"] = "TFOpLambda"
        _layer(c, "add")["config"]["function"] = "__operators__.add"
    with pytest.raises(NotImplementedError, match=r"layer 'add' is a TFOpLambda wrapping '__operators__.add'"):
        fl.load_model(_edit_h5_config(tmp_path, "nested_shared.tfkeras.h5", op))

    def act(c):
        _layer(c, "shared")["config"]["activation"] = {"class_name": "my_act", "config": {},
                                                        "registered_name": "pkg>my_act", "module": "pkg"}
    with pytest.raises(NotImplementedError, match=r"layer 'shared' \(Dense\) uses a custom activation"):
        fl.load_model(_edit_h5_config(tmp_path, "nested_shared.tfkeras.h5", act, "act.h5"))


@pytest.mark.parametrize("edit, err, match", [
    (lambda c: _layer(c, "pool").update(class_name="Embedding"), NotImplementedError,
     r"layer 'pool' \(Embedding\): fastlift has no Embedding layer"),
    (lambda c: _layer(c, "conv")["config"].update(filters=3), ModelFileError,
     r"layer 'conv' \(Conv1D\): weight 'kernel' has shape \(4, 10, 2\) in the file but .* imply \(4, 10, 3\)"),
    (lambda c: _layer(c, "dense1")["config"].update(activation="mish"), NotImplementedError,
     r"layer 'dense1' \(Dense\) uses activation 'mish'"),
    (lambda c: _layer(c, "conv")["config"].update(groups=2), NotImplementedError, r"grouped convolution"),
    (lambda c: _layer(c, "dense1").update(inbound_nodes=[[["nowhere", 0, 0, {}]]]), ModelFileError,
     r"layer 'dense1': refers to an unknown layer 'nowhere'"),
    (lambda c: _layer(c, "dense1").update(inbound_nodes=[[["flatten", 3, 0, {}]]]), ModelFileError,
     r"refers to call 3 of layer 'flatten', which has 1 call"),
    (lambda c: c.update(class_name="Graph"), ModelFileError, r"a Graph config must have a list 'input_config'"),
    (lambda c: c["config"].update(layers="x"), ModelFileError, r"'layers' must be a JSON list"),
    (lambda c: _layer(c, "dense1").update(inbound_nodes=[[["dense1_relu", 0, 0, {}]]]), ModelFileError,
     r"cannot be connected .* cycle"),
])
def test_bad_configs(tmp_path, edit, err, match):
    path = _edit_h5_config(tmp_path, "dl_functional_concat.tfkeras.h5", edit)
    with pytest.raises(err, match=match) as e:
        fl.load_model(path)
    assert "edited.h5" in str(e.value)


def test_missing_and_misshapen_weights(tmp_path):
    dst = tmp_path / "w.h5"
    shutil.copy(fixture("seq_mlp.tfkeras.h5"), dst)
    with h5py.File(dst, "r+") as f:
        del f["model_weights/hidden2"]
    with pytest.raises(ModelFileError, match=r"'w.h5': layer 'hidden2' \(Dense\): its weights are missing"):
        fl.load_model(dst)
    shutil.copy(fixture("seq_mlp.tfkeras.h5"), dst)
    with h5py.File(dst, "r+") as f:
        del f["model_weights/hidden2/hidden2/bias:0"]
    with pytest.raises(ModelFileError, match=r"layer 'hidden2': weight 'hidden2/bias:0' is listed but missing"):
        fl.load_model(dst)
    shutil.copy(fixture("seq_mlp.tfkeras.h5"), dst)
    with h5py.File(dst, "r+") as f:
        del f["model_weights/hidden2/hidden2/kernel:0"]
        f["model_weights/hidden2/hidden2/kernel:0"] = np.zeros((8, 5), np.float32)
    with pytest.raises(ModelFileError, match=r"weight 'kernel' has shape \(8, 5\) in the file but .* \(8, 6\)"):
        fl.load_model(dst)
    shutil.copy(fixture("seq_mlp.tfkeras.h5"), dst)
    with h5py.File(dst, "r+") as f:
        d = f["model_weights/hidden2/hidden2/bias:0"]
        d[0] = np.nan
    with pytest.raises(ModelFileError, match=r"layer 'hidden2': weight .*bias:0' contains NaN"):
        fl.load_model(dst)


def test_keras3_archive_problems(tmp_path):
    src = fixture("seq_mlp.keras")
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    bad = tmp_path / "noconfig.keras"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("model.weights.h5", entries["model.weights.h5"])
    with pytest.raises(ModelFileError, match=r"'noconfig.keras': the .keras archive has no 'config.json'"):
        fl.load_model(bad)
    bad = tmp_path / "badjson.keras"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("config.json", b"{not json")
        z.writestr("model.weights.h5", entries["model.weights.h5"])
    with pytest.raises(ModelFileError, match=r"'badjson.keras': the config.json is not valid JSON"):
        fl.load_model(bad)
    bad = tmp_path / "badweights.keras"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("config.json", entries["config.json"])
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ModelFileError, match=r"'badweights.keras' \(model.weights.h5\): not a readable HDF5 file"):
        fl.load_model(bad)
    # paths inside the archive are never used as file names: an entry named like a path is just ignored
    odd = tmp_path / "odd.keras"
    with zipfile.ZipFile(odd, "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
        z.writestr("../../evil.txt", b"x")
    fl.load_model(odd)
    assert not (tmp_path.parent.parent / "evil.txt").exists()


def test_not_a_model_file(tmp_path):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"'empty.h5': the file is empty"):
        fl.load_model(empty)
    text = tmp_path / "model.h5"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match=r"'model.h5': not a Keras model file"):
        fl.load_model(text)
    with open(fixture("seq_mlp.tfkeras.h5"), "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"'cut.h5'.*(truncated|corrupt)"):
        fl.load_model(cut)
    with pytest.raises(FileNotFoundError):
        fl.load_model(tmp_path / "missing.h5")
    with pytest.raises(IsADirectoryError):
        fl.load_model(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike"):
        fl.load_model(123)
    with pytest.raises(TypeError, match=r"config_json must be a path"):
        fl.load_model(fixture("seq_mlp.tfkeras.weights.h5"), config_json=5)


def test_read_keras_records_origins():
    loaded = read_keras(fixture("nested_shared.tfkeras.h5"))
    o = loaded.origins["inner:1/idense/preact"]
    assert o.role == "preact"
    assert [(f.kind, f.layer, f.ref_index) for f in o.frames] == [("functional", "inner", 2),
                                                                   ("functional", "idense", 0)]
    k3 = read_keras(fixture("nested_shared.keras"))
    assert [f.ref_index for f in k3.origins["inner:1/idense/preact"].frames] == [1, 0]  # Keras 3 counts from 0


def test_only_fastlift_io_imports_h5py():
    root = os.path.join(os.path.dirname(HERE), "fastlift")
    offenders = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), encoding="utf-8", errors="replace") as fh:
                text = fh.read() if f.endswith((".py", ".pyx")) else ""
            if "import h5py" in text:
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                if not rel.startswith("io" + os.sep):
                    offenders.append(rel)
    assert offenders == []


# --------------------------------------------------------------- the generator itself


def _tf_python():
    env = os.environ.get("FASTLIFT_TF_PYTHON")
    if env:
        return env
    try:
        import tensorflow  # noqa: F401
        import tf_keras  # noqa: F401
    except ImportError:
        return None
    return sys.executable


@pytest.mark.skipif(_tf_python() is None, reason="needs TensorFlow + tf-keras (or FASTLIFT_TF_PYTHON)")
def test_generator_script_output_loads_with_parity(tmp_path):
    models = "seq_mlp,nested_shared,bpnet,lambda_layer"
    subprocess.run([_tf_python(), GENERATOR, "--out", str(tmp_path), "--models", models], check=True,
                   capture_output=True, timeout=600)
    files = model_files(str(tmp_path))
    assert any(f.endswith(".k224.h5") for f in files) and any(f.endswith(".keras") for f in files)
    for base in files:
        check_parity(str(tmp_path), base)
    with pytest.raises(NotImplementedError, match="Lambda"):
        fl.load_model(tmp_path / "lambda_layer.keras")


# ------------------------------------------------------------------ other formats, named


def _torch_zip(path, prefix="archive"):
    """The layout torch.save writes (a zip of a pickle plus tensor storages), with dummy bytes."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{prefix}/data.pkl", b"\x80\x02}q\x00.")
        z.writestr(f"{prefix}/byteorder", b"little")
        z.writestr(f"{prefix}/data/0", b"\0" * 16)
        z.writestr(f"{prefix}/version", b"3\n")


@pytest.mark.parametrize("kind", ["zip", "zip_named", "legacy_pickle"])
def test_a_pytorch_checkpoint_is_named_and_never_unpickled(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "legacy_pickle":
        path.write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.")  # torch's magic number
    else:
        _torch_zip(path, "archive" if kind == "zip" else "my_model")
    with pytest.raises(ModelFileError) as e:
        fl.load_model(path)
    msg = str(e.value)
    assert msg.startswith("'model.pt': ") and "PyTorch checkpoint" in msg, msg
    assert "cannot be loaded (fastlift never unpickles)" in msg and "export the model to ONNX" in msg, msg


def _keras1_dense(layer):
    """A tf.keras Dense config rewritten the way Keras 1 wrote it."""
    cfg = layer["config"]
    cfg["output_dim"] = cfg.pop("units")
    cfg["init"] = "glorot_uniform"
    cfg["W_regularizer"] = cfg.pop("kernel_regularizer")
    cfg["b_regularizer"] = cfg.pop("bias_regularizer")
    cfg["bias"] = cfg.pop("use_bias")


def _as_keras1_file(tmp_path, version):
    dst = tmp_path / "k1.h5"
    shutil.copy(fixture("seq_mlp.tfkeras.h5"), dst)
    with h5py.File(dst, "r+") as f:
        c = json.loads(f.attrs["model_config"])
        for layer in c["config"]["layers"]:
            if layer["class_name"] == "Dense":
                _keras1_dense(layer)
        layers = c["config"]["layers"]
        layers[1]["config"]["batch_input_shape"] = layers[0]["config"]["batch_input_shape"]
        c["config"] = layers[1:]  # Keras 1 Sequential: a bare list, the first layer holding the shape
        f.attrs["model_config"] = json.dumps(c)
        if version is None:
            del f.attrs["keras_version"]
        else:
            f.attrs["keras_version"] = version
    return dst


@pytest.mark.parametrize("version", ["1.2.2", "0.3.3", None])
def test_keras1_dense_files_load_with_parity(tmp_path, version):
    """Keras 1 configs load (tests/test_io_keras1.py covers the rest); the version, when
    the file records it, or the Keras 1 names (``output_dim``) mark the dialect."""
    model = fl.load_model(_as_keras1_file(tmp_path, version))
    with np.load(fixture("seq_mlp.npz")) as z:
        y = model.predict(load_inputs(z)[0], dtype="float32")
        assert np.abs(y - z["tfkeras_y0"]).max() <= 1e-5 * np.abs(z["tfkeras_y0"]).max()


def test_keras0_config_with_a_keras2_weights_file_is_named(tmp_path):
    config = {"name": "Sequential", "layers": [
        {"name": "Dense", "input_dim": 12, "output_dim": 8, "init": "glorot_uniform", "activation": "relu"},
        {"name": "Dense", "output_dim": 3, "init": "glorot_uniform", "activation": "softmax"}]}
    with pytest.raises(ModelFileError, match=r"^'seq_mlp.tfkeras.weights.h5': the config is a Keras 0.x model, whose "
                                             r"save_weights wrote groups layer_<k>/param_<i>; the file has no group "
                                             r"'layer_0'"):
        fl.load_model(fixture("seq_mlp.tfkeras.weights.h5"), config_json=json.dumps(config))


@pytest.mark.parametrize("value, err, says", [
    ((96.7, 4), TypeError, r"input_shape must be a tuple of positive ints; got \(96.7, 4\) \(96.7 is a float\)"),
    ((12.0,), TypeError, r"input_shape must be a tuple of positive ints; got \(12.0,\) \(12.0 is a float\)"),
    ((True,), TypeError, r"input_shape must be a tuple of positive ints; got \(True,\) \(True is a bool\)"),
    ((np.float32(12),), TypeError, r"\(12.0 is a float32\)"),
    (("12",), TypeError, r"\('12' is a str\)"),
    ((0,), ValueError, r"input_shape must be a tuple of positive ints; got \(0,\)"),
    ((-12,), ValueError, r"input_shape must be a tuple of positive ints; got \(-12,\)"),
    ((2**31 + 1,), ValueError, r"input_shape entries must be at most 2\*\*31; got \(2147483649,\)"),
    ({"features": (12.5,)}, TypeError, r"input_shape\['features'\] must be a tuple of positive ints; got \(12.5,\)"),
    ({1: (12,)}, TypeError, r"input_shape keys must be input names \(str\); got 1"),
    (12, TypeError, r"input_shape must be a tuple of ints or a dict \{input name: tuple\}; got 12"),
])
def test_input_shape_entries_must_be_positive_ints(value, err, says):
    with pytest.raises(err, match=says):
        fl.load_model(fixture("seq_mlp.tfkeras.h5"), input_shape=value)


def test_input_shape_takes_numpy_ints():
    model = fl.load_model(fixture("seq_mlp.tfkeras.h5"), input_shape=(np.int64(12),))
    assert model.inputs[0].shape == (12,) and type(model.inputs[0].shape[0]) is int
    model = fl.load_model(fixture("seq_mlp.tfkeras.h5"), input_shape={"features": [np.int32(12)]})
    assert model.inputs[0].shape == (12,)
