"""deeplift 0.6's ``deeplift.conversion``: ``from fastlift.compat.conversion import kerasapi_conversion as kc``."""

from . import keras_conversion, kerasapi_conversion

__all__ = ["keras_conversion", "kerasapi_conversion"]
