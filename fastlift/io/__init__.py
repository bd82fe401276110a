"""Reading model files: the only package that opens them (and the only one importing h5py).

>>> import fastlift as fl
>>> model = fl.load_model("model.h5")   # Keras 2 / tf.keras .h5, Keras 3 .keras
"""

from .errors import ModelFileError
from .loader import load_model

__all__ = ["ModelFileError", "load_model"]
