"""A deeplift 0.6 script (the genomics notebook's flow) runs unchanged through
fastlift.compat once its import lines are swapped, and prints the numbers fastlift's own
API computes for the same model, references and tasks."""

import os
import subprocess
import sys

import numpy as np

import fastlift as fl
from fastlift.compat.dinuc_shuffle import dinuc_shuffle

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "fixtures", "keras", "genomics_seq.k224.h5")

# Written against deeplift 0.6 (kundajelab/deeplift examples/genomics), untouched below the imports.
DEEPLIFT_SCRIPT = '''
import sys
import numpy as np
import deeplift
from deeplift.layers import NonlinearMxtsMode
from deeplift.conversion import kerasapi_conversion as kc
from deeplift.util import get_shuffle_seq_ref_function, get_hypothetical_contribs_func_onehot
from deeplift.util import get_integrated_gradients_function
from deeplift.dinuc_shuffle import dinuc_shuffle

model_file, onehot_file, out_file = sys.argv[1:4]
onehot_data = np.load(onehot_file)

method_to_model = {}
for method_name, nonlinear_mxts_mode in [
        ("rescale_conv_revealcancel_fc", NonlinearMxtsMode.DeepLIFT_GenomicsDefault),
        ("rescale_all_layers", NonlinearMxtsMode.Rescale),
        ("revealcancel_all_layers", NonlinearMxtsMode.RevealCancel),
        ("grad_times_inp", NonlinearMxtsMode.Gradient),
        ("guided_backprop", NonlinearMxtsMode.GuidedBackprop)]:
    method_to_model[method_name] = kc.convert_model_from_saved_files(
        h5_file=model_file, nonlinear_mxts_mode=nonlinear_mxts_mode, verbose=False)

method_to_scoring_func = {}
for method, model in method_to_model.items():
    method_to_scoring_func[method] = model.get_target_contribs_func(find_scores_layer_idx=0, target_layer_idx=-2)
gradient_func = method_to_model["grad_times_inp"].get_target_multipliers_func(
    find_scores_layer_idx=0, target_layer_idx=-2)
method_to_scoring_func["integrated_gradients_10"] = get_integrated_gradients_function(gradient_func, 10)

background = np.array([0.3, 0.2, 0.2, 0.3])
method_to_task_to_scores = {}
for method_name, score_func in method_to_scoring_func.items():
    method_to_task_to_scores[method_name] = {}
    for task_idx in [0, 1, 2]:
        scores = np.array(score_func(task_idx=task_idx, input_data_list=[onehot_data],
                                     input_references_list=[background[None, None, :]],
                                     batch_size=200, progress_update=None))
        method_to_task_to_scores[method_name][task_idx] = np.sum(scores, axis=2)
        print(method_name, task_idx, "%.6f" % scores.sum())

multipliers_func = method_to_model["rescale_conv_revealcancel_fc"].get_target_multipliers_func(
    find_scores_layer_idx=0, target_layer_idx=-2)
hypothetical_func = get_hypothetical_contribs_func_onehot(multipliers_func)
shuffled_hyp = get_shuffle_seq_ref_function(score_computation_function=hypothetical_func,
                                            shuffle_func=dinuc_shuffle)
hyp = shuffled_hyp(task_idx=[0, 1, 2], input_data_sequences=onehot_data, num_refs_per_seq=5,
                   batch_size=200, seed=1, progress_update=None)
np.savez(out_file, rescale_all_layers_task1=method_to_task_to_scores["rescale_all_layers"][1],
         grad_task0=method_to_task_to_scores["grad_times_inp"][0],
         ig_task2=method_to_task_to_scores["integrated_gradients_10"][2], hyp0=hyp[0], hyp2=hyp[2])
'''


def swap_imports(script):
    """The only edit a user makes: ``deeplift`` -> ``fastlift.compat`` in import lines."""
    out = []
    for line in script.splitlines():
        if line.startswith(("import deeplift", "from deeplift")):
            line = line.replace("deeplift", "fastlift.compat", 1)
            if line == "import fastlift.compat":
                line = "import fastlift.compat as deeplift"
        out.append(line)
    return "\n".join(out)


def test_genomics_notebook_script_runs_unchanged(tmp_path):
    x = (np.load(os.path.join(HERE, "fixtures", "keras", "genomics_seq.npz"))["x0"] // 16).astype(np.float32)
    np.save(tmp_path / "onehot.npy", x)
    script = tmp_path / "script.py"
    script.write_text(swap_imports(DEEPLIFT_SCRIPT))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script), MODEL, str(tmp_path / "onehot.npy"), str(tmp_path / "o.npz")],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("\n") >= 18  # 6 methods x 3 tasks printed
    out = np.load(tmp_path / "o.npz")

    model = fl.load_model(MODEL)
    target = model.default_target().name
    bg = np.array([0.3, 0.2, 0.2, 0.3])[None, None, :]
    common = {"target_layer": target, "max_pool": "gradient"}
    rescale = fl.deeplift(model, x, bg, rule="rescale", target=1, **common).contributions
    np.testing.assert_allclose(out["rescale_all_layers_task1"], rescale.sum(-1), rtol=1e-5, atol=1e-6)
    grad = fl.attribute(model, x, "grad_x_input", target=0, target_layer=target).contributions
    np.testing.assert_allclose(out["grad_task0"], (grad - fl.attribute(
        model, x, "gradient", target=0, target_layer=target).multipliers * bg).sum(-1), rtol=1e-5, atol=1e-6)
    ig = fl.attribute(model, x, "integrated_gradients", np.broadcast_to(bg, x.shape), steps=10, target=2,
                      target_layer=target).contributions
    np.testing.assert_allclose(out["ig_task2"], ig.sum(-1), rtol=1e-4, atol=1e-6)
    rng = np.random.RandomState(1)
    refs = np.stack([np.stack([dinuc_shuffle(s, rng=rng) for _ in range(5)]) for s in x])
    for task in (0, 2):
        # genomics_default = rescale after the conv, reveal_cancel after the dense layer; away from the
        # original's near-zero pseudocount the two agree
        hyp = fl.deeplift(model, x, refs, rule="genomics_default", target=task, hypothetical=True,
                          **common).hypothetical
        np.testing.assert_allclose(out[f"hyp{task}"], hyp, rtol=1e-4, atol=1e-5)
