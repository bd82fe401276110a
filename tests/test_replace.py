"""``load_model(..., replace=...)``: Lambda and custom layers by explicit replacement.

The fixtures (``tests/fixtures/live``) were written by real tf.keras
(``tests/fixtures/make_live_fixtures.py``) with TensorFlow's predictions: a ChromBPNet-shaped
model whose counts head is the log-sum-exp ``Lambda`` ChromBPNet 1.x writes, and a model with
kundajelab keras-genomics' custom ``RevCompConv1D``.
"""

import json
import os
import shutil

import h5py
import numpy as np
import pytest

import fastlift as fl
from fastlift.io import ModelFileError

LIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "live")


def live(name):
    return os.path.join(LIVE, name)


def tf_outputs(name):
    with np.load(live(f"{name}.npz")) as z:
        return z["x0"].astype(np.float64), [z[k] for k in sorted(z.files) if k.startswith("y")]


def assert_close(y, want):
    scale = max(float(np.abs(want).max()), 1e-30)
    assert y.shape == want.shape and np.abs(y - want).max() <= 2e-6 * scale, np.abs(y - want).max() / scale


LSE = {"logcount_predictions": fl.layers.LogSumExp(axis=-1, keepdims=True)}


def revcomp_conv(config, weights):
    """keras-genomics' RevCompConv1D as one Conv1D: the kernel (width, 4, f) followed by its
    reverse complement W[::-1, ::-1, ::-1] (positions reversed, A<->T and C<->G swapped by
    reversing the ACGT channel axis, filter order reversed), the bias by b[::-1]."""
    kernel, bias = weights
    return fl.layers.Conv1D(np.concatenate([kernel, kernel[::-1, ::-1, ::-1]], axis=-1),
                            np.concatenate([bias, bias[::-1]]), strides=config["strides"][0],
                            padding=config["padding"])


def test_a_lambda_is_refused_with_replace_as_the_way_out():
    with pytest.raises(NotImplementedError, match=r"layer 'logcount_predictions' is a Lambda.*never runs code.*"
                                                  r"replace=\{'logcount_predictions': <a fastlift.layers layer"):
        fl.load_model(live("chrombpnet_lambda.tfkeras.h5"))


def test_chrombpnet_counts_lambda_replaced_by_logsumexp_matches_tensorflow():
    model = fl.load_model(live("chrombpnet_lambda.tfkeras.h5"), replace=dict(LSE))
    x, want = tf_outputs("chrombpnet_lambda")
    ys = model.predict(x, dtype="float64")
    for y, w in zip(ys, want):
        assert_close(y, w)
    # DeepLIFT through the replacement: summation-to-delta at the counts head, exact in float64
    res = fl.deeplift(model, x, target_layer="logcount_predictions", dtype="float64",
                      references=np.full((1, 64, 4), 0.25))
    assert np.abs(res.deltas).max() < 1e-10


def test_a_class_name_key_replaces_every_layer_of_that_class():
    model = fl.load_model(live("chrombpnet_lambda.tfkeras.h5"),
                          replace={"Lambda": lambda config, weights: fl.layers.LogSumExp(axis=-1)})
    x, want = tf_outputs("chrombpnet_lambda")
    assert_close(model.predict(x, dtype="float64")[1], want[1])


def test_revcomp_conv_becomes_one_conv1d_with_a_constructed_kernel():
    with pytest.raises(NotImplementedError, match=r"layer 'rc_conv' \(RevCompConv1D\): fastlift has no RevCompConv1D "
                                                  r"layer .*replace=\{'rc_conv'"):
        fl.load_model(live("revcomp.tfkeras.h5"))
    model = fl.load_model(live("revcomp.tfkeras.h5"), replace={"RevCompConv1D": revcomp_conv})
    x, (want,) = tf_outputs("revcomp")
    assert_close(model.predict(x, dtype="float64"), want)
    assert model.get_node("rc_conv").shape == (34, 12)


def test_a_factory_gets_the_config_and_the_stored_weights():
    seen = {}

    def factory(config, weights):
        seen["config"], seen["weights"] = config, weights
        return revcomp_conv(config, weights)

    fl.load_model(live("revcomp.tfkeras.h5"), replace={"rc_conv": factory})
    assert seen["config"]["name"] == "rc_conv" and seen["config"]["filters"] == 6 and "_entry" not in seen["config"]
    assert [w.shape for w in seen["weights"]] == [(7, 4, 6), (6,)]
    with h5py.File(live("revcomp.tfkeras.h5"), "r") as f:
        g = f["model_weights/rc_conv"]
        kernel = np.array(g[g.attrs["weight_names"][0]])
    np.testing.assert_array_equal(seen["weights"][0], kernel)


def test_a_layer_name_takes_precedence_over_its_class():
    model = fl.load_model(live("chrombpnet_lambda.tfkeras.h5"),
                          replace={"Lambda": fl.layers.Dropout(0.0), "logcount_predictions": fl.layers.LogSumExp()})
    assert isinstance(model.get_node("logcount_predictions").layer, fl.layers.LogSumExp)


def _declare(tmp_path, shape):
    dst = tmp_path / "declared.h5"
    shutil.copy(live("chrombpnet_lambda.tfkeras.h5"), dst)
    with h5py.File(dst, "r+") as f:
        c = json.loads(f.attrs["model_config"])
        lam = next(e for e in c["config"]["layers"] if e["class_name"] == "Lambda")
        lam["config"]["output_shape"] = shape
        f.attrs["model_config"] = json.dumps(c)
    return dst


def test_the_replacement_must_output_the_shape_the_file_declares(tmp_path):
    model = fl.load_model(_declare(tmp_path, [1]), replace=dict(LSE))
    assert model.get_node("logcount_predictions").shape == (1,)
    with pytest.raises(ValueError, match=r"^'declared.h5': the replacement for layer 'logcount_predictions' \(Lambda\) "
                                         r"outputs shape \(2,\); the file declares \(1,\) for that layer"):
        fl.load_model(_declare(tmp_path, [1]), replace={"logcount_predictions": fl.layers.Dropout(0.0)})


def test_a_built_in_layer_replaced_must_keep_its_output_shape():
    # a Dense 12 -> 8 of the file replaced by a Dense 12 -> 5: refused at the layer itself (its own
    # shape is the contract), not by the next layer blaming the file, nor silently at an output
    path = os.path.join(os.path.dirname(LIVE), "keras", "seq_mlp.tfkeras.h5")
    base = fl.load_model(path)
    hidden = base.get_node("hidden1/preact").layer
    same_shape = fl.load_model(path, replace={"hidden1": fl.layers.Dense(2 * hidden.weights["kernel"],
                                                                         hidden.weights["bias"])})
    assert same_shape.get_node("hidden1").shape == base.get_node("hidden1").shape
    with pytest.raises(ValueError, match=r"the replacement for layer 'hidden1' \(Dense\) outputs shape \(5,\); the "
                                         r"Dense layer it replaces outputs \(8,\)"):
        fl.load_model(path, replace={"hidden1": fl.layers.Dense(np.ones((12, 5)))})
    with pytest.raises(ValueError, match=r"the replacement for layer 'probs' \(Dense\) outputs shape \(7,\); the Dense "
                                         r"layer it replaces outputs \(3,\)"):   # a model output
        fl.load_model(path, replace={"probs": lambda config, weights: fl.layers.Dense(np.ones((weights[0].shape[0], 7)))})


def test_a_replacement_that_does_not_fit_its_input_is_named():
    with pytest.raises(ValueError, match=r"the replacement for layer 'logcount_predictions' \(Lambda\) does not fit "
                                         r"its input shape\(s\) \[\(2,\)\]"):
        fl.load_model(live("chrombpnet_lambda.tfkeras.h5"),
                      replace={"logcount_predictions": fl.layers.LogSumExp(axis=2)})


@pytest.mark.parametrize("replace, err, says", [
    ([("x", 1)], TypeError, r"replace must be a dict \{layer name or class name: fastlift Layer or factory\}; got list"),
    ({3: fl.layers.Log()}, TypeError, r"replace keys must be layer or class names \(non-empty str\); got 3"),
    ({"logcount_predictions": "logsumexp"}, TypeError,
     (r"replace\['logcount_predictions'\] must be a fastlift.layers.Layer or a factory f\(config, weights\) -> Layer; "
      r"got str")),
    ({"logcount_predictions": lambda c, w: np.log}, TypeError,
     (r"replace\['logcount_predictions'\] returned ufunc for layer 'logcount_predictions'; a factory must return a "
      r"fastlift.layers.Layer")),
    ({**LSE, "logcounts": fl.layers.Log()}, ValueError,
     (r"replace= names \['logcounts'\], which match\(es\) no layer name or class in "
      r"'chrombpnet_lambda.tfkeras.h5'")),
    ({"Dense": fl.layers.Dense(np.ones((8, 1))), **LSE}, ValueError,   # fits the first: the second is refused
     (r"replace\['Dense'\] is one layer but the file has several layers it matches \(\['logcount_acc', "
      r"'logcount_bias'\]\); pass a factory")),
])
def test_bad_replacements_are_named(replace, err, says):
    with pytest.raises(err, match=says):
        fl.load_model(live("chrombpnet_lambda.tfkeras.h5"), replace=replace)


def test_keras1_lambda_can_be_replaced(tmp_path):
    """A Keras 1 file's Lambda is passed through untranslated when replaced."""
    from keras1_writer import write_keras1

    path = write_keras1(os.path.join(os.path.dirname(LIVE), "keras", "genomics_seq.tfkeras.h5"), tmp_path / "k1.h5")
    with h5py.File(path, "r+") as f:
        c = json.loads(f.attrs["model_config"])
        act = next(e for e in c["config"] if e["class_name"] == "Activation")
        act.update(class_name="Lambda", config={"name": act["config"]["name"], "function": ["code", None, None],
                                                "function_type": "lambda", "output_shape": None, "arguments": {}})
        f.attrs["model_config"] = json.dumps(c)
    with pytest.raises(NotImplementedError, match=r"is a Lambda.*replace="):
        fl.load_model(path, conv_backend="tensorflow")
    model = fl.load_model(path, conv_backend="tensorflow", replace={"Lambda": fl.layers.Activation("sigmoid")})
    with np.load(os.path.join(os.path.dirname(LIVE), "keras", "genomics_seq.npz")) as z:
        assert_close(model.predict(z["x0"].astype(np.float64) / 16, dtype="float64"), z["tfkeras_y0"])


def test_replacing_a_layer_that_is_not_code_is_allowed():
    model = fl.load_model(live("revcomp.tfkeras.h5"), replace={"RevCompConv1D": revcomp_conv,
                                                               "rc_relu": fl.layers.Activation("softplus")})
    assert model.get_node("rc_relu").layer.activation == "softplus"


def test_model_file_errors_still_name_the_file(tmp_path):
    dst = tmp_path / "trunc.h5"
    with open(live("revcomp.tfkeras.h5"), "rb") as f:
        dst.write_bytes(f.read()[:2000])
    with pytest.raises(ModelFileError, match="trunc.h5"):
        fl.load_model(dst, replace={"RevCompConv1D": revcomp_conv})
