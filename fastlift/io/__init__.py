"""Reading model files: the only package that opens them (and the only one importing h5py).

>>> import fastlift as fl
>>> model = fl.load_model("model.h5")   # Keras 0.x to 3 .h5, Keras 3 .keras
>>> model = fl.from_keras(keras_model)  # a live Keras model object (Keras is never imported)
"""

from .errors import ModelFileError
from .live import from_keras
from .loader import load_model

__all__ = ["ModelFileError", "from_keras", "load_model"]
