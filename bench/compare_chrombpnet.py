"""fastlift against ChromBPNet's own interpretation path, same model, references and threads.

ChromBPNet scores a region with kundajelab-shap's ``TFDeepExplainer`` on TensorFlow (the code
behind ``chrombpnet contribs_bw``): one explainer per head (counts: the summed log-counts;
profile: ``shap_utils.get_weightedsum_meannormed_logits``), 20 dinucleotide-shuffled
references per region, hypothetical scores through ``combine_mult_and_diffref``. This script
times that path and fastlift (``target="profile_chrombpnet"`` and the counts unit, one head per
session, then both heads in one session) on ChromBPNet's BPNet at its published size (2114 bp,
64 filters, 8 dilated residual layers, 1000 bp profile + counts heads; random weights), on the
same regions and references (fastlift's seeded dinucleotide shuffles, handed to shap), with the
same number of threads, in one run. It also checks that the two agree.

fastlift's side runs in ``--rounds`` rounds (fresh sessions each: nothing memoised carries over),
half before TensorFlow's run and half after it; seconds per region are the rounds' mean. A round
takes about a sixth of TensorFlow's time, so on a shared host one round alone catches more or
less of a burst of other load than TensorFlow's longer window does; the rounds on both sides of
it even that out. Each round's figure is kept in the JSON (``*_s_per_region_rounds``).

TensorFlow lives in a side environment (see tests/fixtures/genomics_parity/make_fixtures.py)::

    python bench/compare_chrombpnet.py --tf-python /work/sidevenvs/genomics-tf/bin/python \\
        --threads 2 --regions 8 --json bench/results/chrombpnet_threads2.json

The TensorFlow part runs in a subprocess of that Python (``--tf-worker``); the model is built
there once (``WORKDIR/bpnet.h5``) and loaded by fastlift from the same file. Each side scores
one warm-up region first (graph building, weight packing), then the timed regions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZE = {"inputlen": 2114, "outputlen": 1000, "filters": 64, "n_dil_layers": 8}
PROFILE, COUNTS = "logits_profile_predictions", "logcount_predictions"


# ------------------------------------------------------------------ TensorFlow side
def tf_worker(workdir, threads, build_only):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.keras.backend.set_session(tf.compat.v1.Session(config=tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)))
    import shap
    from chrombpnet.evaluation.interpret import shap_utils
    from tensorflow.keras.backend import int_shape
    from tensorflow.keras.layers import Conv1D, Cropping1D, Dense, Flatten, GlobalAvgPool1D, Input, add

    path = os.path.join(workdir, "bpnet.h5")
    if not os.path.exists(path):  # chrombpnet/training/models/bpnet_model.py at its published size
        p = SIZE
        inp = Input(shape=(p["inputlen"], 4), name="sequence")
        x = Conv1D(p["filters"], kernel_size=21, padding="valid", activation="relu", name="bpnet_1st_conv")(inp)
        for i in range(1, p["n_dil_layers"] + 1):
            conv_x = Conv1D(p["filters"], kernel_size=3, padding="valid", activation="relu", dilation_rate=2**i,
                            name=f"bpnet_{i}conv")(x)
            x = Cropping1D((int_shape(x)[1] - int_shape(conv_x)[1]) // 2, name=f"bpnet_{i}crop")(x)
            x = add([conv_x, x])
        prof = Conv1D(filters=1, kernel_size=75, padding="valid", name="prof_out_precrop")(x)
        prof = Cropping1D(int(int_shape(prof)[1] / 2) - int(p["outputlen"] / 2),
                          name="logits_profile_predictions_preflatten")(prof)
        model = tf.keras.Model(inputs=[inp], outputs=[Flatten(name=PROFILE)(prof),
                                                      Dense(1, name=COUNTS)(GlobalAvgPool1D(name="gap")(x))])
        rng = np.random.default_rng(0)
        model.set_weights([rng.normal(scale=1.5 / np.sqrt(np.prod(w.shape[:-1])) if w.ndim > 1 else 0.1,
                                      size=w.shape).astype(np.float32) for w in model.get_weights()])
        model.save(path)
    if build_only:
        return
    model = tf.keras.models.load_model(path, compile=False)
    data = np.load(os.path.join(workdir, "data.npz"))
    X, refs = data["X"].astype(np.float32), data["refs"].astype(np.float32)
    current = {}

    def references(s):  # the region being explained: shap passes its sequence
        return [refs[current["i"]]]

    out = {"tensorflow": tf.__version__, "threads": threads}
    heads = {"counts": tf.reduce_sum(model.outputs[1], axis=-1),
             "profile": shap_utils.get_weightedsum_meannormed_logits(model)}
    for name, tensor in heads.items():
        explainer = shap.explainers.deep.TFDeepExplainer((model.input, tensor), references,
                                                         combine_mult_and_diffref=shap_utils.combine_mult_and_diffref)
        hyp = []
        for i in range(len(X)):
            current["i"] = i
            t0 = time.perf_counter()
            hyp.append(explainer.shap_values(X[i:i + 1])[0])
            if i == 0:
                out[f"{name}_warmup_s"] = time.perf_counter() - t0
                t_start = time.perf_counter()
        out[f"{name}_s_per_region"] = (time.perf_counter() - t_start) / (len(X) - 1)
        np.save(os.path.join(workdir, f"tf_{name}.npy"), np.array(hyp))
    with open(os.path.join(workdir, "tf.json"), "w") as f:
        json.dump(out, f)


# -------------------------------------------------------------------- fastlift side
def fastlift_side(workdir, threads, X, refs):
    """One round: each head's session (and both heads') scores the warm-up region, then the timed
    ones. Returns the seconds per region of each and the hypothetical scores."""
    import fastlift as fl

    model = fl.load_model(os.path.join(workdir, "bpnet.h5"))
    runs = {"counts": (0, COUNTS), "profile": ("profile_chrombpnet", PROFILE),
            "both": (["profile_chrombpnet", 0], [PROFILE, COUNTS])}
    out, hyp = {}, {}
    for name, (target, layer) in runs.items():
        with fl.Explainer(model, target=target, target_layer=layer, n_threads=threads) as ex:
            t0 = time.perf_counter()
            ex.deeplift(X[:1], refs[:1], hypothetical=True)  # warm-up: weights packed, programs built
            out[f"{name}_warmup_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = [ex.deeplift(X[i:i + 1], refs[i:i + 1], hypothetical=True) for i in range(1, len(X))]
            out[f"{name}_s_per_region"] = (time.perf_counter() - t0) / (len(X) - 1)
            first = ex.deeplift(X[:1], refs[:1], hypothetical=True)
        hyp[name] = np.concatenate([first.hypothetical] + [r.hypothetical for r in res], axis=-3)  # regions
        if name == "both":
            out["max_abs_delta_both"] = float(max(np.abs(r.deltas[1]).max() for r in res))
    return out, hyp


def pooled(rounds):
    """The rounds' figures in one dict: seconds per region averaged over rounds (each round's kept
    under ``*_rounds``), warm-ups and deltas of the first round, the largest delta of all."""
    out = dict(rounds[0])
    for key in rounds[0]:
        if key.endswith("_s_per_region"):
            out[key + "_rounds"] = [r[key] for r in rounds]
            out[key] = float(np.mean(out[key + "_rounds"]))
    out["max_abs_delta_both"] = max(r["max_abs_delta_both"] for r in rounds)
    return out


def machine_load():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tf-python", help="a Python with TensorFlow, kundajelab-shap and chrombpnet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--regions", type=int, default=8, help="regions scored (the first is the warm-up)")
    parser.add_argument("--refs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4,
                        help="fastlift's timed rounds, half before TensorFlow's run and half after "
                             "(a round takes ~1/6 of TensorFlow's time: a short window catches more of "
                             "a shared host's bursts); the mean is reported, each round kept")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--tf-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tf_worker:
        return tf_worker(args.workdir, args.threads, args.build_only)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1; got {args.rounds}")
    if not args.tf_python:
        parser.error("--tf-python is needed (the TensorFlow side runs there)")
    workdir = args.workdir or tempfile.mkdtemp(prefix="fl-chrombpnet-")
    os.makedirs(workdir, exist_ok=True)
    here = os.path.abspath(__file__)
    worker = [args.tf_python, here, "--tf-worker", "--workdir", workdir, "--threads", str(args.threads)]
    subprocess.run(worker + ["--build-only"], check=True)

    import fastlift as fl

    rng = np.random.default_rng(1)
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(args.regions, SIZE["inputlen"]))]
    refs = fl.dinuc_shuffle(X, args.refs, seed=0).astype(np.float32)
    np.savez(os.path.join(workdir, "data.npz"), X=X.astype(np.uint8), refs=refs.astype(np.uint8))

    load_before = machine_load()
    rounds, hyp = [], None
    for _ in range((args.rounds + 1) // 2):  # fastlift's rounds before TensorFlow's run ...
        out, h = fastlift_side(workdir, args.threads, X, refs)
        rounds.append(out)
        hyp = hyp or h
    t0 = time.perf_counter()
    subprocess.run(worker, check=True)
    tf_wall = time.perf_counter() - t0
    for _ in range(args.rounds // 2):  # ... and after it: the host's drift falls on both sides
        rounds.append(fastlift_side(workdir, args.threads, X, refs)[0])
    ours = pooled(rounds) | {"threads": args.threads, "rounds": args.rounds}
    with open(os.path.join(workdir, "tf.json")) as f:
        theirs = json.load(f)
    load_after = machine_load()

    agree = {}
    for name, t in (("counts", 0), ("profile", 0)):
        ref = np.load(os.path.join(workdir, f"tf_{name}.npy"))
        agree[name] = float(np.abs(hyp[name] - ref).max() / np.abs(ref).max())
        agree[f"{name}_in_both"] = float(np.abs(hyp["both"][0 if name == "profile" else 1] - ref).max()
                                         / np.abs(ref).max())
    tf_both = theirs["counts_s_per_region"] + theirs["profile_s_per_region"]
    result = {"size": SIZE, "regions_timed": args.regions - 1, "refs": args.refs, "threads": args.threads,
              "fastlift": ours, "kundajelab_shap": theirs, "tf_subprocess_wall_s": tf_wall,
              "speedup": {"counts": theirs["counts_s_per_region"] / ours["counts_s_per_region"],
                          "profile": theirs["profile_s_per_region"] / ours["profile_s_per_region"],
                          "both_heads": tf_both / ours["both_s_per_region"]},
              "max_rel_difference_hypothetical": agree, "loadavg_before": load_before, "loadavg_after": load_after}
    print(f"ChromBPNet BPNet {SIZE['inputlen']} bp, {SIZE['filters']} filters, {SIZE['n_dil_layers']} dilated "
          f"layers; {args.refs} refs; {args.threads} threads; {args.regions - 1} regions timed")
    print(f"{'head':<10}{'fastlift s/region':>20}{'shap (TF) s/region':>22}{'speedup':>10}")
    for name in ("counts", "profile"):
        print(f"{name:<10}{ours[f'{name}_s_per_region']:>20.3f}{theirs[f'{name}_s_per_region']:>22.3f}"
              f"{result['speedup'][name]:>9.1f}x")
    print(f"{'both':<10}{ours['both_s_per_region']:>20.3f}{tf_both:>22.3f}{result['speedup']['both_heads']:>9.1f}x")
    print("max |difference| / max |score| (hypothetical):",
          ", ".join(f"{k} {v:.1e}" for k, v in agree.items()))
    print("fastlift both heads, each round (s/region): "
          + " ".join(f"{v:.3f}" for v in ours["both_s_per_region_rounds"]))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
