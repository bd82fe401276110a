"""fastlift.compat against the original deeplift's numbers.

The original (TensorFlow 1) cannot run here, so the checks are:

* numbers measured by running the original (deeplift-semantics.md §2.1: the RevealCancel
  x=[1,0] example) and its hand-computed test cases T1-T9, through the compat API on
  Keras 2.2.4-layout files written with h5py (`fixtures/k224_writer.py`);
* the original's conversion tests on Keras-saved models (fixtures written by real Keras):
  with zero biases and a zero reference, Rescale (ReLU nets) and Gradient (sigmoid/tanh)
  contributions equal Keras's gradient x input;
* each reproduced quirk against its definition, and compat == fastlift where the
  original has no quirk.
"""

import os

import numpy as np
import pytest
from fixtures.k224_writer import layer, write_functional, write_sequential

import fastlift as fl
from fastlift.compat import util
from fastlift.compat.conversion import kerasapi_conversion as kc
from fastlift.compat.dinuc_shuffle import dinuc_shuffle
from fastlift.compat.layers import NonlinearMxtsMode

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras")
MODES = NonlinearMxtsMode


def convert(path, mode=MODES.Rescale, **kw):
    return kc.convert_model_from_saved_files(str(path), nonlinear_mxts_mode=mode, verbose=False, **kw)


def run(func, x, refs=None, task=0, batch_size=10):
    xs = x if isinstance(x, (list, dict)) else [x]
    out = func(task_idx=task, input_data_list=xs, input_references_list=refs, batch_size=batch_size,
               progress_update=None)
    return np.array(out)


def _cl(a):
    return np.moveaxis(np.asarray(a, dtype=np.float64), 1, -1)


# -------------------------------------------------------- measured by running the original


def test_reveal_cancel_pseudocount_matches_the_measured_original(tmp_path, capsys):
    """x=[1,0], ref 0 -> Dense W=[[-1],[2]], b=0.5 -> ReLU (RevealCancel) -> Dense(1):
    the original gives multipliers [-0.50000006, 1.0960464] and contributions [-0.5, 0]."""
    path = tmp_path / "rc.h5"
    write_sequential(path, (2,), [layer("Dense", "dense_1", [[[-1.0], [2.0]], [0.5]], activation="relu"),
                                  layer("Dense", "dense_2", [[[1.0]], [0.0]])])
    model = convert(path, MODES.RevealCancel)
    assert [lay.name for lay in model.get_layers()] == ["input", "preact_0", "0", "1"]
    x = np.array([[1.0, 0.0]])
    mult = run(model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1), x)
    contribs = run(model.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=-1), x)
    assert "No reference provided - using zeros" in capsys.readouterr().out
    np.testing.assert_allclose(mult, [[-0.50000006, 1.0960464]], rtol=2e-7)
    np.testing.assert_allclose(contribs, [[-0.5, 0.0]], atol=1e-7)
    # fastlift's own reveal_cancel takes the limit instead: ½(0.5 + 0.5)·2 = 1 at the Δx = 0 input
    native = fl.deeplift(fl.load_model(path), x, rule="reveal_cancel", target_layer="dense_2")
    np.testing.assert_allclose(native.multipliers, [[-0.5, 1.0]], rtol=1e-6)


# ------------------------------------------------------ T1-T9 through the compat API

W1 = np.array([1.0, 2.0, 3.0, 4.0])
T1_KERNEL = np.stack([W1, -W1], axis=1)
T1_BIAS = np.array([-1.0, 1.0])
T1_X = np.array([[1.0, 1, 1, 1], [2, 2, 2, 2]])


def test_t1_dense(tmp_path):
    path = tmp_path / "t1.h5"
    write_sequential(path, (4,), [layer("Dense", "dense_1", [T1_KERNEL, T1_BIAS])])
    model = convert(path)
    assert model.fastlift_model.predict(T1_X).tolist() == [[9, -9], [19, -19]]
    for task, w in ((0, W1), (1, -W1)):
        f = model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
        np.testing.assert_allclose(run(f, T1_X, [0.0], task=task), [w, w])


@pytest.mark.parametrize("mode, task, expected", [
    (MODES.Rescale, 0, [0.9 * W1, 0.95 * W1]), (MODES.Rescale, 1, [-0.1 * W1, -0.05 * W1]),
    (MODES.Gradient, 0, [W1, W1]), (MODES.Gradient, 1, [0 * W1, 0 * W1]),
])
def test_t2_dense_relu(tmp_path, mode, task, expected):
    """The original targets the ReLU itself, which its model API refuses; an identity Dense
    after the ReLU gives the same multipliers."""
    path = tmp_path / "t2.h5"
    write_sequential(path, (4,), [layer("Dense", "dense_1", [T1_KERNEL, T1_BIAS], activation="relu"),
                                  layer("Dense", "identity", [np.eye(2), np.zeros(2)])])
    model = convert(path, mode)
    f = model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
    np.testing.assert_allclose(run(f, T1_X, [0.0], task=task), expected, rtol=1e-6)
    with pytest.raises(RuntimeError, match="You set the target layer to an activation layer"):
        model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-2)


def test_t3_concat(tmp_path):
    path = tmp_path / "t3.h5"
    write_functional(path, {"input1": (1, 1, 1), "input2": (1, 1, 1)}, [
        layer("Concatenate", "concat", inbound=["input1", "input2"], axis=1),
        layer("Flatten", "flatten", inbound=["concat"]),
        layer("Dense", "dense", [[[1.0], [2.0]], [1.0]], inbound=["flatten"])], ["dense"])
    model = convert(path)
    assert model.get_input_layer_names() == ["input1_0", "input2_0"]
    x = np.array([[[[1.0]]], [[[2.0]]]])
    f = model.get_target_multipliers_func(find_scores_layer_name=["input1_0", "input2_0"],
                                          pre_activation_target_layer_name="dense_0")
    m1, m2 = run(f, {"input1_0": x, "input2_0": x}, {"input1_0": 0, "input2_0": 0})
    np.testing.assert_allclose(m1, [[[[1]]], [[[1]]]])
    np.testing.assert_allclose(m2, [[[[2]]], [[[2]]]])


T4_KERNEL = np.array([[[-2.0, 2.0], [0.0, 0.0]], [[-1.0, 1.0], [1.0, -1.0]]])
T4_X = np.array([[[-8.0, -4], [-7, -3], [-6, -2], [-5, -1]], [[0.0, 4], [1, 5], [2, 6], [3, 7]]])


def _alternating(pattern, n):
    return np.tile(np.asarray(pattern, float), n)[:, None]


@pytest.mark.parametrize("stride, expected", [
    (1, _cl([[[-4, -6, -6, -2], [0, 2, 2, 2]]] * 2)), (2, _cl([[[-4, -2, -4, -2], [0, 2, 0, 2]]] * 2))])
def test_t4_conv1d(tmp_path, stride, expected):
    path = tmp_path / "t4.h5"
    n_pos = 3 if stride == 1 else 2
    write_sequential(path, (4, 2), [layer("Conv1D", "conv", [T4_KERNEL, [-1.0, 1.0]], strides=[stride]),
                                    layer("Flatten", "flatten"),
                                    layer("Dense", "dense", [_alternating([1, -1], n_pos), [1.0]])])
    model = convert(path)
    f = model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
    np.testing.assert_allclose(run(f, T4_X, [np.zeros((1, 4, 2))]), expected)
    if stride == 1:  # the conv layer's contributions with the ones reference: m·(pos + neg contribs)
        pos = _cl([[[26, 23, 20], [4, 3, 2]], [[6, 5, 6], [0, 1, 4]]])
        neg = _cl([[[-4, -3, -2], [-26, -23, -20]], [[0, -1, -4], [-6, -5, -6]]])
        f = model.get_target_contribs_func(find_scores_layer_idx=1, target_layer_idx=-1)
        np.testing.assert_allclose(run(f, T4_X, [1.0]), np.array([1.0, -1.0]) * (pos + neg))


T5_W1 = np.arange(8, dtype=np.float64).reshape(2, 2, 2)
T5_KERNEL = np.array([T5_W1, -T5_W1]).transpose(2, 3, 1, 0)
T5_X = np.arange(64, dtype=np.float64).reshape(2, 2, 4, 4).transpose(0, 2, 3, 1)
T5_MULT = {
    1: _cl([[[[0, 2, 2, 2], [4, 12, 12, 8], [4, 12, 12, 8], [4, 10, 10, 6]],
             [[8, 18, 18, 10], [20, 44, 44, 24], [20, 44, 44, 24], [12, 26, 26, 14]]]] * 2),
    2: _cl([[[[0, 2, 0, 2], [4, 6, 4, 6], [0, 2, 0, 2], [4, 6, 4, 6]],
             [[8, 10, 8, 10], [12, 14, 12, 14], [8, 10, 8, 10], [12, 14, 12, 14]]]] * 2),
}


@pytest.mark.parametrize("stride", [1, 2])
def test_t5_conv2d(tmp_path, stride):
    path = tmp_path / "t5.h5"
    write_sequential(path, (4, 4, 2), [
        layer("Conv2D", "conv", [T5_KERNEL, [-1.0, 1.0]], strides=[stride, stride]), layer("Flatten", "flatten"),
        layer("Dense", "dense", [_alternating([1, -1], 9 if stride == 1 else 4), [1.0]])])
    f = convert(path).get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
    np.testing.assert_allclose(run(f, T5_X, [0.0]), T5_MULT[stride])


T6_X = _cl([[[0, 1, 4, 3], [3, 2, 1, 0]], [[0, -1, -2, -3], [-3, -2, -1, 0]]])


@pytest.mark.parametrize("kind, expected", [
    ("MaxPooling1D", _cl([[2 * np.array([0, 1, 2, 0]), 3 * np.array([1, 1, 1, 0])],
                          [2 * np.array([1, 1, 1, 0]), 3 * np.array([0, 1, 1, 1])]])),
    ("AveragePooling1D", _cl([[np.array([1, 2, 2, 1]), 1.5 * np.array([1, 2, 2, 1])]] * 2)),
])
def test_t6_pool1d(tmp_path, kind, expected):
    path = tmp_path / "t6.h5"
    write_sequential(path, (4, 2), [layer(kind, "pool", pool_size=[2], strides=[1]), layer("Flatten", "flatten"),
                                    layer("Dense", "dense", [_alternating([2, 3], 3), [1.0]])])
    f = convert(path).get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
    np.testing.assert_allclose(run(f, T6_X, [0.0]), expected)


T7_REF = _cl([[[[0, 0, 2, 3], [0, 1, 0, 0], [0, 5, 4, 0], [6, 0, 7, 8]],
               [[1, 1, 3, 4], [1, 2, 1, 1], [1, 6, 5, 1], [7, 1, 8, 9]]]])
T7_X = _cl([[[[2, 0, 2, 3], [0, 1, 4, 0], [7, 6, 5, 0], [6, 0, 8, 9]],
             [[0, 0, 2, 3], [0, 1, 0, 0], [0, 5, 4, 0], [6, 0, 7, 8]]],
            [[[1, 1, 3, 4], [1, 2, 1, 1], [1, 6, 5, 1], [7, 1, 8, 9]],
             [[3, 1, 3, 4], [1, 2, 5, 1], [8, 7, 6, 1], [7, 1, 9, 10]]]])
_A = np.array([[1, 0, 0, 0], [0, 0, 2, 0], [2, 1, 1, 0], [0, 0, 1, 1]])
_B = np.array([[0, 0, 1, 1], [0, 1, 0, 0], [0, 2, 1, 0], [1, 0, 1, 1]])
_AVG = 0.25 * np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])


@pytest.mark.parametrize("kind, expected", [
    ("MaxPooling2D", _cl([[2 * _A, 3 * _B], [2 * _B, 3 * _A]])),
    ("AveragePooling2D", _cl([[2 * _AVG, 3 * _AVG]] * 2)),
])
def test_t7_pool2d(tmp_path, kind, expected):
    path = tmp_path / "t7.h5"
    write_sequential(path, (4, 4, 2), [layer(kind, "pool", pool_size=[2, 2], strides=[1, 1]),
                                       layer("Flatten", "flatten"),
                                       layer("Dense", "dense", [_alternating([2, 3], 9), [1.0]])])
    f = convert(path).get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
    np.testing.assert_allclose(run(f, T7_X, [T7_REF]), expected)


def _bn(name, c):
    return layer("BatchNormalization", name, [np.ones(c), np.zeros(c), np.zeros(c), np.ones(c)], axis=-1)


@pytest.mark.parametrize("shape, body, expected", [
    ((4,), [layer("Dense", "d", [np.ones((4, 3)), np.zeros(3)]), layer("Activation", "a", activation="relu")],
     MODES.RevealCancel),
    ((4,), [layer("Dense", "d", [np.ones((4, 3)), np.zeros(3)]), _bn("bn", 3), layer("Dropout", "n1", rate=0.5),
            layer("Dropout", "n2", rate=0.5), layer("Activation", "a", activation="relu")], MODES.RevealCancel),
    ((5, 4), [layer("Conv1D", "c", [np.ones((2, 4, 3)), np.zeros(3)]), layer("Activation", "a", activation="relu")],
     MODES.Rescale),
    ((5, 4), [layer("Conv1D", "c", [np.ones((2, 4, 3)), np.zeros(3)]), _bn("bn", 3),
              layer("Activation", "a", activation="relu")], MODES.Rescale),
    ((5, 5, 2), [layer("Conv2D", "c", [np.ones((2, 2, 2, 3)), np.zeros(3)]),
                 layer("Activation", "a", activation="relu")], MODES.Rescale),
    ((5, 5, 2), [layer("Conv2D", "c", [np.ones((2, 2, 2, 3)), np.zeros(3)]), _bn("bn", 3),
                 layer("Activation", "a", activation="relu")], MODES.Rescale),
    ((4,), [layer("Activation", "a", activation="relu"), layer("Dense", "d", [np.ones((4, 1)), np.zeros(1)])],
     RuntimeError),
])
def test_t8_genomics_default_resolution(tmp_path, shape, body, expected):
    path = tmp_path / "t8.h5"
    write_sequential(path, shape, body)
    if expected is RuntimeError:
        with pytest.raises(RuntimeError, match="Unsure how to resolve DeepLIFT_GenomicsDefault when the preceding "
                                               "linear layer is of type Input"):
            convert(path, MODES.DeepLIFT_GenomicsDefault)
        return
    model = convert(path, MODES.DeepLIFT_GenomicsDefault)
    acts = [lay for lay in model.get_layers() if getattr(lay, "nonlinear_mxts_mode", None)]
    assert [lay.nonlinear_mxts_mode for lay in acts] == [expected]


@pytest.mark.parametrize("fmt", ["tfkeras.h5", "k224.h5", "keras"])
def test_t9_batchnorm_saved_by_keras(fmt):
    model = convert(os.path.join(FIXTURES, f"dl_batchnorm.{fmt}"))
    x = np.arange(16, dtype=np.float64).reshape(2, 2, 2, 2).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(model.fastlift_model.predict(x)[:, 0], [40.000194, 103.994417], rtol=1e-6)
    f = model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
    mult = run(f, x, [0.0])
    np.testing.assert_allclose(mult[..., 0], 0.99987502, rtol=1e-6)
    np.testing.assert_allclose(mult[..., 1], 0.99994445, rtol=1e-6)


# ------------------------------------------- the original's conversion tests (Keras-saved)


@pytest.mark.parametrize("name, fmt, mode", [
    ("dl_conv1d_same", "tfkeras.h5", MODES.Rescale), ("dl_conv1d_same", "k224.h5", MODES.Rescale),
    ("dl_conv1d_valid", "keras", MODES.Rescale), ("dl_sigmoid_tanh", "tfkeras.h5", MODES.Gradient),
    ("dl_conv2d_same", "tfkeras.h5", MODES.Rescale), ("dl_conv2d_valid", "tfkeras.h5", MODES.Rescale),
])
def test_conversion_models_equal_keras_gradient_times_input(name, fmt, mode):
    model = convert(os.path.join(FIXTURES, f"{name}.{fmt}"), mode)
    with np.load(os.path.join(FIXTURES, name + ".npz")) as z:
        x = z["x0"].astype(np.float32) / 16
        grad = z["tfkeras_grad0"]
    f = model.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=-2)
    np.testing.assert_allclose(run(f, x, [0.0]), grad * x, atol=1e-6)


def test_functional_concatenate_model_with_dict_inputs():
    model = convert(os.path.join(FIXTURES, "dl_functional_concat.k224.h5"))
    names = model.get_name_to_layer()
    assert {"inp1_0", "inp2_0", "preact_conv_0", "conv_0", "conv_1", "pool_1", "output_preact_0",
            "output_postact_0"} <= set(names)
    with np.load(os.path.join(FIXTURES, "dl_functional_concat.npz")) as z:
        x1, x2 = z["x0"] / 16, z["x1"] / 16
        g1, g2 = z["tfkeras_grad0"], z["tfkeras_grad1"]
    rescale = convert(os.path.join(FIXTURES, "dl_functional_concat.tfkeras.h5"), MODES.Rescale)
    f = rescale.get_target_contribs_func(find_scores_layer_name=["inp1_0", "inp2_0"],
                                         pre_activation_target_layer_name="output_preact_0")
    got = run(f, {"inp1_0": x1, "inp2_0": x2}, {"inp1_0": np.zeros_like(x1), "inp2_0": np.zeros_like(x2)})
    np.testing.assert_allclose(got, np.array([g1 * x1, g2 * x2]), atol=1e-6)


# ------------------------------------------------------------------------ quirks


def test_rescale_near_zero_uses_the_gradient_at_the_output_reference(tmp_path):
    path = tmp_path / "sig.h5"
    write_sequential(path, (1,), [layer("Dense", "d", [[[1.0]], [0.3]], activation="sigmoid"),
                                  layer("Dense", "out", [[[1.0]], [0.0]])])
    model = convert(path, MODES.Rescale)
    f = model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
    sig = lambda t: 1 / (1 + np.exp(-t))
    s = sig(sig(0.3))
    np.testing.assert_allclose(run(f, np.zeros((1, 1)), [0.0]), [[s * (1 - s)]], rtol=1e-6)  # σ′(σ(x⁰))
    native = fl.deeplift(fl.load_model(path), np.zeros((1, 1)), target_layer="out")
    np.testing.assert_allclose(native.multipliers, [[sig(0.3) * (1 - sig(0.3))]], rtol=1e-6)  # fastlift: σ′(x⁰)


def test_global_max_pool_ties_get_full_credit(tmp_path):
    path = tmp_path / "gmp.h5"
    write_sequential(path, (3, 1), [layer("GlobalMaxPooling1D", "gmp"), layer("Dense", "d", [[[1.0]], [0.0]])])
    model = convert(path)
    x = np.array([[[2.0], [2.0], [1.0]]])
    f = model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-1)
    np.testing.assert_allclose(run(f, x, [0.0]), [[[1.0], [1.0], [0.0]]])
    native = fl.deeplift(fl.load_model(path), x, max_pool="gradient")
    np.testing.assert_allclose(native.multipliers, [[[1.0], [0.0], [0.0]]])


def test_max_pool_layer_contributions_are_zero_as_in_the_original(tmp_path):
    path = tmp_path / "mp.h5"
    write_sequential(path, (4, 1), [layer("MaxPooling1D", "mp", pool_size=[2], strides=[2]),
                                    layer("Flatten", "f"), layer("Dense", "d", [[[1.0], [1.0]], [0.0]])])
    model = convert(path)
    x = np.array([[[1.0], [3.0], [2.0], [0.0]]])
    contribs = run(model.get_target_contribs_func(find_scores_layer_idx=1, target_layer_idx=-1), x, [0.0])
    assert np.all(contribs == 0)
    mult = run(model.get_target_multipliers_func(find_scores_layer_idx=1, target_layer_idx=-1), x, [0.0])
    np.testing.assert_allclose(mult, [[[1.0], [1.0]]])


def test_compat_equals_fastlift_where_the_original_has_no_quirk():
    path = os.path.join(FIXTURES, "bpnet.tfkeras.h5")
    model = convert(path, MODES.Rescale)
    with np.load(os.path.join(FIXTURES, "bpnet.npz")) as z:
        x = z["x0"] / 16
    ref = np.full((1, 1, 4), 0.25)
    f = model.get_target_contribs_func(find_scores_layer_name="sequence_0",
                                       pre_activation_target_layer_name="logcount_predictions_0")
    got = run(f, x, [ref])
    native = fl.deeplift(fl.load_model(path), x, ref, target_layer="logcount_predictions")
    np.testing.assert_allclose(got, native.contributions, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ API conventions


def test_sequential_names_and_default_target():
    model = convert(os.path.join(FIXTURES, "seq_mlp.tfkeras.h5"))
    assert [lay.name for lay in model.get_layers()] == ["input", "preact_1", "1", "2", "preact_3", "3", "preact_4",
                                                        "4"]
    assert model.get_layers()[-2].get_shape() == (None, 3)
    # the Keras 2.2.4 layout has no InputLayer entry: indices start at 0
    k224 = convert(os.path.join(FIXTURES, "seq_mlp.k224.h5"))
    assert [lay.name for lay in k224.get_layers()][:3] == ["input", "preact_0", "0"]
    nested = convert(os.path.join(FIXTURES, "seq_nested.tfkeras.h5"))
    assert "1-1" in [lay.name for lay in nested.get_layers()]


def test_nested_and_shared_functional_names():
    names = set(convert(os.path.join(FIXTURES, "nested_shared.tfkeras.h5")).get_name_to_layer())
    assert {"a_0", "b_0", "preact_shared_0", "shared_0", "shared_1", "inner_1_ibn_0", "preact_inner_2_idense_0",
            "block_1-1", "o1_0", "preact_o2_0"} <= names
    k3 = set(convert(os.path.join(FIXTURES, "nested_shared.keras")).get_name_to_layer())
    assert {"inner_0_ibn_0", "inner_1_idense_0"} <= k3


def test_reference_broadcasting_batches_lists_and_progress(capsys):
    model = convert(os.path.join(FIXTURES, "genomics_seq.tfkeras.h5"), MODES.DeepLIFT_GenomicsDefault)
    with np.load(os.path.join(FIXTURES, "genomics_seq.npz")) as z:
        x = z["x0"] / 16
    f = model.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=-2)
    flat = np.array([0.3, 0.2, 0.2, 0.3])
    a = f(task_idx=1, input_data_list=[x], input_references_list=[flat[None, None, :]], batch_size=3,
          progress_update=3)
    assert isinstance(a, list) and len(a) == len(x) and a[0].shape == x.shape[1:] and a[0].dtype == np.float32
    assert "Done 0\nDone 3" in capsys.readouterr().out
    b = run(f, [list(x)], [np.ones_like(x) * flat], task=1, batch_size=100)  # list rows, full refs
    np.testing.assert_allclose(np.array(a), b, rtol=1e-6, atol=1e-7)
    both = model.get_target_contribs_func(find_scores_layer_idx=[0, 1], target_layer_idx=-2)
    c, conv = both(task_idx=1, input_data_list=[x], input_references_list=[flat[None, None, :]], batch_size=10,
                   progress_update=None)
    np.testing.assert_allclose(np.array(c), b, rtol=1e-6, atol=1e-7)
    assert np.array(conv).shape == (len(x), 34, 6)


def test_bad_arguments(tmp_path):
    model = convert(os.path.join(FIXTURES, "dl_functional_concat.tfkeras.h5"))
    with pytest.raises(KeyError, match=r"'nope' is not a layer of the model"):
        model.get_target_contribs_func(find_scores_layer_name="nope", pre_activation_target_layer_name="dense1_0")
    f = model.get_target_contribs_func(find_scores_layer_name="inp1_0",
                                       pre_activation_target_layer_name="output_preact_0")
    x = np.zeros((2, 51, 10))
    with pytest.raises(KeyError, match=r"no entry for input\(s\) \['inp2_0'\]"):
        f(task_idx=0, input_data_list={"inp1_0": x}, batch_size=2, progress_update=None)
    with pytest.raises(ValueError, match=r"must hold 2 entries"):
        f(task_idx=0, input_data_list=[x], batch_size=2, progress_update=None)
    with pytest.raises(ValueError, match=r"does not broadcast|broadcasts to shape"):
        f(task_idx=0, input_data_list=[x, x], input_references_list=[np.zeros(3), 0], batch_size=2,
          progress_update=None)
    with pytest.raises(ValueError, match=r"batch_size must be a positive int"):
        f(task_idx=0, input_data_list=[x, x], batch_size=0, progress_update=None)
    with pytest.raises(ValueError, match=r"target must be in \[0, 1\)"):
        f(task_idx=3, input_data_list=[x, x], input_references_list=[0, 0], batch_size=2, progress_update=None)
    seq = convert(os.path.join(FIXTURES, "seq_mlp.tfkeras.h5"))
    with pytest.raises(IndexError, match=r"target_layer_idx=20 is out of range"):
        seq.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=20)
    with pytest.raises(NotImplementedError, match="yaml_file is not supported"):
        kc.convert_model_from_saved_files("x.h5", yaml_file="m.yaml")
    with pytest.raises(ValueError, match="nonlinear_mxts_mode must be one of"):
        convert(os.path.join(FIXTURES, "seq_mlp.tfkeras.h5"), "Fancy")
    with pytest.raises(ValueError, match="maxpool_deeplift_mode must be one of"):
        convert(os.path.join(FIXTURES, "seq_mlp.tfkeras.h5"), maxpool_deeplift_mode="scaled_gradient")
    with pytest.raises(NotImplementedError, match="custom_conversion_funcs"):
        convert(os.path.join(FIXTURES, "seq_mlp.tfkeras.h5"), custom_conversion_funcs={"X": print})
    with pytest.raises(TypeError, match="unexpected keyword"):
        convert(os.path.join(FIXTURES, "seq_mlp.tfkeras.h5"), nonlinear_mode="Rescale")
    with pytest.raises(NotImplementedError, match="Lambda"):
        convert(os.path.join(FIXTURES, "lambda_layer.tfkeras.h5"))


def test_layer_overrides_by_keras_index():
    path = os.path.join(FIXTURES, "genomics_seq.tfkeras.h5")
    model = convert(path, MODES.DeepLIFT_GenomicsDefault, layer_overrides={4: {"nonlinear_mxts_mode": "Gradient"}})
    modes = {lay.name: lay.nonlinear_mxts_mode for lay in model.get_layers() if getattr(lay, "nonlinear_mxts_mode",
                                                                                         None)}
    assert modes == {"1": "Rescale", "4": "Gradient", "6": "RevealCancel"}


def test_every_mode_runs_and_deeplift_modes_sum_to_delta():
    path = os.path.join(FIXTURES, "genomics_seq.tfkeras.h5")
    with np.load(os.path.join(FIXTURES, "genomics_seq.npz")) as z:
        x = z["x0"] / 16
    ref = np.full((1, 1, 4), 0.25)
    for mode in NonlinearMxtsMode.vals:
        model = convert(path, mode)
        c = run(model.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=-2), x, [ref], task=2)
        assert c.shape == x.shape and np.all(np.isfinite(c))
        if mode in (MODES.Rescale, MODES.RevealCancel, MODES.DeepLIFT_GenomicsDefault):
            fm = model.fastlift_model
            sub = fl.Model(fm.inputs, fm.get_node("dense_1"))
            d = sub.predict(x)[:, 2] - sub.predict(np.broadcast_to(ref, x.shape))[:, 2]
            np.testing.assert_allclose(c.sum(axis=(1, 2)), d, atol=2e-5)


# ------------------------------------------------------------------------- utilities


def test_dinuc_shuffle_preserves_dinucleotides_and_is_reproducible():
    rng = np.random.RandomState(0)
    seq = "".join(rng.choice(list("ACGT"), 200))
    shufs = dinuc_shuffle(seq, 5, rng=np.random.RandomState(1))
    count = lambda s: sorted(s[i:i + 2] for i in range(len(s) - 1))
    for s in shufs:
        assert count(s) == count(seq) and s[0] == seq[0] and s[-1] == seq[-1]
    assert shufs == dinuc_shuffle(seq, 5, rng=np.random.RandomState(1))
    assert len({*shufs}) == 5
    onehot = np.eye(4)[rng.randint(0, 4, 50)]
    onehot[7] = 0  # an N: an extra token
    out = dinuc_shuffle(onehot, 3, rng=np.random.RandomState(2))
    assert out.shape == (3, 50, 4) and out.dtype == onehot.dtype
    letters = lambda a: "".join("ACGTN"[t] for t in np.where(a.any(axis=1), a.argmax(axis=1), 4))
    for o in out:
        assert count(letters(o)) == count(letters(onehot))
    one = dinuc_shuffle(onehot, rng=np.random.RandomState(2))
    np.testing.assert_array_equal(one, out[0])
    with pytest.raises(ValueError, match="Expected string or one-hot encoded array"):
        dinuc_shuffle(np.zeros(5))


def test_integrated_gradients_function_matches_fastlift():
    path = os.path.join(FIXTURES, "genomics_seq.tfkeras.h5")
    with np.load(os.path.join(FIXTURES, "genomics_seq.npz")) as z:
        x = z["x0"] / 16
    grad_model = convert(path, MODES.Gradient)
    ig = util.get_integrated_gradients_function(
        grad_model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-2), 10)
    ref = np.array([0.3, 0.2, 0.2, 0.3])[None, None, :]
    got = ig(task_idx=0, input_data_list=[x], input_references_list=[ref], batch_size=50)
    native = fl.attribute(fl.load_model(path), x, "integrated_gradients", np.broadcast_to(ref, x.shape),
                          steps=10, target_layer="dense_1")
    np.testing.assert_allclose(got, native.contributions, rtol=1e-4, atol=1e-6)


def test_hypothetical_and_shuffled_reference_wrappers_match_fastlift():
    path = os.path.join(FIXTURES, "genomics_seq.tfkeras.h5")
    with np.load(os.path.join(FIXTURES, "genomics_seq.npz")) as z:
        x = (z["x0"] // 16).astype(np.float64)
    model = convert(path, MODES.Rescale)
    mult_func = model.get_target_multipliers_func(find_scores_layer_idx=0, target_layer_idx=-2)
    hyp_func = util.get_shuffle_seq_ref_function(util.get_hypothetical_contribs_func_onehot(mult_func),
                                                 shuffle_func=dinuc_shuffle)
    got = hyp_func(task_idx=[0, 2], input_data_sequences=x, num_refs_per_seq=4, batch_size=16, seed=3)
    assert isinstance(got, list) and len(got) == 2
    rng = np.random.RandomState(3)
    refs = np.stack([np.stack([dinuc_shuffle(s, rng=rng) for _ in range(4)]) for s in x])
    for task, g in zip((0, 2), got):
        native = fl.deeplift(fl.load_model(path), x, refs, target=task, target_layer="dense_1", hypothetical=True,
                             max_pool="gradient")
        np.testing.assert_allclose(g, native.hypothetical, rtol=1e-5, atol=1e-6)
        # at the present base the hypothetical score is the contribution
        contrib = fl.deeplift(fl.load_model(path), x, refs, target=task, target_layer="dense_1",
                              max_pool="gradient").contributions
        np.testing.assert_allclose((g * x).sum(-1), contrib.sum(-1), atol=1e-5)


def test_run_function_in_batches():
    out = util.run_function_in_batches(lambda b: [b[0] * 2], [np.arange(5)], batch_size=2, progress_update=None,
                                       multimodal_output=True)
    assert [list(o) for o in out] == [[0, 2, 4, 6, 8]]
    assert util.run_function_in_batches(lambda b: b[0] + 1, [np.arange(3)], batch_size=2,
                                        progress_update=None) == [1, 2, 3]
    with pytest.raises(TypeError, match="input_data_list must be a list"):
        util.run_function_in_batches(lambda b: b, np.arange(3))
