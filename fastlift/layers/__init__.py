"""Layers for building fastlift models in code (the Keras loader builds the same ones).

Every layer takes its weights in Keras layout as numpy arrays; calling a layer on
node(s) returns a new `Node`.
"""

from .base import Layer, Node
from .conv import Conv1D, Conv2D, Convolution, Cropping1D, Cropping2D, ZeroPadding1D, ZeroPadding2D
from .core import (
                   ACTIVATIONS,
                   Activation,
                   BatchNormalization,
                   Dense,
                   Dropout,
                   Flatten,
                   Input,
                   InputLayer,
                   Permute,
                   PReLU,
                   Reshape,
                   ScaleShift,
                   Softmax,
)
from .elementwise import Log, LogSoftmax, LogSumExp
from .merge import Add, Average, Concatenate, Subtract
from .pooling import (
                   AvgPool1D,
                   AvgPool2D,
                   GlobalAvgPool1D,
                   GlobalAvgPool2D,
                   GlobalMaxPool1D,
                   GlobalMaxPool2D,
                   MaxPool1D,
                   MaxPool2D,
)

__all__ = [
    "ACTIVATIONS", "Activation", "Add", "Average", "AvgPool1D", "AvgPool2D", "BatchNormalization", "Concatenate",
    "Conv1D", "Conv2D", "Convolution", "Cropping1D", "Cropping2D", "Dense", "Dropout", "Flatten", "GlobalAvgPool1D",
    "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D", "Input", "InputLayer", "Layer", "Log", "LogSoftmax",
    "LogSumExp", "MaxPool1D", "MaxPool2D", "Node", "PReLU", "Permute", "Reshape", "ScaleShift", "Softmax", "Subtract",
    "ZeroPadding1D", "ZeroPadding2D",
]
