"""deeplift 0.6's ``deeplift.util``: batching, integrated gradients, hypothetical
contributions and shuffled-reference wrappers, with the original's signatures.

These are thin numpy wrappers around the functions a converted model returns; they
behave as the original (midpoint-rule integrated gradients for one input, hypothetical
scores for one-hot input, references averaged per sequence), so numbers match.
"""

from __future__ import annotations

import numpy as np

from .layers import NEAR_ZERO_THRESHOLD, _Enum

__all__ = ["NEAR_ZERO_THRESHOLD", "enum", "get_hypothetical_contribs_func_onehot", "get_integrated_gradients_function",
           "get_shuffle_seq_ref_function", "mean_normalise_weights_for_sequence_convolution",
           "run_function_in_batches"]


def enum(**values):
    """String constants as attributes (``enum(a="a").a == "a"``), with ``vals``."""
    return _Enum(**values)


def run_function_in_batches(func, input_data_list, learning_phase=None, batch_size=10, progress_update=1000,
                            multimodal_output=False):
    """Call ``func([x[i:i+batch_size] for x in input_data_list])`` batch by batch.

    Prints ``Done i`` every ``progress_update`` examples (None: silent). Returns a list of
    per-example results (``multimodal_output=True``: a list of such lists, one per output).
    """
    if not isinstance(input_data_list, list):
        raise TypeError("input_data_list must be a list")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    to_return = []
    i = 0
    while i < len(input_data_list[0]):
        if progress_update is not None and i % progress_update == 0:
            print("Done", i)
        batch = [x[i:i + batch_size] for x in input_data_list] + ([] if learning_phase is None else [learning_phase])
        out = func(batch)
        if multimodal_output:
            if not isinstance(out, list):
                raise TypeError("multimodal_output=True yet function return value is not a list")
            if not to_return:
                to_return = [[] for _ in out]
            for acc, part in zip(to_return, out):
                acc.extend(part)
        else:
            to_return.extend(out)
        i += batch_size
    return to_return


def get_integrated_gradients_function(gradient_computation_function, num_intervals):
    """Integrated gradients from a gradient function (a ``Gradient``-mode model's
    ``get_target_multipliers_func``): ``(x - ref) * mean of the gradient at
    ref + (i + 0.5)/num_intervals * (x - ref)``, i = 0 .. num_intervals-1. One input only.

    Returns ``f(task_idx, input_data_list, input_references_list, batch_size,
    progress_update=None)`` -> array shaped like the input.
    """
    if isinstance(num_intervals, bool) or not isinstance(num_intervals, (int, np.integer)) or num_intervals < 1:
        raise ValueError(f"num_intervals must be a positive int; got {num_intervals!r}")

    def compute_integrated_gradients(task_idx, input_data_list, input_references_list, batch_size,
                                     progress_update=None):
        if len(input_data_list) != 1 or len(input_references_list) != 1:
            raise ValueError("integrated gradients supports models with one input (as the original); got "
                             f"{len(input_data_list)} input(s)")
        x = np.asarray(input_data_list[0])
        ref = np.ones_like(x) * input_references_list[0]
        vectors = x - ref
        steps = [(ref + vectors / float(num_intervals) * (i + 0.5)) for i in range(num_intervals)]
        # example-major: all steps of example 0, then of example 1, ...
        points = np.stack(steps, axis=1).reshape((-1,) + x.shape[1:])
        refs = np.repeat(ref, num_intervals, axis=0)
        grads = np.array(gradient_computation_function(task_idx=task_idx, input_data_list=[points],
                                                       input_references_list=[refs], batch_size=batch_size,
                                                       progress_update=progress_update))
        grads = grads.reshape((x.shape[0], num_intervals) + x.shape[1:])
        return grads.mean(axis=1) * vectors

    return compute_integrated_gradients


def get_hypothetical_contribs_func_onehot(multipliers_function):
    """Hypothetical contributions for one-hot sequence input (TF-MoDISco's input).

    For each position l and each possible base i: ``Σ_c (e_i - ref)[l, c] * mult[l, c]``,
    with the multipliers computed on the actual input. The first input must be
    ``(n, length, channels)``.

    Returns ``f(task_idx, input_data_list, input_references_list, batch_size,
    progress_update)`` -> array ``(n, length, channels)``.
    """

    def hypothetical_contribs_func(task_idx, input_data_list, input_references_list, batch_size, progress_update):
        x = np.asarray(input_data_list[0])
        if x.ndim != 3:
            raise ValueError(f"hypothetical contributions need one-hot input of shape (n, length, channels); got "
                             f"{x.shape}")
        mult = np.asarray(multipliers_function(task_idx=task_idx, input_data_list=input_data_list,
                                               input_references_list=input_references_list, batch_size=batch_size,
                                               progress_update=progress_update))
        ref = np.array(input_references_list[0])
        out = np.zeros_like(x).astype("float")
        for i in range(x.shape[-1]):
            hyp = np.zeros_like(x).astype("float")
            hyp[:, :, i] = 1.0
            out[:, :, i] = np.sum((hyp - ref) * mult, axis=-1)
        return out

    return hypothetical_contribs_func


def get_shuffle_seq_ref_function(score_computation_function, shuffle_func, one_hot_func=None):
    """Scores averaged over shuffled references (e.g. ``shuffle_func=dinuc_shuffle``).

    Returns ``f(task_idx, input_data_sequences, num_refs_per_seq, batch_size, seed=1,
    progress_update=None, pregen_refs=None)``: for each sequence, ``num_refs_per_seq``
    references ``shuffle_func(seq, rng=rng)`` with ``rng = RandomState(seed)``; scores of
    every (sequence, reference) pair averaged per sequence. ``task_idx`` may be a list
    (the references are reused; a list of results is returned). Sequences are strings
    (with ``one_hot_func``) or one-hot arrays.
    """

    def compute_scores_with_shuffle_seq_refs(task_idx, input_data_sequences, num_refs_per_seq, batch_size, seed=1,
                                             progress_update=None, pregen_refs=None):
        rng = np.random.RandomState(seed)
        if pregen_refs is None:
            seqs, refs = [], []
            generated = 0
            for seq in input_data_sequences:
                for _ in range(num_refs_per_seq):
                    generated += 1
                    if progress_update is not None and generated % progress_update == 0:
                        print(str(generated) + " reference seqs generated")
                    if isinstance(seq, np.ndarray):
                        seq = seq.squeeze()
                    seqs.append(seq)
                    refs.append(shuffle_func(seq, rng=rng))
        else:
            seqs = [seq for seq in input_data_sequences for _ in range(num_refs_per_seq)]
            if len(pregen_refs) != len(seqs):
                raise ValueError(f"pregen_refs must hold {len(seqs)} references (num_refs_per_seq per sequence); "
                                 f"got {len(pregen_refs)}")
            refs = pregen_refs
        if one_hot_func is not None:
            if progress_update is not None:
                print("One hot encoding sequences...")
            input_data_list = [one_hot_func(seqs)]
            input_references_list = [one_hot_func(refs)]
            if progress_update is not None:
                print("One hot encoding done...")
        else:
            shape = list(np.shape(input_data_sequences))
            shape[0] *= num_refs_per_seq
            input_data_list = [np.reshape(np.asarray(seqs), shape)]
            input_references_list = [np.reshape(np.asarray(refs), shape)]
        tasks = task_idx if hasattr(task_idx, "__iter__") else [task_idx]
        scores = []
        for task in tasks:
            s = np.array(score_computation_function(task_idx=task, input_data_list=input_data_list,
                                                    input_references_list=input_references_list,
                                                    batch_size=batch_size, progress_update=progress_update))
            s = s.reshape([len(input_data_sequences), num_refs_per_seq] + list(input_data_list[0].shape[1:]))
            scores.append(np.mean(s, axis=1))
        return scores if hasattr(task_idx, "__iter__") else scores[0]

    return compute_scores_with_shuffle_seq_refs


def mean_normalise_weights_for_sequence_convolution(weights, bias, axis_of_normalisation, dim_ordering):
    """Subtract the mean over the one-hot axis from conv weights and add it to the bias
    (``dim_ordering`` 'tf': output channels last; 'th': first)."""
    mean = np.mean(weights, axis=axis_of_normalisation)
    if dim_ordering == "th":
        new_bias = bias + np.sum(np.sum(mean, axis=1), axis=1)
    elif dim_ordering == "tf":
        new_bias = bias + np.sum(np.sum(mean, axis=0), axis=0)
    else:
        raise RuntimeError("Unsupported dim ordering " + str(dim_ordering))
    return weights - np.expand_dims(mean, axis_of_normalisation), new_bias
