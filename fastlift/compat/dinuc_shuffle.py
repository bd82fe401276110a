"""deeplift 0.6's ``deeplift.dinuc_shuffle``, pure numpy.

Given the same ``numpy.random.RandomState``, `dinuc_shuffle` returns exactly what the
original returns: it makes the same ``rng.permutation`` calls in the same order (per
shuffle, one for every token in sorted order), and, like the original, each shuffle
permutes the previous shuffle's successor lists.

For the fast seeded, parallel, exact shuffles of many sequences use
``fastlift.dinuc_shuffle`` (a different random stream: not interchangeable with this one).
"""

from __future__ import annotations

import numpy as np

__all__ = ["char_array_to_string", "dinuc_shuffle", "one_hot_to_tokens", "string_to_char_array",
           "tokens_to_one_hot"]


def string_to_char_array(seq):
    """ASCII string -> int8 array of byte codes ("ACGT" -> [65, 67, 71, 84])."""
    return np.frombuffer(bytearray(seq, "utf8"), dtype=np.int8)


def char_array_to_string(arr):
    """Inverse of `string_to_char_array`."""
    return np.asarray(arr, dtype=np.int8).tobytes().decode("ascii")


def one_hot_to_tokens(one_hot):
    """(L, D) one-hot -> L tokens in [0, D]; an all-zero row is token D."""
    tokens = np.full(one_hot.shape[0], one_hot.shape[1])
    rows, cols = np.nonzero(one_hot)
    tokens[rows] = cols
    return tokens


def tokens_to_one_hot(tokens, one_hot_dim):
    """L tokens in [0, D] -> (L, D) one-hot; token D becomes an all-zero row."""
    return np.identity(one_hot_dim + 1)[:, :-1][tokens]


def dinuc_shuffle(seq, num_shufs=None, rng=None):
    """Shuffles of ``seq`` that keep its exact dinucleotide counts (and first/last letters).

    Parameters
    ----------
    seq : str or array, shape=(L, D)
        A string, or a one-hot array (all-zero rows are an extra letter).
    num_shufs : int, optional
        Number of shuffles; None returns a single shuffle (no leading axis / not a list).
    rng : numpy.random.RandomState, optional
        Default: a fresh, unseeded RandomState (as the original).

    Returns
    -------
    str or list of str; or array, shape=(L, D) or (num_shufs, L, D), of ``seq``'s dtype.
    """
    if isinstance(seq, str):
        arr = string_to_char_array(seq)
    elif isinstance(seq, np.ndarray) and seq.ndim == 2:
        seq_len, one_hot_dim = seq.shape
        arr = one_hot_to_tokens(seq)
    else:
        raise ValueError("Expected string or one-hot encoded array")
    if num_shufs is not None and (isinstance(num_shufs, bool) or not isinstance(num_shufs, (int, np.integer))
                                  or num_shufs < 1):
        raise ValueError(f"num_shufs must be a positive int or None; got {num_shufs!r}")
    if not rng:
        rng = np.random.RandomState()
    chars, tokens = np.unique(arr, return_inverse=True)
    tokens = tokens.reshape(-1)
    # successors[t]: positions that follow an occurrence of token t (the last letter has none)
    successors = [np.nonzero(tokens[:-1] == t)[0] + 1 for t in range(len(chars))]
    n = num_shufs if num_shufs else 1
    results = [] if isinstance(seq, str) else np.empty((n, seq_len, one_hot_dim), dtype=seq.dtype)
    for i in range(n):
        for t in range(len(chars)):
            order = np.arange(len(successors[t]))
            order[:-1] = rng.permutation(len(order) - 1)  # the last successor stays last: a valid walk
            successors[t] = successors[t][order]
        used = [0] * len(chars)
        out = np.empty_like(tokens)
        pos = 0
        out[0] = tokens[0]
        for j in range(1, len(tokens)):
            t = tokens[pos]
            pos = successors[t][used[t]]
            used[t] += 1
            out[j] = tokens[pos]
        if isinstance(seq, str):
            results.append(char_array_to_string(chars[out]))
        else:
            results[i] = tokens_to_one_hot(chars[out], one_hot_dim)
    return results if num_shufs else results[0]
