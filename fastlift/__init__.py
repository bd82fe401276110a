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
    """Directory of fastlift's C headers (``fl_math.h``, ``fl_kernels.h``) for C/Cython extensions.

    Works from a source checkout (``csrc/``) and from an installed wheel (``fastlift/include``).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.path.join(os.path.dirname(here), "csrc")
    if os.path.isfile(os.path.join(source, "fl_math.h")):
        return source
    return os.path.join(here, "include")
