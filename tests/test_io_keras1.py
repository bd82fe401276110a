"""Keras 0.x and 1.x files: configs in the old vocabulary, the 0.x Graph container, old
kernel layouts and Theano's flipped kernels.

Two kinds of evidence:

* real published files (``tests/fixtures/keras1``, README there: the original deeplift's
  example models, Keras 0.x and 1.1.2, trained on Theano) against an independent numpy
  re-implementation of Keras 0.x/1.x's Theano semantics written here from the raw arrays
  (no numbers from the original framework were published with them);
* the tf.keras fixtures rewritten as Keras 1.2 / 0.x would have saved the same model
  (``tests/keras1_writer.py``) against TensorFlow's own predictions for the Keras 2 save.
"""

import json
import os
import shutil
import warnings

import h5py
import numpy as np
import pytest
from keras1_writer import write_keras0, write_keras1

import fastlift as fl
from fastlift.io import ModelFileError

HERE = os.path.dirname(os.path.abspath(__file__))
OLD = os.path.join(HERE, "fixtures", "keras1")
NEW = os.path.join(HERE, "fixtures", "keras")

pytest.importorskip("yaml")


def old(name):
    return os.path.join(OLD, name)


def raw_arrays(path, group):
    """The stored arrays of one layer group, in storage order."""
    with h5py.File(path, "r") as f:
        g = f[group]
        names = g.attrs.get("weight_names")
        if names is None:
            return [np.array(g[f"param_{i}"], dtype=np.float64) for i in range(int(g.attrs["nb_params"]))]
        return [np.array(g[n.decode() if isinstance(n, bytes) else n], dtype=np.float64) for n in names]


def onehot(seqs):
    return np.stack([np.eye(4)[["ACGT".index(c) for c in s]] for s in seqs])


def random_seqs(n, length, seed):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length, p=[0.27, 0.23, 0.23, 0.27])) for _ in range(n)]


# ------------------------------------------- numpy: Keras 0.x/1.x on Theano, from the raw arrays


def true_conv1d(x, w_l1io, b):
    """Keras 1 Convolution1D on Theano, 'valid': y[t, o] = Σ_j,c x[t+j, c] · W[L-1-j, 0, c, o] + b."""
    k = w_l1io.shape[0]
    out = np.zeros((x.shape[0], x.shape[1] - k + 1, w_l1io.shape[3]))
    for j in range(k):
        out += np.einsum("ntc,co->nto", x[:, j:j + out.shape[1]], w_l1io[k - 1 - j, 0])
    return out + b


def true_conv2d_th(x, w_oirc, b, stride=(1, 1)):
    """Keras 0.x Convolution2D, dim_ordering 'th', Theano, 'valid': x (n, c, h, w), W (o, c, r, s)."""
    o, _, r, s = w_oirc.shape
    h = (x.shape[2] - r) // stride[0] + 1
    wd = (x.shape[3] - s) // stride[1] + 1
    out = np.zeros((x.shape[0], o, h, wd))
    for a in range(r):
        for c in range(s):
            patch = x[:, :, a:a + stride[0] * (h - 1) + 1:stride[0], c:c + stride[1] * (wd - 1) + 1:stride[1]]
            out += np.einsum("nchw,oc->nohw", patch, w_oirc[:, :, r - 1 - a, s - 1 - c])
    return out + b[None, :, None, None]


def pool2d_th(x, size, strides, op):
    h = (x.shape[2] - size[0]) // strides[0] + 1
    w = (x.shape[3] - size[1]) // strides[1] + 1
    out = np.empty(x.shape[:2] + (h, w))
    for i in range(h):
        for j in range(w):
            win = x[:, :, i * strides[0]:i * strides[0] + size[0], j * strides[1]:j * strides[1] + size[1]]
            out[:, :, i, j] = op(win, axis=(2, 3))
    return out


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def talgata_k112_numpy(x):
    path = old("talgata_k112_weights.h5")
    w1, b1 = raw_arrays(path, "convolution1d_1")
    w2, b2 = raw_arrays(path, "convolution1d_2")
    d1, c1 = raw_arrays(path, "dense_1")
    d2, c2 = raw_arrays(path, "dense_2")
    h = relu(true_conv1d(x, w1, b1))
    h = relu(true_conv1d(h, w2, b2))
    h = np.stack([h[:, t:t + 180].mean(axis=1) for t in range(h.shape[1] - 180 + 1)], axis=1)  # pool_length 180
    h = relu(h.reshape(len(h), -1) @ d1 + c1)
    return sigmoid(h @ d2 + c2)


def talgata_graph_k0_numpy(x):
    """The 0.x Graph: its max_pool node reads conv2 (not conv2_act), as its node_config says."""
    p = raw_arrays(old("talgata_graph_k0_weights.h5"), "graph")
    h = relu(true_conv2d_th(x, p[0], p[1]))
    h = true_conv2d_th(h, p[2], p[3])
    h = pool2d_th(h, (1, 60), (1, 30), np.mean)  # an AveragePooling2D named max_pool
    h = relu(h.reshape(len(h), -1) @ p[4] + p[5])
    return sigmoid(h @ p[6] + p[7])


def conv3_k0_numpy(x, path):
    """Three 'th' Convolution2D+ReLU(+Dropout), MaxPooling2D (1, 35), Flatten, Dense, sigmoid:
    the layout of the imk CTCF model and DragoNN's primer-tutorial multi-layer model."""
    h = x
    for k in (0, 3, 6):
        w, b = raw_arrays(path, f"layer_{k}")
        h = relu(true_conv2d_th(h, w, b))
    h = pool2d_th(h, (1, 35), (1, 35), np.max)
    w, b = raw_arrays(path, "layer_11")
    return sigmoid(h.reshape(len(h), -1) @ w + b)


# ------------------------------------------------------------------ real published files


def test_talgata_keras112_matches_numpy_theano_semantics():
    with pytest.warns(UserWarning, match=r"Keras 1.x model.*read as Theano's.*conv_backend='tensorflow'"):
        model = fl.load_model(old("talgata_k112_weights.h5"), config_yaml=old("talgata_k112.yaml"))
    x = onehot(random_seqs(6, 200, 0))
    y = model.predict(x, dtype="float64")
    want = talgata_k112_numpy(x)
    assert y.shape == (6, 3)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    assert [n.name for n in model.nodes][:3] == ["convolution1d_1_input", "convolution1d_1", "activation_1"]


def test_talgata_theano_kernels_detect_the_motif_tensorflow_reading_does_not():
    """The model was trained on Theano (its notebook says "Using Theano backend."): read
    with flipped kernels, two GATA sites drive the GATA task to ~1; read unflipped, nothing."""
    seqs = random_seqs(100, 200, 1)
    with_gata = [s[:50] + "AGATAAGG" + s[58:120] + "AGATAAGG" + s[128:] for s in seqs]
    scores = {}
    for backend in ("theano", "tensorflow"):
        model = fl.load_model(old("talgata_k112_weights.h5"), config_yaml=old("talgata_k112.yaml"),
                              conv_backend=backend)
        scores[backend] = model.predict(onehot(with_gata))[:, 1].mean() - model.predict(onehot(seqs))[:, 1].mean()
    assert scores["theano"] > 0.9 and abs(scores["tensorflow"]) < 0.1, scores


def test_keras0_graph_matches_numpy():
    with pytest.warns(UserWarning, match="Keras 0.x model"):
        model = fl.load_model(old("talgata_graph_k0_weights.h5"), config_yaml=old("talgata_graph_k0.yaml"))
    assert [n.name for n in model.inputs] == ["sequence"] and model.inputs[0].shape == (1, 4, 200)
    x = onehot(random_seqs(4, 200, 2)).transpose(0, 2, 1)[:, None]  # (n, 1, 4, 200): 'th' ordering
    np.testing.assert_allclose(model.predict(x, dtype="float64"), talgata_graph_k0_numpy(x), rtol=1e-10, atol=1e-12)
    # deeplift on it: summation-to-delta holds through the Graph's layers
    res = fl.deeplift(model, x, dtype="float64")
    assert np.abs(res.deltas).max() < 1e-8


@pytest.mark.parametrize("base", ["imk_ctcf_k0", "dragonn_multi_layer_k0"])
def test_keras0_sequential_json_matches_numpy(base):
    model = fl.load_model(old(f"{base}_weights.h5"), config_json=old(f"{base}.json"), conv_backend="theano")
    x = onehot(random_seqs(3, 1000, 3)).transpose(0, 2, 1)[:, None]
    want = conv3_k0_numpy(x, old(f"{base}_weights.h5"))
    np.testing.assert_allclose(model.predict(x, dtype="float64"), want, rtol=1e-10, atol=1e-12)


def test_keras0_dense_model_needs_no_backend_and_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = fl.load_model(old("dense_k0_weights.h5"), config_yaml=old("dense_k0.yaml"))
    x = np.random.default_rng(4).normal(size=(5, 50))
    (w1, b1), (w2, b2) = raw_arrays(old("dense_k0_weights.h5"), "layer_0"), raw_arrays(old("dense_k0_weights.h5"),
                                                                                         "layer_2")
    np.testing.assert_allclose(model.predict(x, dtype="float64"), sigmoid(relu(x @ w1 + b1) @ w2 + b2), rtol=1e-12)


def test_layers_without_a_rule_are_named_not_config_errors():
    with pytest.raises(NotImplementedError, match=r"layer 'maxoutdense' \(MaxoutDense\): fastlift has no "
                                                  r"MaxoutDense layer"):
        fl.load_model(old("maxout_k0_weights.h5"), config_yaml=old("maxout_k0.yaml"))


def test_yaml_with_python_objects_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("class_name: Sequential\nconfig: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ModelFileError, match=r"'bad.yaml': not a readable YAML model config"):
        fl.load_model(old("dense_k0_weights.h5"), config_yaml=str(bad))


def test_config_arguments_are_exclusive_and_checked():
    with pytest.raises(ValueError, match="at most one of config_json= and config_yaml="):
        fl.load_model(old("dense_k0_weights.h5"), config_json="{}", config_yaml=old("dense_k0.yaml"))
    with pytest.raises(TypeError, match="config_yaml must be a path to a .yaml file or YAML text; got int"):
        fl.load_model(old("dense_k0_weights.h5"), config_yaml=3)
    with pytest.raises(ValueError, match=r"conv_backend must be one of \['tensorflow', 'theano', 'cntk'\] or None"):
        fl.load_model(old("dense_k0_weights.h5"), config_yaml=old("dense_k0.yaml"), conv_backend="jax")


# ---------------------------------------- the same model as Keras 2 (TF's numbers) and Keras 1/0.x


def tf_predictions(name):
    with np.load(os.path.join(NEW, f"{name}.npz")) as z:
        xs = [z[k].astype(np.float64) / 16 for k in sorted(z.files) if k.startswith("x")]
        return xs, z["tfkeras_y0"]


def assert_matches_tf(model, name):
    xs, want = tf_predictions(name)
    y = model.predict(xs if len(xs) > 1 else xs[0], dtype="float64")
    scale = max(float(np.abs(want).max()), 1e-30)
    assert np.abs(y - want).max() <= 1e-5 * scale, (name, np.abs(y - want).max() / scale)


@pytest.mark.parametrize("name, theano", [
    (name, theano) for name in ("genomics_seq", "dl_conv2d_channels_first", "dl_conv2d_valid", "dl_functional_concat",
                                "dl_batchnorm", "dl_sigmoid_tanh", "dl_conv2d_same")
    for theano in (False, True) if not (theano and name in ("dl_sigmoid_tanh", "dl_conv2d_same"))])  # even, 'same'
def test_keras12_file_forward_equals_the_keras2_save(tmp_path, name, theano):
    path = write_keras1(os.path.join(NEW, f"{name}.tfkeras.h5"), tmp_path / "k1.h5", theano=theano)
    model = fl.load_model(path, conv_backend="theano" if theano else "tensorflow")
    assert_matches_tf(model, name)


def test_keras10_legacy_conv1d_layout(tmp_path):
    path = write_keras1(os.path.join(NEW, "genomics_seq.tfkeras.h5"), tmp_path / "k1.h5", theano=True,
                        legacy_conv1d=True, version="1.0.4")
    assert_matches_tf(fl.load_model(path, conv_backend="theano"), "genomics_seq")


@pytest.mark.parametrize("name", ["genomics_seq", "dl_conv2d_channels_first", "dl_batchnorm"])
def test_keras0_file_forward_equals_the_keras2_save(tmp_path, name):
    weights = tmp_path / "w.h5"
    config = write_keras0(os.path.join(NEW, f"{name}.tfkeras.h5"), weights, theano=True)
    assert_matches_tf(fl.load_model(weights, config_json=config, conv_backend="theano"), name)


def test_theano_same_padding_with_even_kernels_is_refused_by_name(tmp_path):
    path = write_keras1(os.path.join(NEW, "dl_conv1d_same.tfkeras.h5"), tmp_path / "k1.h5", theano=True)
    with pytest.raises(NotImplementedError, match=r"layer 'conv1d' \(Convolution1D\): border_mode='same' with kernel "
                                                  r"\[4\] and strides \[2\] pads differently on Theano"):
        fl.load_model(path, conv_backend="theano")
    path = write_keras1(os.path.join(NEW, "dl_conv1d_same.tfkeras.h5"), tmp_path / "k1tf.h5")
    assert_matches_tf(fl.load_model(path, conv_backend="tensorflow"), "dl_conv1d_same")


def test_default_backend_for_keras1_is_theano_with_a_warning(tmp_path):
    path = write_keras1(os.path.join(NEW, "genomics_seq.tfkeras.h5"), tmp_path / "k1.h5", theano=True)
    with pytest.warns(UserWarning, match=r"^'k1.h5': a Keras 1.x model, whose files do not record the backend"):
        model = fl.load_model(path)
    assert_matches_tf(model, "genomics_seq")


def test_keras2_file_written_by_theano_has_its_kernels_flipped(tmp_path):
    """Keras 2 records ``backend`` in the weights group; 'theano' kernels are flipped back."""
    dst = tmp_path / "th.h5"
    shutil.copy(os.path.join(NEW, "genomics_seq.tfkeras.h5"), dst)
    with h5py.File(dst, "r+") as f:
        g = f["model_weights"]
        g.attrs["backend"] = b"theano"
        for layer in g.attrs["layer_names"]:
            lg = g[layer.decode() if isinstance(layer, bytes) else layer]
            for wn in lg.attrs["weight_names"]:
                wn = wn.decode() if isinstance(wn, bytes) else wn
                if lg[wn].ndim == 3:
                    lg[wn][...] = np.array(lg[wn])[::-1]
    assert_matches_tf(fl.load_model(dst), "genomics_seq")
    with pytest.raises(AssertionError):
        assert_matches_tf(fl.load_model(dst, conv_backend="tensorflow"), "genomics_seq")


def _keras1_config(path, edit):
    with h5py.File(path, "r+") as f:
        c = json.loads(f.attrs["model_config"])
        edit(c)
        f.attrs["model_config"] = json.dumps(c)
    return path


@pytest.mark.parametrize("mode, says", [
    ("mul", (r"layer 'concat' \(Merge\): merge mode 'mul' has no DeepLIFT rule in fastlift; supported modes: "
             r"\['ave', 'concat', 'sum'\]")),
    ("cos", r"merge mode 'cos'"),
])
def test_merge_modes_without_a_rule_are_named(tmp_path, mode, says):
    path = write_keras1(os.path.join(NEW, "dl_functional_concat.tfkeras.h5"), tmp_path / "k1.h5")

    def edit(c):
        next(e for e in c["config"]["layers"] if e["class_name"] == "Merge")["config"]["mode"] = mode

    with pytest.raises(NotImplementedError, match=says):
        fl.load_model(_keras1_config(path, edit), conv_backend="tensorflow")


def test_merge_with_a_python_function_points_to_replace(tmp_path):
    path = write_keras1(os.path.join(NEW, "dl_functional_concat.tfkeras.h5"), tmp_path / "k1.h5")

    def edit(c):
        cfg = next(e for e in c["config"]["layers"] if e["class_name"] == "Merge")["config"]
        cfg.update(mode=["lambda x: x[0] * 2", None, None], mode_type="lambda")

    with pytest.raises(NotImplementedError, match=r"Merge with a Python function.*replace=\{'concat'"):
        fl.load_model(_keras1_config(path, edit), conv_backend="tensorflow")


def test_batchnorm_modes_1_and_2_are_refused(tmp_path):
    path = write_keras1(os.path.join(NEW, "dl_batchnorm.tfkeras.h5"), tmp_path / "k1.h5")

    def edit(c):
        next(e for e in c["config"] if e["class_name"] == "BatchNormalization")["config"]["mode"] = 2

    with pytest.raises(NotImplementedError, match=r"mode=2 normalises with the statistics of each batch"):
        fl.load_model(_keras1_config(path, edit))


def test_keras1_lstm_is_named(tmp_path):
    path = write_keras1(os.path.join(NEW, "genomics_seq.tfkeras.h5"), tmp_path / "k1.h5")

    def edit(c):
        c["config"][2] = {"class_name": "LSTM", "config": {"name": "lstm_1", "output_dim": 8, "return_sequences": False,
                                                           "inner_activation": "hard_sigmoid"}}

    with pytest.raises(NotImplementedError, match=r"layer 'lstm_1' \(LSTM\): fastlift has no LSTM layer"):
        fl.load_model(_keras1_config(path, edit), conv_backend="tensorflow")


def test_graph_weights_must_add_up(tmp_path):
    dst = tmp_path / "g.h5"
    shutil.copy(old("talgata_graph_k0_weights.h5"), dst)
    with h5py.File(dst, "r+") as f:
        f["graph"].attrs["nb_params"] = 7
    with pytest.raises(ModelFileError, match=r"the Graph's layers store 8 weight arrays; the file holds 7"):
        fl.load_model(dst, config_yaml=old("talgata_graph_k0.yaml"), conv_backend="theano")


def test_stored_weights_in_the_wrong_layout_are_a_file_error(tmp_path):
    path = write_keras1(os.path.join(NEW, "dl_batchnorm.tfkeras.h5"), tmp_path / "k1.h5", version="1.0.4")
    with h5py.File(path, "r+") as f:  # Keras 1.0.4's BatchNormalization stores 4 arrays; drop one
        g = f["model_weights/batch_normalization"]
        g.attrs["weight_names"] = g.attrs["weight_names"][:3]
    with pytest.raises(ModelFileError, match=r"layer 'batch_normalization': the stored weights of shapes "
                                             r"\[\(2,\), \(2,\), \(2,\)\] are not in the layout the config implies"):
        fl.load_model(path)


@pytest.mark.parametrize("edit", [
    lambda c: c["config"][0]["config"].update(subsample_length=[1, "x"]),
    lambda c: c["config"][0]["config"].update(filter_length={"a": 1}),
    lambda c: c.update(config={"layers": 3}),
])
def test_malformed_keras1_configs_are_file_errors(tmp_path, edit):
    path = write_keras1(os.path.join(NEW, "genomics_seq.tfkeras.h5"), tmp_path / "k1.h5")
    with pytest.raises(ModelFileError, match=r"^'k1.h5': "):
        fl.load_model(_keras1_config(path, edit), conv_backend="theano")


# ------------------------------------------- real Keras 1.2.2 on Theano (make_keras1_fixtures.py)


@pytest.mark.parametrize("name", ["seq_conv1d", "seq_conv2d_th", "seq_conv2d_tf", "functional_merge"])
def test_keras122_theano_files_match_theano_s_predictions(name):
    """Saved by Keras 1.2.2's model.save on Theano 1.0.5 (float32): the file records no
    backend, the default reads it as Theano's and matches; read unflipped, it does not."""
    path = old(f"k122_{name}.h5")
    with h5py.File(path, "r") as f:
        assert sorted(f.attrs) == ["keras_version", "model_config"]  # no 'backend' in Keras 1 files
        assert f.attrs["keras_version"] in (b"1.2.2", "1.2.2")
    with np.load(old(f"k122_{name}.npz")) as z:
        xs = [z[k].astype(np.float64) for k in sorted(z.files) if k.startswith("x")]
        want = z["y0"]
    with pytest.warns(UserWarning, match="read as Theano's"):
        model = fl.load_model(path)
    y = model.predict(xs if len(xs) > 1 else xs[0], dtype="float64")
    assert np.abs(y - want).max() <= 2e-6 * np.abs(want).max()
    unflipped = fl.load_model(path, conv_backend="tensorflow").predict(xs if len(xs) > 1 else xs[0], dtype="float64")
    assert np.abs(unflipped - want).max() > 1e-2 * np.abs(want).max()
