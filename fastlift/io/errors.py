"""The loader's error type.

`load_model` raises exactly three kinds of error:

* `ModelFileError` (a ``ValueError``): the file is truncated, corrupt, or inconsistent
  (missing weights, weights whose shapes disagree with the config, a malformed config);
  the message names the file and, where there is one, the layer.
* ``NotImplementedError``: the file is fine but holds something fastlift does not run:
  an unknown layer class, an unsupported option, or code (``Lambda``, custom objects).
* ``FileNotFoundError`` / ``IsADirectoryError`` / ``PermissionError`` (``OSError``): the
  path itself cannot be opened.

Arguments of the wrong kind (not a path, an unknown keyword) are ``TypeError`` /
``ValueError`` as everywhere in fastlift.
"""

from __future__ import annotations


class ModelFileError(ValueError):
    """A model file that cannot be read as a Keras model (the message names file and layer)."""
