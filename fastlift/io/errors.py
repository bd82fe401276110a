"""The loader's error type.

`load_model` raises exactly three kinds of error:

* `ModelFileError` (a ``ValueError``): the file is truncated, corrupt, or inconsistent
  (missing weights, weights whose shapes disagree with the config, a malformed config),
  or it would make the loader read another file or allocate more than it stores
  (external links or storage, virtual datasets, weights never written, sizes over the
  limits); the message names the file and, where there is one, the layer or dataset.
* ``NotImplementedError``: the file is fine but holds something fastlift does not run:
  an unknown layer class, an unsupported option, or code (``Lambda``, custom objects).
* ``FileNotFoundError`` / ``IsADirectoryError`` / ``PermissionError`` (``OSError``): the
  path itself cannot be opened. A path that is not a regular file (a FIFO, socket or device)
  is a `ModelFileError`, raised without opening it.

Arguments of the wrong kind (not a path, an unknown keyword) are ``TypeError`` /
``ValueError`` as everywhere in fastlift.
"""

from __future__ import annotations


class ModelFileError(ValueError):
    """A model file that cannot be read as a Keras model (the message names file and layer)."""
