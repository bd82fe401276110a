"""Opening a score file (load_scores, ScoreReader, report, merge, compress, --input .h5) reads
that file and nothing else.

A score file is ours only until someone hands it on: like a model file it could be crafted so
that libhdf5 takes a dataset's bytes from another file (external storage, virtual datasets)
or follows a name into another file (external links). Each is refused with a
`ScoreFileError` naming the file and the member, before any other file is opened.
"""

import h5py
import numpy as np
import pytest

from fastlift.io.score_reader import ScoreReader
from fastlift.io.scores import (
    ScoreFileError,
    ScoreLayout,
    compress_score_file,
    create_score_file,
    iter_rows,
    load_scores,
    read_header,
    read_input_array,
)

SECRET = np.arange(64, dtype="<f4") + 0.5


def _secret_bin(tmp_path):
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET.tobytes() * 4)
    return str(path)


def _secret_h5(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = SECRET
    return str(path)


def external_storage(f, name, tmp_path):
    shape, dtype = f[name].shape, f[name].dtype
    del f[name]
    f.create_dataset(name, shape=shape, dtype=dtype, external=[(_secret_bin(tmp_path), 0, h5py.h5f.UNLIMITED)])


def external_link(f, name, tmp_path):
    del f[name]
    f[name] = h5py.ExternalLink(_secret_h5(tmp_path), "/data")


def virtual_other_file(f, name, tmp_path):
    shape, dtype = f[name].shape, f[name].dtype
    del f[name]
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    layout[:] = h5py.VirtualSource(_secret_h5(tmp_path), "data", shape=shape)
    f.create_virtual_dataset(name, layout, fillvalue=0)


def soft_link(f, name, tmp_path):
    f["elsewhere"] = h5py.ExternalLink(_secret_h5(tmp_path), "/")
    del f[name]
    f[name] = h5py.SoftLink("/elsewhere/data")


def extra_external_link(f, name, tmp_path):
    f["extra"] = h5py.ExternalLink(_secret_h5(tmp_path), "/data")


CRAFTS = {external_storage: "external storage", external_link: "external link", virtual_other_file: "virtual",
          soft_link: "link", extra_external_link: "external link"}


def _score_file(tmp_path):
    path = str(tmp_path / "scores.h5")
    create_score_file(path, ScoreLayout(n_regions=3, length=8), {"rule": "rescale"}, "0")
    return path


def _crafted(tmp_path, craft):
    path = _score_file(tmp_path)
    with h5py.File(path, "a") as f:
        craft(f, "deltas", tmp_path)
    return path


OPENERS = {
    "read_header": read_header,
    "load_scores": load_scores,
    "ScoreReader": ScoreReader,
    "compress_score_file": compress_score_file,
    "iter_rows": lambda p: list(iter_rows(p, "deltas", 3, 2)),
    "read_input_array": lambda p: read_input_array(p, "input_seqs"),
}


def test_an_untouched_score_file_opens(tmp_path):
    path = _score_file(tmp_path)
    assert read_header(path)["n_regions"] == 3
    with ScoreReader(path) as r:
        assert r.length == 8


@pytest.mark.parametrize("craft", list(CRAFTS), ids=lambda c: c.__name__)
@pytest.mark.parametrize("opener", list(OPENERS))
def test_members_stored_elsewhere_are_refused(tmp_path, craft, opener):
    path = _crafted(tmp_path, craft)
    with pytest.raises(ScoreFileError) as e:
        OPENERS[opener](path)
    message = str(e.value)
    assert path in message and CRAFTS[craft] in message
    assert ("'deltas'" in message) or ("'extra'" in message) or ("'elsewhere'" in message)


def test_an_input_array_behind_an_external_link_is_refused(tmp_path):
    path = str(tmp_path / "inputs.h5")
    with h5py.File(path, "w") as f:
        f["input_seqs"] = h5py.ExternalLink(_secret_h5(tmp_path), "/data")
    with pytest.raises(ScoreFileError, match="external link"):
        read_input_array(path)
    with pytest.raises(ScoreFileError, match="external link"):
        read_input_array(path, "input_seqs")


def test_an_input_array_in_a_group_is_not_reached_by_path(tmp_path):
    # a key is a top-level dataset's name: a path through groups could cross a link
    path = str(tmp_path / "inputs.h5")
    with h5py.File(path, "w") as f:
        f["group/x"] = np.zeros((2, 8, 4), np.float32)
        f["y"] = np.zeros((2, 8, 4), np.float32)
    with pytest.raises(ScoreFileError, match="name the dataset to read"):
        read_input_array(path, "group/x")
    assert read_input_array(path, "y").shape == (2, 8, 4)
