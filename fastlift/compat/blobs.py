"""deeplift 0.5's ``deeplift.blobs`` (the Theano-era name of ``deeplift.layers``): the mode
enums, so that ``from deeplift.blobs import NonlinearMxtsMode`` becomes
``from fastlift.compat.blobs import NonlinearMxtsMode``. A converted model's layers are
listed by ``get_name_to_blob()`` (graph models) and ``get_layers()`` (sequential).

0.5 named the Rescale rule ``DeepLIFT`` (and ``GuidedBackpropDeepLIFT``); those names are
here, with the values of the modes 0.6 renamed them to."""

from .layers import ConvMxtsMode, DenseMxtsMode, MaxPoolDeepLiftMode, ScoringMode, _Enum
from .layers import NonlinearMxtsMode as _Modes06

NonlinearMxtsMode = _Enum(**_Modes06.the_dict, DeepLIFT=_Modes06.Rescale,
                          GuidedBackpropDeepLIFT=_Modes06.GuidedBackpropRescale)

__all__ = ["ConvMxtsMode", "DenseMxtsMode", "MaxPoolDeepLiftMode", "NonlinearMxtsMode", "ScoringMode"]
