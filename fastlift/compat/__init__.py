"""Drop-in replacement for the ``deeplift`` 0.6 package's user API, running on fastlift.

Change the imports and nothing else::

    # from deeplift.conversion import kerasapi_conversion as kc
    # from deeplift.layers import NonlinearMxtsMode
    # from deeplift.util import get_shuffle_seq_ref_function
    # from deeplift.dinuc_shuffle import dinuc_shuffle
    from fastlift.compat.conversion import kerasapi_conversion as kc
    from fastlift.compat.layers import NonlinearMxtsMode
    from fastlift.compat.util import get_shuffle_seq_ref_function
    from fastlift.compat.dinuc_shuffle import dinuc_shuffle

Names, defaults (``nonlinear_mxts_mode=DeepLIFT_GenomicsDefault``, ``target_layer_idx=-2``),
layer naming and return types are the original's; so are its numbers, quirks included
(listed in `fastlift.compat.layers`). No TensorFlow is needed.
"""

from . import blobs, conversion, dinuc_shuffle, layers, models, util

__all__ = ["blobs", "conversion", "dinuc_shuffle", "layers", "models", "util"]
