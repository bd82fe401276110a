"""fastlift: fast DeepLIFT and gradient attributions.

>>> import fastlift as fl
>>> res = fl.deeplift(model, X, references, rule="rescale")
>>> res.contributions.shape == X.shape
"""

from __future__ import annotations

import os

from . import layers, references
from .explain import Attributions, attribute, deeplift
from .explainer import Explainer
from .genomics import dinuc_shuffle
from .io import from_keras, load_model
from .model import Model

__version__ = "0.1.0"

__all__ = [
    "Attributions",
    "Explainer",
    "Model",
    "__version__",
    "attribute",
    "deeplift",
    "dinuc_shuffle",
    "from_keras",
    "get_include",
    "layers",
    "load_model",
    "references",
]


def get_include() -> str:
    """Directory of fastlift's C API for C/Cython extensions: ``fastlift.h`` and its Cython
    declarations ``fastlift_capi.pxd``; pass it as the C include path and as Cython's.

    A source checkout or an editable install reads the top-level ``csrc/`` in place (checked
    first); an installed wheel has them as ``fastlift/include`` (pyproject.toml maps one onto
    the other).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.join(os.path.dirname(here), "csrc")
    if os.path.isfile(os.path.join(checkout, "fastlift.h")):  # the sources themselves, never a stale copy
        return checkout
    return os.path.join(here, "include")
