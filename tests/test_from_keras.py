"""``fl.from_keras`` (live Keras model objects, duck-typed) and the theano-era compat entry
points ``compat.conversion.keras_conversion.convert_*_model`` / ``compat.blobs``.

No Keras runs here: the objects are stand-ins exposing what a Keras model object exposes
(``to_json()``, ``layers``, each layer's ``name`` and ``get_weights()``; a 0.x Graph's
``nodes``). For tf.keras and Keras 3 their contents were recorded from real model objects by
``tests/fixtures/make_live_fixtures.py`` (with TensorFlow's predictions); for Keras 0.x/1.x
they are built from the published model files in ``tests/fixtures/keras1``.
"""

import json
import os
import sys
import types
import warnings

import h5py
import numpy as np
import pytest
from test_io_keras import _tf_python  # FASTLIFT_TF_PYTHON, or this Python if TensorFlow imports

import fastlift as fl
from fastlift.compat import blobs
from fastlift.compat.conversion import keras_conversion as kc

HERE = os.path.dirname(os.path.abspath(__file__))
LIVE = os.path.join(HERE, "fixtures", "live")
OLD = os.path.join(HERE, "fixtures", "keras1")


class FakeLayer:
    def __init__(self, name, weights=(), layers=None):
        self.name = name
        self._weights = [np.asarray(w) for w in weights]
        if layers is not None:
            self.layers = layers

    def get_weights(self):
        return list(self._weights)


class FakeModel(FakeLayer):
    def __init__(self, text, layers, name="model"):
        super().__init__(name, layers=layers)
        self._text = text

    def to_json(self):
        return self._text

    def get_weights(self):  # Keras's flat list: all trainable weights first; from_keras must not use it
        raise AssertionError("from_keras must read each layer's get_weights()")


def _tree(paths):
    """{path tuple: arrays} -> nested FakeLayers."""
    root = {}
    for path, arrays in paths.items():
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {}).setdefault("__children__", {})
        node.setdefault(path[-1], {})["__weights__"] = arrays

    def build(children):
        out = []
        for name, d in children.items():
            sub = build(d["__children__"]) if "__children__" in d else None
            out.append(FakeLayer(name, d.get("__weights__", []), sub))
        return out

    return build(root)


def recorded(flavour, name):
    with open(os.path.join(LIVE, f"live_{flavour}_{name}.json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(LIVE, f"live_{flavour}_{name}.npz")) as z:
        arrays = {k: z[k] for k in z.files}
    paths = {}
    for key in sorted(k for k in arrays if k.startswith("w/")):
        *path, i = key[2:].split("/")
        paths.setdefault(tuple(path), []).append((int(i), arrays[key]))
    paths = {p: [a for _, a in sorted(v)] for p, v in paths.items()}
    model = FakeModel(meta["to_json"], _tree(paths))
    xs = [arrays[k].astype(np.float64) for k in sorted(arrays) if k.startswith("x")]
    return model, xs, arrays["y0"]


@pytest.mark.parametrize("flavour", ["tfkeras", "keras3"])
@pytest.mark.parametrize("name", ["seq", "func"])
def test_from_keras_matches_the_model_s_own_predictions(flavour, name):
    model, xs, want = recorded(flavour, name)
    fl_model = fl.from_keras(model)
    y = fl_model.predict(xs if len(xs) > 1 else xs[0], dtype="float64")
    assert y.shape == want.shape
    assert np.abs(y - want).max() <= 1e-5 * np.abs(want).max()


def test_from_keras_uses_get_config_when_there_is_no_to_json():
    model, xs, want = recorded("tfkeras", "seq")
    top = json.loads(model.to_json())

    class NoJson(FakeLayer):
        def get_config(self):
            return top["config"]

    obj = NoJson("seq", layers=model.layers)
    NoJson.__name__ = "Sequential"  # the class name stands in for the config's class_name
    y = fl.from_keras(obj).predict(xs[0], dtype="float64")
    assert np.abs(y - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("obj", ["model.h5", 3, object(), FakeLayer("x")])
def test_from_keras_refuses_what_is_not_a_keras_model(obj):
    with pytest.raises(TypeError, match=r"from_keras takes a Keras model object \(with get_weights\(\) and to_json\(\) "
                                        r"or get_config\(\)\); got"):
        fl.from_keras(obj)


def test_from_keras_reports_a_failing_get_weights():
    model, _, _ = recorded("tfkeras", "seq")

    class Broken(FakeLayer):
        def get_weights(self):
            raise RuntimeError("weights on another device")

    k = next(i for i, layer in enumerate(model.layers) if layer.name == "conv")
    model.layers[k] = Broken("conv")
    with pytest.raises(TypeError, match=r"layer 'conv': get_weights\(\) failed: RuntimeError: weights on another "
                                        r"device"):
        fl.from_keras(model)


def test_from_keras_shapes_must_match_the_config():
    model, _, _ = recorded("tfkeras", "seq")
    model.layers[-1]._weights[0] = model.layers[-1]._weights[0][:-1]
    with pytest.raises(ValueError, match=r"layer 'out' \(Dense\): weight 'kernel' has shape"):
        fl.from_keras(model)


# ---------------------------------------------------------------- theano-era objects


def keras112_object():
    """A Keras 1.1.2 Sequential as the object the tal_gata notebook built (to_json, layers)."""
    import yaml

    from fastlift.io.loader import _read_config_yaml

    top = json.loads(_read_config_yaml(os.path.join(OLD, "talgata_k112.yaml")))
    assert yaml  # the YAML reader needs PyYAML
    with h5py.File(os.path.join(OLD, "talgata_k112_weights.h5"), "r") as f:
        layers = []
        for entry in top["config"]:
            name = entry["config"]["name"]
            g = f[name]
            layers.append(FakeLayer(name, [np.array(g[n]) for n in g.attrs["weight_names"]]))
    model = FakeModel(json.dumps(top), layers)
    FakeModel.__module__ = "keras.models"  # what from_keras reads the backend from
    return model


@pytest.fixture()
def theano_keras(monkeypatch):
    """A stand-in for an imported Keras 1 whose backend module says 'theano'."""
    backend = types.ModuleType("keras.backend")
    backend.backend = lambda: "theano"
    monkeypatch.setitem(sys.modules, "keras.backend", backend)
    yield backend
    FakeModel.__module__ = __name__


def test_keras1_object_reads_its_backend_from_the_live_keras(theano_keras):
    pytest.importorskip("yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the backend is known: no guess, no warning
        fl_model = fl.from_keras(keras112_object())
    from_file = fl.load_model(os.path.join(OLD, "talgata_k112_weights.h5"),
                              config_yaml=os.path.join(OLD, "talgata_k112.yaml"), conv_backend="theano")
    x = np.eye(4)[np.random.default_rng(0).integers(0, 4, (3, 200))]
    np.testing.assert_allclose(fl_model.predict(x, dtype="float64"), from_file.predict(x, dtype="float64"), rtol=1e-12)
    theano_keras.backend = lambda: "tensorflow"
    unflipped = fl.from_keras(keras112_object())
    assert np.abs(unflipped.predict(x, dtype="float64") - from_file.predict(x, dtype="float64")).max() > 1e-3


def keras0_graph_object():
    from fastlift.io.loader import _read_config_yaml

    top = json.loads(_read_config_yaml(os.path.join(OLD, "talgata_graph_k0.yaml")))
    with h5py.File(os.path.join(OLD, "talgata_graph_k0_weights.h5"), "r") as f:
        flat = [np.array(f["graph"][f"param_{i}"]) for i in range(8)]
    counts = {"conv1": 2, "conv2": 2, "dense1": 2, "output_preact": 2}

    class Graph:
        def __init__(self):
            self.nodes = {}
            start = 0
            for nc in top["node_config"]:
                n = counts.get(nc["name"], 0)
                self.nodes[nc["name"]] = FakeLayer(nc["name"], flat[start:start + n])
                start += n

        def to_json(self):
            return json.dumps(top)

        def get_weights(self):
            return flat

    return Graph()


def test_keras0_graph_object_and_convert_graph_model(capsys):
    pytest.importorskip("yaml")
    graph = keras0_graph_object()
    fl_model = fl.from_keras(graph, conv_backend="theano")
    from_file = fl.load_model(os.path.join(OLD, "talgata_graph_k0_weights.h5"),
                              config_yaml=os.path.join(OLD, "talgata_graph_k0.yaml"), conv_backend="theano")
    x = np.eye(4)[np.random.default_rng(1).integers(0, 4, (2, 200))].transpose(0, 2, 1)[:, None]
    np.testing.assert_allclose(fl_model.predict(x, dtype="float64"), from_file.predict(x, dtype="float64"), rtol=1e-12)

    with pytest.warns(UserWarning, match="Keras 0.x model"):
        dl = kc.convert_graph_model(graph, nonlinear_mxts_mode=blobs.NonlinearMxtsMode.DeepLIFT)
    assert "nonlinear_mxts_mode is set to: Rescale" in capsys.readouterr().out
    names = dl.get_name_to_blob()
    assert {"sequence", "conv1", "conv1_act", "output_preact", "output_act"} <= set(names)
    assert names == dl.get_name_to_layer()
    f = dl.get_target_contribs_func(find_scores_layer_name="sequence", pre_activation_target_layer_name="output_preact")
    scores = np.array(f(task_idx=1, input_data_list={"sequence": x}, input_references_list={"sequence": 0.25 * x ** 0},
                        batch_size=2, progress_update=None))
    res = fl.deeplift(from_file, x, references=np.full((1, 1, 4, 200), 0.25), target=1, dtype="float64")
    np.testing.assert_allclose(scores, res.contributions, rtol=1e-4, atol=1e-6)


def test_convert_sequential_model_names_layers_by_index(theano_keras):
    pytest.importorskip("yaml")
    dl = kc.convert_sequential_model(keras112_object(), nonlinear_mxts_mode=blobs.NonlinearMxtsMode.DeepLIFT,
                                     verbose=False)
    assert [layer.name for layer in dl.get_layers()][:4] == ["input", "0", "1", "2"]
    f = dl.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=-2)
    x = np.eye(4)[np.random.default_rng(2).integers(0, 4, (2, 200))]
    scores = np.array(f(task_idx=0, input_data_list=[x], input_references_list=[np.array([0.27, 0.23, 0.23, 0.27])
                                                                                  [None, None, :]],
                        batch_size=2, progress_update=None))
    assert scores.shape == (2, 200, 4) and np.isfinite(scores).all()


def test_convert_functions_check_the_model_kind():
    model, _, _ = recorded("tfkeras", "func")
    with pytest.raises(ValueError, match=r"convert_sequential_model takes a Sequential; the model is a functional "
                                         r"model \(use convert_functional_model\)"):
        kc.convert_sequential_model(model, verbose=False)
    dl = kc.convert_functional_model(model, verbose=False, nonlinear_mxts_mode=blobs.NonlinearMxtsMode.Rescale)
    assert {"a", "b", "head", "inner_1_idense", "inner_2_idense"} <= set(dl.get_name_to_blob())  # config numbering


def test_blobs_has_the_05_mode_names():
    assert blobs.NonlinearMxtsMode.DeepLIFT == "Rescale"
    assert blobs.NonlinearMxtsMode.GuidedBackpropDeepLIFT == "GuidedBackpropRescale"
    assert blobs.NonlinearMxtsMode.DeepLIFT_GenomicsDefault == "DeepLIFT_GenomicsDefault"


# ------------------------------------------------- real Keras objects (a side environment)

REAL = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, sys.argv[1])
import numpy as np
import fastlift as fl
import tf_keras
import keras as keras3
rng = np.random.default_rng(0)
for K in (tf_keras, keras3):
    inner = K.Sequential([K.Input((6,)), K.layers.Dense(4, activation="tanh", name="idense")], name="inner")
    a = K.Input((10, 4), name="a")
    h = K.layers.Conv1D(3, 3, activation="relu", name="conv")(a)
    h = K.layers.BatchNormalization(name="bn")(h)
    h = K.layers.Flatten(name="flat")(h)
    h = K.layers.Dense(6, name="d")(h)
    y = K.layers.Dense(2, name="head")(inner(h))
    model = K.Model(a, y)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2, w.shape).astype("float32") for w in bn.get_weights()])
    x = rng.normal(size=(3, 10, 4)).astype("float32")
    want = model.predict(x, verbose=0)
    got = fl.from_keras(model).predict(x, dtype="float64")
    err = float(np.abs(got - want).max() / np.abs(want).max())
    assert err < 1e-5, (K.__name__, err)
    print(K.__name__, "ok", err)
"""


@pytest.mark.skipif(_tf_python() is None, reason="needs TensorFlow + tf-keras + Keras 3 (or FASTLIFT_TF_PYTHON)")
def test_from_keras_on_real_tf_keras_and_keras3_objects():
    import subprocess

    out = subprocess.run([_tf_python(), "-c", REAL, os.path.dirname(HERE)], capture_output=True, text=True,
                         check=False, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tf_keras ok" in out.stdout and "keras ok" in out.stdout
