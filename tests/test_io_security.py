"""Loading a model reads the model file (and its ``config_json``) and nothing else.

Every file here is crafted with h5py in ``tmp_path``: HDF5 can make a dataset's bytes
come from another file (external storage, external links, virtual datasets), make a
name point nowhere (dangling soft links), declare gigabytes it never stored (datasets
never written, compressed chunks of zeros), and a path can name a FIFO that blocks
the reader forever. Each must be refused with a `ModelFileError` naming the file and
the dataset or link, before anything is read from elsewhere or allocated; in a
``.keras`` archive the same holds for the ``model.weights.h5`` opened from memory.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib

import h5py
import numpy as np
import pytest

import fastlift as fl
from fastlift.io import ModelFileError

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures", "keras")
H5_MODEL = os.path.join(FIXTURES, "seq_mlp.tfkeras.h5")  # hidden1: Dense 12 -> 8
KERAS_MODEL = os.path.join(FIXTURES, "seq_mlp.keras")
H5_KERNEL = "model_weights/hidden1/hidden1/kernel:0"
KERAS_KERNEL = "layers/dense/vars/0"
#: FIFOs, Unix sockets, /proc/self/status and RLIMIT_AS: the tests that need them run on Linux
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux (/proc, FIFOs, rlimits)")
#: the bytes another file holds: a model that loads them has read that file
SECRET = (np.arange(96, dtype="<f4").reshape(12, 8) + 0.5)


def _secret_file(tmp_path):
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET.tobytes())
    return str(path)


def _secret_h5(tmp_path, dataset="data"):
    path = tmp_path / "other.h5"
    with h5py.File(path, "a") as f:
        if dataset not in f:
            f[dataset] = SECRET
    return str(path)


# each craft replaces the (12, 8) float32 dataset ``name`` of group ``g`` by a hostile object
def external_storage(g, name, tmp_path):
    g.create_dataset(name, shape=(12, 8), dtype="<f4", external=[(_secret_file(tmp_path), 0, h5py.h5f.UNLIMITED)])


def external_link(g, name, tmp_path):
    g[name] = h5py.ExternalLink(_secret_h5(tmp_path), "/data")


def dangling_soft_link(g, name, tmp_path):
    g[name] = h5py.SoftLink("/no/such/kernel")


def soft_link_through_external_link(g, name, tmp_path):
    g.file["elsewhere"] = h5py.ExternalLink(_secret_h5(tmp_path), "/")
    g[name] = h5py.SoftLink("/elsewhere/data")


def soft_link_loop(g, name, tmp_path):
    g[name] = h5py.SoftLink(g.name + "/loop_a")
    g["loop_a"] = h5py.SoftLink(g.name + "/loop_b")
    g["loop_b"] = h5py.SoftLink(g.name + "/loop_a")


def virtual_missing_source(g, name, tmp_path):
    layout = h5py.VirtualLayout(shape=(12, 8), dtype="<f4")
    layout[:] = h5py.VirtualSource(str(tmp_path / "missing.h5"), "data", shape=(12, 8))
    g.create_virtual_dataset(name, layout, fillvalue=0)


def virtual_other_file(g, name, tmp_path):
    layout = h5py.VirtualLayout(shape=(12, 8), dtype="<f4")
    layout[:] = h5py.VirtualSource(_secret_h5(tmp_path), "data", shape=(12, 8))
    g.create_virtual_dataset(name, layout, fillvalue=0)


def never_written(g, name, tmp_path):
    g.create_dataset(name, shape=(12, 8), dtype="<f4", fillvalue=1.0)


def chunks_partly_written(g, name, tmp_path):
    ds = g.create_dataset(name, shape=(12, 8), dtype="<f4", chunks=(4, 8))
    ds[:4] = 1.0  # the other two chunks exist only as the fill value


CRAFTS = {  # craft -> what the error must say
    external_storage: r"external storage",
    external_link: r"external link",
    dangling_soft_link: r"soft link .*'/no/such/kernel'.* nothing",
    soft_link_through_external_link: r"external link",
    soft_link_loop: r"soft links? .*(loop|too many)",
    virtual_missing_source: r"virtual dataset",
    virtual_other_file: r"virtual dataset",
    never_written: r"never written",
    chunks_partly_written: r"never written",
}


def _crafted_h5(tmp_path, craft, where=H5_KERNEL, name="crafted.h5"):
    dst = tmp_path / name
    shutil.copy(H5_MODEL, dst)
    group, leaf = where.rsplit("/", 1)
    with h5py.File(dst, "r+") as f:
        del f[where]
        craft(f[group], leaf, tmp_path)
    return dst


def _crafted_keras(tmp_path, craft, where=KERAS_KERNEL, name="crafted.keras"):
    with zipfile.ZipFile(KERAS_MODEL) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    weights = tmp_path / "weights.h5"
    weights.write_bytes(entries["model.weights.h5"])
    group, leaf = where.rsplit("/", 1)
    with h5py.File(weights, "r+") as f:
        del f[where]
        craft(f[group], leaf, tmp_path)
    entries["model.weights.h5"] = weights.read_bytes()
    dst = tmp_path / name
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
    return dst


@pytest.mark.parametrize("container, names", [
    (_crafted_h5, ("'crafted.h5'", "hidden1", "kernel:0")),
    (_crafted_keras, ("'crafted.keras'", "model.weights.h5", "layers/dense/vars/0")),
], ids=["h5", "keras"])
@pytest.mark.parametrize("craft", list(CRAFTS), ids=lambda c: c.__name__)
def test_weights_that_live_elsewhere_are_refused(tmp_path, craft, container, names):
    path = container(tmp_path, craft)
    with pytest.raises(ModelFileError, match=CRAFTS[craft]) as e:
        fl.load_model(path)
    for text in names:
        assert text in str(e.value), (text, str(e.value))


def _link_group_elsewhere(tmp_path, path_in_file, craft):
    """Replace a whole group of a copy of the model by an external or soft link."""
    other = tmp_path / "other.h5"
    with h5py.File(H5_MODEL, "r") as src, h5py.File(other, "w") as dst:
        src.copy(src[path_in_file], dst, "g")
        for k, v in src.attrs.items():
            dst.attrs[k] = v
    path = tmp_path / "crafted.h5"
    shutil.copy(H5_MODEL, path)
    with h5py.File(path, "r+") as f:
        del f[path_in_file]
        f[path_in_file] = (h5py.ExternalLink(str(other), "/g") if craft == "external"
                           else h5py.SoftLink("/missing_group"))
    return path


@pytest.mark.parametrize("path_in_file", ["model_weights", "model_weights/hidden1", "model_weights/hidden1/hidden1"])
@pytest.mark.parametrize("craft", ["external", "soft"])
def test_groups_linked_out_of_the_file_are_refused(tmp_path, path_in_file, craft):
    path = _link_group_elsewhere(tmp_path, path_in_file, craft)
    with pytest.raises(ModelFileError, match="external link" if craft == "external" else "soft link") as e:
        fl.load_model(path)
    assert "'crafted.h5'" in str(e.value) and path_in_file.rsplit("/", 1)[-1] in str(e.value)


def test_keras3_layer_group_linked_out_of_the_archive_is_refused(tmp_path):
    def link(g, name, tmp_path):
        with h5py.File(tmp_path / "other.h5", "w") as o:
            o.create_group("vars").attrs["name"] = "hidden1"
            o["vars/0"] = SECRET
            o["vars/1"] = np.zeros(8, "<f4")
        g[name] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/")

    path = _crafted_keras(tmp_path, link, where="layers/dense")
    with pytest.raises(ModelFileError, match=r"'crafted.keras' \(model.weights.h5\): '/layers/dense' is an HDF5 external link"):
        fl.load_model(path)


def test_soft_links_inside_the_file_are_followed(tmp_path):
    def inside(g, name, tmp_path):
        g["real_kernel"] = SECRET
        g[name] = h5py.SoftLink(g.name + "/real_kernel")

    model = fl.load_model(_crafted_h5(tmp_path, inside))
    np.testing.assert_array_equal(model.get_node("hidden1/preact").layer.weights["kernel"], SECRET)


@linux_only
def test_external_storage_is_not_read_even_when_the_target_blocks(tmp_path):
    """External storage pointing at a FIFO: reading it would block forever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def to_fifo(g, name, tmp_path):
        g.create_dataset(name, shape=(12, 8), dtype="<f4", external=[(str(fifo), 0, h5py.h5f.UNLIMITED)])

    out = _run_child(f"fl.load_model({str(_crafted_h5(tmp_path, to_fifo))!r})")
    assert out["error"] == "ModelFileError" and "external storage" in out["message"], out


# ------------------------------------------------------------------ paths that are not files


CHILD_PRELUDE = """
import json, os, resource, sys
sys.path.insert(0, {root!r})
import fastlift as fl
fl.load_model({warm!r})  # imports what loading imports: the measure below sees the load alone


def kib(key):
    return int([line.split()[1] for line in open("/proc/self/status") if line.startswith(key)][0])


with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak resident size (VmHWM) to the current one
base = kib("VmRSS")
{limit}
try:
    {code}
    out = {{"error": None, "message": ""}}
except BaseException as e:
    out = {{"error": type(e).__name__, "message": str(e)}}
out["peak_mb"] = (kib("VmHWM") - base) / 1024
print("RESULT " + json.dumps(out))
"""


def _refused_without_allocating(path, *says):
    """Load ``path`` in a child whose address space is capped 1.5 GiB above its start: it must
    raise ModelFileError naming the file and ``says``, having allocated less than 64 MiB."""
    out = _run_child(f"fl.load_model({str(path)!r})", address_space_gb=1.5)
    assert out["error"] == "ModelFileError", out
    for text in (repr(os.path.basename(path)), *says):
        assert text in out["message"], (text, out["message"])
    assert out["peak_mb"] < 64, out


def _run_child(code, address_space_gb=None, timeout=60):
    """Run ``code`` in a fresh interpreter; return its outcome and the peak memory it added
    (the peak resident size while it ran minus the resident size before, both from
    /proc/self/status after a first small load).

    ``address_space_gb`` caps the child's address space above what it holds after importing
    fastlift, so that a loader that allocates what a file declares fails fast instead of
    taking the machine's memory.
    """
    limit = ""
    if address_space_gb is not None:
        limit = textwrap.dedent(f"""
            vm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmSize")][0] * 1024
            cap = vm + int({address_space_gb} * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        """)
    src = CHILD_PRELUDE.format(root=os.path.dirname(HERE), warm=KERAS_MODEL, limit=limit, code=code)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@linux_only
def test_a_fifo_as_the_model_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.h5"
    os.mkfifo(fifo)
    out = _run_child(f"fl.load_model({str(fifo)!r})", timeout=60)
    assert out["error"] == "ModelFileError", out
    assert "'model.h5'" in out["message"] and "not a regular file" in out["message"] and "FIFO" in out["message"]


@linux_only
def test_a_fifo_as_config_json_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.json"
    os.mkfifo(fifo)
    weights = os.path.join(FIXTURES, "seq_mlp.tfkeras.weights.h5")
    out = _run_child(f"fl.load_model({weights!r}, config_json={str(fifo)!r})", timeout=60)
    assert out["error"] == "ModelFileError", out
    assert "'model.json'" in out["message"] and "not a regular file" in out["message"]


@linux_only
def test_devices_and_sockets_are_refused(tmp_path):
    for dev in ("/dev/zero", "/dev/null"):
        with pytest.raises(ModelFileError, match=rf"'{os.path.basename(dev)}'.*not a regular file.*character device"):
            fl.load_model(dev)
    sock_path = tmp_path / "model.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(ModelFileError, match=r"'model.sock'.*not a regular file.*socket"):
            fl.load_model(sock_path)


def test_a_symlink_to_a_regular_file_still_loads(tmp_path):
    link = tmp_path / "link.h5"
    link.symlink_to(H5_MODEL)
    assert fl.load_model(link).name == fl.load_model(H5_MODEL).name


# ------------------------------------------------------------------------- sizes


def _zip_entry(name, data, crc, size, method):
    """(local header + data, central directory record) of one entry, written by hand so that
    a compressed stream can be given as is (zipfile would compress gigabytes itself)."""
    n = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(n), 0) + n

    def central(offset):
        return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data), size, len(n),
                           0, 0, 0, 0, 0, offset) + n
    return local + data, central


def write_zip(path, entries):
    """entries: [(name, stored bytes, crc, uncompressed size, method)]."""
    with open(path, "wb") as f:
        centrals = []
        for name, data, crc, size, method in entries:
            blob, central = _zip_entry(name, data, crc, size, method)
            centrals.append(central(f.tell()))
            f.write(blob)
        start = f.tell()
        cd = b"".join(centrals)
        f.write(cd)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(cd), start, 0))


def _deflated_zeros(n_mib):
    """A raw deflate stream of ``n_mib`` MiB of zeros and its CRC, without compressing them all:
    after a full flush the compressor's state is reset, so each MiB compresses to the same bytes."""
    mib = bytes(2**20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(n_mib):
        crc = zlib.crc32(mib, crc)
    return piece * n_mib + c.flush(), crc


@linux_only
def test_a_zip_bomb_in_a_keras_archive_is_refused_before_decompressing(tmp_path):
    """2 GiB of zeros deflated into a 2 MB archive: refused from the entry's declared size."""
    with zipfile.ZipFile(KERAS_MODEL) as z:
        stored = [(n, z.read(n)) for n in ("metadata.json", "config.json")]
    bomb, crc = _deflated_zeros(2048)
    path = tmp_path / "bomb.keras"
    write_zip(path, [(n, d, zlib.crc32(d), len(d), 0) for n, d in stored]
              + [("model.weights.h5", bomb, crc, 2**31, zipfile.ZIP_DEFLATED)])
    assert os.path.getsize(path) < 3 * 2**20
    with zipfile.ZipFile(path) as z:  # a well-formed archive: zipfile itself accepts it
        assert z.getinfo("model.weights.h5").file_size == 2**31
    _refused_without_allocating(path, "model.weights.h5", "compress")


@linux_only
def test_a_keras_archive_is_read_with_one_copy_of_its_weights(tmp_path):
    """model.weights.h5 of a compiled model also holds the optimizer's variables, which the
    loader never reads: the archive's 32 MiB entry, deflated, is held once, not twice."""
    with zipfile.ZipFile(KERAS_MODEL) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    weights = tmp_path / "weights.h5"
    weights.write_bytes(entries["model.weights.h5"])
    with h5py.File(weights, "r+") as f:
        f["optimizer/vars/0"] = np.random.default_rng(0).standard_normal(8 * 2**20, dtype=np.float32)
    path = tmp_path / "compiled.keras"
    with zipfile.ZipFile(path, "w") as z:
        for n, data in entries.items():
            if n != "model.weights.h5":
                z.writestr(n, data)
        z.write(weights, "model.weights.h5", compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    size_mb = os.path.getsize(weights) / 2**20
    out = _run_child(f"m = fl.load_model({str(path)!r}); assert m.output_names == ['probs']")
    assert out["error"] is None, out
    assert out["peak_mb"] < 1.3 * size_mb, (out, size_mb)


def _big_dense_h5(path, units, kernel):
    """A full-model .h5: Input(768) -> Dense(units) named 'big' whose kernel ``kernel(group)`` writes."""
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 768], "dtype": "float32", "name": "x"}},
        {"class_name": "Dense", "config": {"name": "big", "units": units, "activation": "linear",
                                           "use_bias": False}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([b"big"])
        g = mw.create_group("big")
        g.attrs["weight_names"] = np.array([b"big/kernel:0"])
        kernel(g.create_group("big"), "kernel:0", (768, units))


@linux_only
def test_an_unwritten_huge_kernel_is_refused_before_allocating(tmp_path):
    """A 22 KB .h5 declaring a 768 x (2**20 - 1) float32 kernel (3 GiB) it never stored."""
    path = tmp_path / "huge.h5"
    _big_dense_h5(path, 2**20 - 1, lambda g, name, shape: g.create_dataset(name, shape=shape, dtype="<f4"))
    assert os.path.getsize(path) < 64 * 2**10
    _refused_without_allocating(path, "big/kernel:0", "never written")


@linux_only
def test_compressed_chunks_cannot_declare_gigabytes(tmp_path):
    """Every chunk written, each a deflated block of zeros: 3 GiB declared in a 3 MB file."""
    chunk = (768, 2**16)
    block = zlib.compress(bytes(768 * 2**16 * 4), 9)

    def kernel(g, name, shape):
        ds = g.create_dataset(name, shape=shape, dtype="<f4", chunks=chunk, compression="gzip")
        for j in range(0, shape[1], chunk[1]):
            ds.id.write_direct_chunk((0, j), block)

    path = tmp_path / "zeros.h5"
    _big_dense_h5(path, 2**20, kernel)
    assert os.path.getsize(path) < 8 * 2**20
    _refused_without_allocating(path, "big/kernel:0", "compress")


def test_compressed_weights_with_a_normal_ratio_load(tmp_path):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((768, 64)).astype("<f4")
    w[:, 32:] = 0  # half zeros: compresses well, as pruned weights do

    def kernel(g, name, shape):
        g.create_dataset(name, data=w, chunks=(128, 64), compression="gzip")

    path = tmp_path / "gz.h5"
    _big_dense_h5(path, 64, kernel)
    model = fl.load_model(path)
    np.testing.assert_array_equal(model.get_node("big").layer.weights["kernel"], w)


def test_total_weight_bytes_are_bounded_by_a_documented_limit(tmp_path, monkeypatch):
    from fastlift.io import hdf5

    path = tmp_path / "ok.h5"
    _big_dense_h5(path, 64, lambda g, name, shape: g.create_dataset(name, data=np.ones(shape, "<f4")))
    fl.load_model(path)
    monkeypatch.setattr(hdf5, "MAX_WEIGHT_BYTES", 768 * 64 * 4 - 1)
    with pytest.raises(ModelFileError, match=r"'ok.h5': the weights total 196608 bytes, over the limit of 196607 "
                                             r"bytes \(fastlift.io.hdf5.MAX_WEIGHT_BYTES\)"):
        fl.load_model(path)


def test_a_keras_archive_entry_over_the_limit_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    from fastlift.io import loader

    monkeypatch.setattr(loader, "MAX_WEIGHTS_ENTRY_BYTES", 1000)
    with pytest.raises(ModelFileError, match=r"'seq_mlp.keras': 'model.weights.h5' in the archive declares \d+ "
                                             r"bytes .*limit"):
        fl.load_model(KERAS_MODEL)


def test_a_zip_entry_larger_than_it_declares_is_refused(tmp_path):
    with zipfile.ZipFile(KERAS_MODEL) as z:
        entries = [(n, z.read(n)) for n in z.namelist()]
    path = tmp_path / "liar.keras"
    write_zip(path, [(n, d, zlib.crc32(d), len(d) // 2 if n == "model.weights.h5" else len(d), 0)
                     for n, d in entries])
    with pytest.raises(ModelFileError, match=r"'liar.keras'.*model.weights.h5"):
        fl.load_model(path)


# ------------------------------------------------------------------ layer class names


@pytest.mark.parametrize("class_name", ["_init__", "_class__", "weights", "get", "conv", "activation", "refuse_code",
                                        "container", "convert", "fail", "build", "Dense ", "dense", "_Dense"])
def test_class_names_reach_only_layer_builders(tmp_path, class_name):
    """A class name is looked up in a table of layer builders, never as an attribute: '_init__'
    once reached Builder.__init__ and re-ran it."""
    dst = tmp_path / "named.h5"
    shutil.copy(H5_MODEL, dst)
    with h5py.File(dst, "r+") as f:
        c = json.loads(f.attrs["model_config"])
        c["config"]["layers"][2]["class_name"] = class_name  # 'drop' (no weights)
        f.attrs["model_config"] = json.dumps(c)
    with pytest.raises(NotImplementedError) as e:
        fl.load_model(dst)
    assert str(e.value).startswith(f"'named.h5': layer 'drop' ({class_name}): fastlift has no {class_name} layer")


def test_supported_layers_are_the_table():
    from fastlift.io import build

    assert set(build.LAYER_BUILDERS) <= set(build.SUPPORTED)
    assert not [n for n in build.SUPPORTED if n.startswith("_") or not n[0].isupper()]
    assert {"Dense", "Conv1D", "BatchNormalization", "Add", "MaxPooling1D", "Convolution1D"} <= set(build.SUPPORTED)


# ------------------------------------------------------------------ graph size


def _chain_config(n, reverse):
    """A functional chain Input -> a0 -> ... -> a{n-1} of Activation layers (Dense every 100th)."""
    layers = [{"class_name": "InputLayer", "config": {"name": "x", "batch_input_shape": [None, 2]},
               "inbound_nodes": []}]
    prev = "x"
    for k in range(n):
        cls = "Dense" if k % 100 == 50 else "Activation"
        cfg = {"name": f"a{k}", "activation": "relu" if k % 2 else "tanh"}
        if cls == "Dense":
            cfg.update(units=2, use_bias=False, activation="linear")
        layers.append({"class_name": cls, "config": cfg, "inbound_nodes": [[[prev, 0, 0, {}]]]})
        prev = f"a{k}"
    if reverse:
        layers = layers[::-1]
    return {"class_name": "Functional", "config": {"name": "chain", "layers": layers, "input_layers": [["x", 0, 0]],
                                                   "output_layers": [[prev, 0, 0]]}}


def _chain_weights(path, n):
    with h5py.File(path, "w") as f:
        dense = [k for k in range(n) if k % 100 == 50]
        f.attrs["layer_names"] = np.array([f"a{k}".encode() for k in dense])
        for k in dense:
            g = f.create_group(f"a{k}")
            g.attrs["weight_names"] = np.array([f"a{k}/kernel:0".encode()])
            g[f"a{k}/kernel:0"] = np.eye(2, dtype="<f4")


def _count_calls(fn):
    """Python and builtin calls made while ``fn`` runs (deterministic, unlike a timing)."""
    count = [0]

    def hook(frame, event, arg):
        if event in ("call", "c_call"):
            count[0] += 1

    sys.setprofile(hook)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
    return count[0], result


@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "reversed"])
def test_loading_work_grows_linearly_with_the_number_of_layers(tmp_path, reverse):
    counts = {}
    for n in (1000, 2000):
        weights = tmp_path / f"w{n}.h5"
        _chain_weights(weights, n)
        config = json.dumps(_chain_config(n, reverse))
        counts[n], model = _count_calls(lambda: fl.load_model(weights, config_json=config))  # noqa: B023
        assert model.output_names == [f"a{n - 1}"] and len(model.nodes) == n + 1
    assert counts[2000] < 2.4 * counts[1000], counts  # quadratic work would be ~4x


def test_a_long_reversed_chain_loads(tmp_path):
    n = 20000
    weights = tmp_path / "w.h5"
    _chain_weights(weights, n)
    model = fl.load_model(weights, config_json=json.dumps(_chain_config(n, reverse=True)))
    x = np.array([[0.5, -0.25]], np.float32)
    y = model.predict(x, dtype="float64")
    expected = x.astype(np.float64)
    for k in range(n):
        if k % 100 != 50:  # the Dense layers are identities
            expected = np.tanh(expected) if k % 2 == 0 else np.maximum(expected, 0)
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_keras3_weight_lookup_grows_linearly_with_the_number_of_layers(tmp_path):
    def files(n):
        layers = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                   "config": {"batch_shape": [None, 2], "dtype": "float32", "name": "x"}}]
        for k in range(n):
            layers.append({"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                           "config": {"name": f"d{k}", "units": 2, "activation": "linear", "use_bias": False}})
        config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
                  "config": {"name": "seq", "layers": layers}}
        path = tmp_path / f"k3_{n}.weights.h5"
        with h5py.File(path, "w") as f:
            for k in range(n):
                g = f.create_group(f"layers/dense{'_' + str(k) if k else ''}/vars")
                g.attrs["name"] = f"d{k}"
                g["0"] = np.eye(2, dtype="<f4")
        return path, json.dumps(config)

    counts = {}
    for n in (150, 300):
        path, config = files(n)
        counts[n], model = _count_calls(lambda: fl.load_model(path, config_json=config))  # noqa: B023
        assert len(model.nodes) == n + 1
    assert counts[300] < 2.4 * counts[150], counts


# ------------------------------------------------------------------------- README


README = os.path.join(os.path.dirname(HERE), "README.md")


def _readme_security_notes():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index("### Security notes")
    return text[start:text.index("\n## ", start)]


def test_readme_states_the_loader_limits_as_they_are():
    import re

    from fastlift.io import hdf5, loader

    notes = _readme_security_notes()
    units = {" GiB": 2**30, " MiB": 2**20, "-fold": 1}
    found = {(m, n): int(v) * units[u] for m, n, v, u in
             re.findall(r"`fastlift\.io\.(\w+)\.(\w+)` = (\d+)( GiB| MiB|-fold)", notes)}
    assert set(found) == {("hdf5", "MAX_WEIGHT_BYTES"), ("hdf5", "MAX_COMPRESSION_RATIO"),
                          ("loader", "MAX_WEIGHTS_ENTRY_BYTES"), ("loader", "MAX_CONFIG_BYTES")}, found
    for (module, name), value in found.items():
        assert getattr({"hdf5": hdf5, "loader": loader}[module], name) == value, name
    assert f"up to {hdf5.SMALL_WEIGHT_BYTES // 2**20} MiB are exempt" in notes
    assert f"compressed entry over {loader.SMALL_ENTRY_BYTES // 2**20} MiB" in notes
    for refused in ("external links", "soft links", "virtual dataset", "external\n  storage", "never written",
                    "FIFO", "never executes code", "5 of 1,045"):
        assert refused in notes, refused


def test_readme_recipe_for_untrusted_files_runs(tmp_path):
    notes = _readme_security_notes()
    start = notes.index("```python\n") + len("```python\n")
    code = notes[start:notes.index("```", start)]
    script = tmp_path / "recipe.py"
    model = tmp_path / "untrusted.h5"
    shutil.copy(H5_MODEL, model)
    script.write_text(code + "\n    print('OUTPUTS', model.output_names)\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)), check=False)
    assert proc.returncode == 0 and "OUTPUTS ['probs']" in proc.stdout, proc.stderr[-2000:]
    model.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))  # a refused file: the child's exit code says so
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)), check=False)
    assert proc.returncode != 0 and "untrusted.h5: refused" in proc.stderr and "ModelFileError" in proc.stderr
