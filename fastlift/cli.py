"""The ``fastlift`` command.

``fastlift demo`` runs the whole genomics flow on the bundled trained model and reports how
well each attribution method recovers the planted motifs. ``fastlift explain`` scores the
regions of a genome (FASTA + BED/narrowPeak) or a one-hot array file with DeepLIFT and
shuffled references into HDF5 score files that modisco-lite reads, resumably: in one process,
as one shard of several (``--shard``, joined by ``fastlift merge``), or on a Dask cluster
(``--workers``, ``--scheduler``).
"""

from __future__ import annotations

import argparse
import os
import sys

#: --target all above this many units needs --allow-many-targets (it writes one file per unit)
MAX_ALL_TARGETS = 16


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _shard(text):
    index, sep, count = text.partition("/")
    digits = index.isascii() and index.isdigit() and count.isascii() and count.isdigit()  # not int()'s "1_0", " 3"
    i, n = (int(index), int(count)) if digits else (-1, -1)
    if not sep or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4); got {text!r}")
    return i, n


def _batch_size(text):
    if text == "auto":
        return None
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer; got {text!r}") from None


EXPLAIN_DESCRIPTION = """\
Score genomic regions with DeepLIFT against shuffled references and write the hypothetical
and projected contributions to HDF5 score files, streaming (memory does not grow with the
number of regions) and crash-safe (rerun with --resume after any interruption; the result is
identical to an uninterrupted run, for any --batch-size).

Output (one file per target; with several targets, OUT gets .NAME before its extension):
  input_seqs (N, L, 4) int8, hyp_scores and projected_scores (N, L, 4) float16/float32,
  deltas, n_non_acgt, coords_chrom/coords_start/coords_end and region_line (FASTA+BED runs)
  or input_row (--input runs), and the run's parameters as JSON in the 'params' attribute.
  modisco-lite reads it directly:  modisco motifs -i OUT -n 50000 -w 400

Scaling out (the output is byte-identical to one process):
  --shard I/N     score the I-th of N contiguous parts into OUT.part-0000I-of-0000N.h5 (one
                  command per machine), then: fastlift merge OUT.part-*.h5 --out OUT
  --workers N     a local Dask cluster of N worker processes (pip install fastlift[dask])
  --scheduler A   a running Dask cluster (workers must see the inputs and OUT's folder)

examples:
  fastlift explain model.h5 --fasta hg38.fa --bed peaks.narrowPeak --width 2114 \\
      --target profile@profile,0@logcounts --refs dinuc:20 --out scores.h5
  fastlift explain demo --input onehot.npz --target profile --out demo_scores.h5
  fastlift explain model.h5 --fasta hg38.fa --bed peaks.bed --target profile --out s.h5 --workers 8
"""

TARGET_HELP = """\
what to explain (needed when the target layer has more than one unit; a one-unit layer
defaults to 0): an output unit index ("3"), "profile" (softmax-weighted,
mean-normalised logits of a profile head, the formula as written), "profile_chrombpnet"
or "profile_bpnetlite" (the numbers ChromBPNet/BPNet's shap path or bpnet-lite/
tangermeme give for a profile head), "sum" (sum of the units, e.g. both strands of a
counts head), "all" (every unit, one file each; above
16 units only with --allow-many-targets), or a
comma-separated list of these, all computed in one pass. Append "@LAYER" to an item to
take it from another layer (head): "profile@profile,0@counts". Without "@", items use
--target-layer."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastlift", description="Fast DeepLIFT and gradient attributions.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="score planted motifs with every method and report auROC",
                          description="Build the bundled motif model, plant motifs in random DNA, score it with "
                                      "DeepLIFT (rescale, reveal_cancel), integrated gradients, gradient x input "
                                      "and gradients, and report how well each recovers the planted bases.")
    demo.add_argument("--n", type=_positive_int, default=200, help="number of sequences (default 200; half "
                      "carry a motif)")
    demo.add_argument("--length", type=_positive_int, default=200, help="sequence length in bp (default 200)")
    demo.add_argument("--refs", type=_positive_int, default=10, help="shuffled references per sequence "
                      "(default 10)")
    demo.add_argument("--seed", type=int, default=0, help="random seed for sequences and references (default 0)")
    demo.add_argument("--device", choices=["auto", "cpu", "cuda", "numpy"], default="auto",
                      help="compute device (default auto)")
    demo.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: all cores)")
    demo.add_argument("--out", default=None, help="also save sequences, planted mask and contributions to this .npz")
    demo.add_argument("--report", default=None, help="write the scan's HTML report here (default: report.html in "
                      "a new temporary folder; needs matplotlib)")

    ex = sub.add_parser("explain", help="score regions of a genome (or a one-hot array) into modisco-ready files",
                        description=EXPLAIN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("model", metavar="MODEL",
                    help="a Keras model file (.h5 from Keras 2 / tf.keras, or .keras), read without TensorFlow; "
                         "or 'demo' for the bundled trained demo model (heads 'profile' and 'counts')")
    src = ex.add_argument_group("input (either --fasta with --bed, or --input)")
    src.add_argument("--fasta", help="genome FASTA (uncompressed); its .fai index is read, or built and saved")
    src.add_argument("--bed", help="regions: BED (window centred on the interval midpoint) or narrowPeak "
                                   "(centred on the summit, column 10); .gz accepted")
    src.add_argument("--width", type=_positive_int, help="window width in bp, e.g. 2114 (default: the model's "
                                                         "input length; needed for a model that takes any length)")
    src.add_argument("--skip-invalid", action="store_true",
                     help="drop regions on unknown chromosomes or whose window runs off a chromosome (before "
                          "its start or past its end; counted and reported) instead of stopping with the file "
                          "and line")
    src.add_argument("--input", help="one-hot sequences instead of FASTA+BED: .npy, .npz or .h5, shape (N, L, 4) "
                                     "(or (N, 4, L) with --layout ncl)")
    src.add_argument("--input-key", help="array name inside --input (default: arr_0 / input_seqs / the only one)")
    src.add_argument("--layout", choices=["nlc", "ncl"], default=None,
                     help="axis order of the --input arrays: nlc = (N, L, 4), the default (Keras), or ncl = "
                          "(N, 4, L) (tangermeme, bpnet-lite, PyTorch), transposed as read; the output is (N, L, 4)")
    how = ex.add_argument_group("attribution")
    how.add_argument("--refs", default="dinuc:20",
                     help="references per region: dinuc:K (dinucleotide shuffles; default dinuc:20), shuffle:K, "
                          "kmerN:K (N-mer-preserving shuffles), flat (40%% GC background), flat:A,C,G,T, zeros")
    how.add_argument("--rule", default="rescale",
                     choices=["rescale", "reveal_cancel", "genomics_default", "gradient", "guided_backprop"],
                     help="DeepLIFT rule (default rescale; gradient gives the average gradient x (x - ref))")
    how.add_argument("--target", default=None, help=TARGET_HELP.replace("%", "%%"))
    how.add_argument("--allow-many-targets", action="store_true",
                     help=f"let --target all write one file per unit of a layer with more than {MAX_ALL_TARGETS} "
                          "units (usually --target sum or profile is what is wanted)")
    how.add_argument("--target-layer", help="layer the --target items refer to (default: the pre-activation of "
                                            "the model's first output)")
    how.add_argument("--hypothetical", dest="hypothetical", action="store_true", default=True,
                     help="write hypothetical contributions (hyp_scores: what each base would contribute; "
                          "modisco-lite's input). The default")
    how.add_argument("--no-hypothetical", dest="hypothetical", action="store_false",
                     help="write projected scores only (smaller files; modisco cannot use them)")
    how.add_argument("--seed", type=int, default=0, help="seed of the shuffles: reference k of region i depends "
                                                         "only on (seed, i, k) (default 0)")
    how.add_argument("--max-pool", default="exact", choices=["exact", "gradient"],
                     help="max-pooling rule (default exact: summation-to-delta holds)")
    how.add_argument("--precision", default="float32", choices=["float32", "tf32"],
                     help="GEMM precision: tf32 runs the GPU's GEMMs on TF32 tensor cores (opt-in; --device "
                          "cuda; recorded, and --resume refuses a change)")
    how.add_argument("--reverse-complement", action="store_true",
                     help="average each region's scores with those of its reverse complement (the same references "
                          "reverse-complemented; a unit target on a two-strand layer takes the other strand)")
    run = ex.add_argument_group("run")
    run.add_argument("--out", required=True, help="output score file (HDF5), e.g. scores.h5")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command; "
                                                           "its parameters must match")
    run.add_argument("--overwrite", action="store_true", help="replace existing output files")
    run.add_argument("--batch-size", type=_batch_size, default=None,
                     help="regions per compute batch: 'auto' (default, from a memory budget) or a number; "
                          "the output does not depend on it")
    run.add_argument("--chunk-size", type=_positive_int, default=None,
                     help="regions per checkpoint (default max(batch size, 128)); the output does not depend on it")
    run.add_argument("--score-dtype", default="float16", choices=["float16", "float32"],
                     help="storage type of the scores (default float16, as ChromBPNet/BPNet)")
    run.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="compute precision")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "numpy"],
                     help="compute device (default auto)")
    run.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: all cores)")
    run.add_argument("--compress", action="store_true",
                     help="when the scan is complete, rewrite the files gzip-compressed (about 2x smaller with float16; "
                          "modisco reads them; a compressed file cannot be resumed, only reported complete)")
    run.add_argument("--bigwig", help="also write per-base projected scores (summed over the bases) as a bigWig "
                                      "(needs pyBigWig; FASTA+BED runs)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or messages on stderr")
    scale = ex.add_argument_group("scaling out (one scan over many processes or machines)")
    scale.add_argument("--shard", type=_shard, metavar="I/N",
                       help="score only the I-th of N contiguous parts of the regions (0 <= I < N) into "
                            "OUT.part-I-of-N.h5, a complete resumable file; join the N parts with fastlift merge")
    scale.add_argument("--workers", type=_positive_int, metavar="N",
                       help="score on a local Dask cluster of N worker processes, each with --threads engine "
                            "threads (default: the cores shared out), then merge; needs pip install fastlift[dask]")
    scale.add_argument("--scheduler", metavar="ADDRESS",
                       help="score on a running Dask cluster (e.g. tcp://10.0.0.1:8786) whose workers see the inputs "
                            "and OUT's folder at the same paths; --threads: engine threads per task")
    scale.add_argument("--task-size", type=_positive_int, metavar="REGIONS",
                       help="regions per Dask task (default: about 8 tasks per worker); the output does not "
                            "depend on it")

    merge = sub.add_parser("merge", help="join the shard files of one scan (--shard) into its score file(s)",
                           description="Join the part files written by fastlift explain --shard I/N (every I of one "
                                       "run) into the file(s) one process would have written, byte for byte. "
                                       "Refuses parts of different runs, a missing or repeated shard and "
                                       "incomplete parts (finish those with --resume first).")
    merge.add_argument("parts", nargs="+", metavar="PART", help="shard files, e.g. scores.part-*.h5")
    merge.add_argument("--out", required=True, help="the merged score file (the --out of the explain runs)")
    merge.add_argument("--overwrite", action="store_true", help="replace existing merged files")
    merge.add_argument("--compress", action="store_true", help="then rewrite the merged files gzip-compressed "
                                                               "(as explain --compress)")
    merge.add_argument("--quiet", action="store_true", help="no messages on stderr")
    from .report import add_parser as add_report_parser

    add_report_parser(sub)
    return parser


def _parse_target(text, target_layer, model, allow_many=False):
    """--target / --target-layer -> (target, target_layer) as fastlift.deeplift takes them.

    Without --target, a target layer of one unit means unit 0; a layer of more units (a profile
    head, several tasks) is an error asking which. ``all`` over more than `MAX_ALL_TARGETS` units
    needs ``allow_many`` (--allow-many-targets): it writes one file per unit.
    """
    from .targets import PRESETS

    default_layer = target_layer or model.default_target().name
    if text is None:
        node = model.get_node(default_layer)
        if node.size != 1:
            raise ValueError(f"--target is needed: the target layer {default_layer!r} has {node.size} units (shape "
                             f"{node.shape}); pass --target profile (a profile head), sum, all or a unit index "
                             "such as 0, or --target-layer for another layer")
        text = "0"
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--target {text!r}: nothing to explain")

    def value(spec, layer):
        if spec in PRESETS:
            return [spec]
        if spec == "all":
            size = model.get_node(layer).size
            if size > MAX_ALL_TARGETS and not allow_many:
                raise ValueError(f"--target all on layer {layer!r} would write {size} files, one per unit; use "
                                 "--target sum or profile (one file), or pass --allow-many-targets")
            return list(range(size))
        try:
            return [int(spec)]
        except ValueError:
            raise ValueError(f"--target item {spec!r}: expected an index, "
                             f"{', '.join(repr(p) for p in PRESETS)} or 'all'") from None

    if any("@" in t for t in items):
        targets, layers = [], []
        for t in items:
            spec, _, layer = t.partition("@")
            layer = layer or default_layer
            model.get_node(layer)
            for v in value(spec, layer):
                targets.append(v)
                layers.append(layer)
        return targets, layers
    targets = [v for t in items for v in value(t, default_layer)]
    if len(items) == 1 and items[0] != "all":
        return targets[0], target_layer
    return targets, target_layer


def _explain(args, parser) -> int:
    from . import scan as S
    from .io.scores import lock_outputs, read_input_array

    if args.input and (args.fasta or args.bed):
        parser.error("explain: give either --input or --fasta with --bed, not both")
    if not args.input and not (args.fasta and args.bed):
        parser.error("explain: give --fasta and --bed (or --input)")
    if args.resume and args.overwrite:
        parser.error("explain: --resume and --overwrite exclude each other")
    if args.shard and (args.workers or args.scheduler):
        parser.error("explain: --shard scores one part here; --workers/--scheduler make and merge the parts "
                     "themselves: give one or the other")
    if args.workers and args.scheduler:
        parser.error("explain: --workers starts a local cluster, --scheduler uses a running one: give one")
    if args.task_size and not (args.workers or args.scheduler):
        parser.error("explain: --task-size sizes Dask tasks: use it with --workers or --scheduler")
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    source = None
    try:
        _check_threads(args.threads)
        if args.layout and not args.input:
            raise S.ScanError("--layout describes --input arrays; FASTA windows are always read as (L, 4)")
        if args.shard and (args.bigwig or args.compress):
            raise S.ScanError("--bigwig and --compress apply to a whole scan: with --shard, pass them to "
                              "fastlift merge (--compress) or run the bigWig from the merged file")
        if args.workers or args.scheduler:
            _need_dask()
        if args.bigwig:  # before the scan, not after hours of it
            if args.input:
                raise S.ScanError("--bigwig needs genome coordinates: use --fasta and --bed, not --input")
            _need_pybigwig()
        width = args.width
        if args.input:
            arr = read_input_array(args.input, args.input_key)
            source = S.ArraySource(arr, path=args.input, key=args.input_key, layout=args.layout or "nlc")
            if width is not None and width != source.length:
                raise S.ScanError(f"--width {width} does not match the input's length {source.length}")
            width = source.length
        model = _load_model(args.model, width)
        if len(model.inputs) != 1 or len(model.inputs[0].shape) != 2:
            raise S.ScanError(f"explain scores single-input sequence models (length, 4); this one takes "
                              f"{[n.shape for n in model.inputs]}")
        if width is None:
            width = model.inputs[0].shape[0]
        if model.inputs[0].shape != (width, 4):
            raise S.ScanError(f"the model takes inputs of shape {model.inputs[0].shape}; the regions are "
                              f"({width}, 4) (set --width to the model's input length)")
        if source is None:
            source = S.FastaBedSource(args.fasta, args.bed, width,
                                      on_invalid="skip" if args.skip_invalid else "error")
            if source.n_skipped:
                say(f"skipping {source.n_skipped} invalid region(s), e.g. " + "; ".join(source.skipped_examples[:3]))
        target, target_layer = _parse_target(args.target, args.target_layer, model, args.allow_many_targets)
        out = S.shard_path(args.out, *args.shard) if args.shard else args.out
        paths = S.output_paths(out, S.target_names(model, target, target_layer))
        for path in paths:
            S.check_output_path(path)
        with lock_outputs(paths):  # the scan, the bigWig and the compression: no second writer meanwhile
            return _scan_and_finish(args, model, source, target, target_layer, width, say)
    except KeyboardInterrupt:
        print("\nfastlift explain: interrupted; the regions written so far are saved: rerun with --resume",
              file=sys.stderr)
        return 130
    except _user_errors() as e:
        return _report("explain", e)
    finally:
        if source is not None:
            source.close()


def _scan_keywords(args, target, target_layer) -> dict:
    """The keywords of `fastlift.scan.scan` that the explain options give."""
    return {"references": args.refs, "rule": args.rule, "target": target, "target_layer": target_layer,
            "seed": args.seed, "hypothetical": args.hypothetical, "batch_size": args.batch_size,
            "chunk_size": args.chunk_size, "score_dtype": args.score_dtype, "dtype": args.dtype,
            "device": args.device, "n_threads": args.threads, "max_pool": args.max_pool,
            "precision": args.precision, "reverse_complement": args.reverse_complement, "resume": args.resume,
            "overwrite": args.overwrite, "progress": not args.quiet}


def _scan_and_finish(args, model, source, target, target_layer, width, say) -> int:
    """Run the scan (here, as a shard, or on Dask), print its summary, then the optional bigWig and
    compression."""
    from . import scan as S

    keywords = _scan_keywords(args, target, target_layer)
    if args.workers or args.scheduler:
        from .distributed import default_threads, local_client

        if args.workers and args.threads is None:
            keywords["n_threads"] = default_threads(args.workers)
        with local_client(args.workers, scheduler=args.scheduler) as client:
            res = S.scan(model, source, args.out, client=client, task_size=args.task_size, log=say, **keywords)
    else:
        res = S.scan(model, source, args.out, shard=args.shard, log=say, **keywords)
    rate = f", {res.regions_per_second:.1f} regions/s" if res.n_scored else ""
    part = (f" (shard {res.shard.index}/{res.shard.count}: regions [{res.shard.start}, {res.shard.stop}) of "
            f"{res.shard.n_regions})" if res.shard else "")
    print(f"fastlift explain: {res.n_regions} regions in {', '.join(res.paths)}{part}"
          + (f" (resumed at {res.resumed_from})" if res.resumed_from else ""))
    print(f"  scored now: {res.n_scored} in {res.seconds:.1f} s{rate}; max |summation-to-delta| "
          f"{res.max_abs_delta:.2e}")
    if res.n_skipped:
        print(f"  skipped: {res.n_skipped} invalid region(s) (unknown chromosome or window off a chromosome end)")
    if res.n_non_acgt:
        print(f"  non-ACGT letters read as all-zero rows: {res.n_non_acgt} (per region: dataset n_non_acgt)")
    if res.shard:
        print(f"  when every shard is done: fastlift merge {_part_glob(args.out)} --out {args.out}")
    if args.bigwig:
        from .io.scores import write_bigwig

        names = S.target_names(model, target, target_layer)
        for path, bw in zip(res.paths, S.output_paths(args.bigwig, names)):
            if not args.quiet:
                print(f"writing the bigWig {bw} from {path} ...", file=sys.stderr, flush=True)
            n = write_bigwig(path, bw, source.fasta.lengths)
            print(f"  bigWig: {bw} ({n} bases)")
    if args.compress:
        _compress(res.paths, args.quiet)
    if args.hypothetical and not res.shard:
        print(f"  modisco-lite: modisco motifs -i {res.paths[0]} -n 50000 -w {min(400, width)}")
    return 0


def _compress(paths, quiet):
    from .io.scores import compress_score_file

    for path in paths:
        before = os.path.getsize(path)
        if not quiet:
            print(f"compressing {path} ({before / 1e6:.1f} MB) ...", file=sys.stderr, flush=True)
        compress_score_file(path)
        print(f"  compressed {path}: {before / 1e6:.1f} -> {os.path.getsize(path) / 1e6:.1f} MB")


def _part_glob(out):
    """The shell pattern of ``out``'s shard files."""
    stem, ext = os.path.splitext(out)
    return f"{stem}.part-*{ext or '.h5'}"


def _merge(args) -> int:
    from . import scan as S

    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    try:
        paths = S.merge(args.parts, args.out, overwrite=args.overwrite, log=say)
        print(f"fastlift merge: {len(args.parts)} part file(s) -> {', '.join(paths)}")
        if args.compress:
            _compress(paths, args.quiet)
    except KeyboardInterrupt:
        print("\nfastlift merge: interrupted; nothing was written at --out", file=sys.stderr)
        return 130
    except _user_errors() as e:
        return _report("merge", e)
    return 0


def _load_model(name, width):
    if name == "demo":
        from .demo import demo_model

        return demo_model(width or 200)
    if not os.path.exists(name):
        raise FileNotFoundError(f"model file not found: {name} (or use 'demo' for the bundled model)")
    if os.path.isdir(name):
        raise ValueError(f"MODEL {name} is a directory; give a Keras model file (.h5 or .keras)")
    from . import load_model
    from .io import ModelFileError

    if width is not None:  # fills a length the file leaves open ((None, 4): any length)
        try:
            return load_model(name, input_shape=(width, 4))
        except ModelFileError:
            raise
        except ValueError:
            pass  # a fixed input other than (width, 4): loaded as it is, and the shapes compared after
    return load_model(name)


#: API words in messages -> the options a command-line user types
_CLI_WORDS = {"on_invalid='skip'": "--skip-invalid", "resume=True": "--resume", "overwrite=True": "--overwrite",
              "pass input_shape= to load_model": "pass --width (the window to score) or --input"}


def _user_errors():
    """The exceptions a command reports as one line (a bug still shows its traceback)."""
    from .genomics import InputFileError
    from .io.scores import DiskFullError, ScoreFileError
    from .scan import ScanError

    return (ScanError, InputFileError, ScoreFileError, DiskFullError, OSError, ImportError, ValueError, TypeError,
            KeyError, NotImplementedError, RuntimeError, OverflowError, MemoryError)


def _report(command, e) -> int:
    """One line on stderr for ``e``, in command-line words; exit status 1."""
    if isinstance(e, KeyError) and e.args:
        msg = str(e.args[0])
    elif isinstance(e, MemoryError):
        msg = f"out of memory{f' ({e})' if str(e) else ''}: use a smaller --batch-size or --chunk-size"
    elif isinstance(e, OSError) and e.strerror:
        msg = f"{e.filename}: {e.strerror}" if e.filename is not None else e.strerror
    else:
        msg = str(e) or type(e).__name__
    for api, cli in _CLI_WORDS.items():
        msg = msg.replace(api, cli)
    print(f"fastlift {command}: error: {' '.join(msg.split())}", file=sys.stderr)
    return 1


def _check_threads(n):
    from ._validate import MAX_THREADS

    if n is not None and n > MAX_THREADS:
        raise ValueError(f"--threads must be at most {MAX_THREADS} (this machine has {os.cpu_count()} cores); "
                         f"got {n}")


def _need_dask():
    try:
        import distributed  # noqa: F401 - only its presence is checked here
    except ImportError:
        raise ImportError("--workers and --scheduler run on Dask: pip install 'fastlift[dask]' (or drop them, "
                          "or use --shard)") from None


def _need_pybigwig():
    try:
        import pyBigWig  # noqa: F401 - only its presence is checked here
    except ImportError:
        raise ImportError("--bigwig needs pyBigWig: pip install pyBigWig (or drop --bigwig)") from None


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "explain":
        return _explain(args, parser)
    if args.command == "merge":
        return _merge(args)
    if args.command == "report":
        from . import report

        return report.main(args)
    if args.command == "demo":
        if args.length < 10:
            print("fastlift demo: --length must be at least 10 to hold a motif", file=sys.stderr)
            return 2
        from . import demo

        try:
            _check_threads(args.threads)
            return demo.main(args)
        except _user_errors() as e:
            return _report("demo", e)
    return 2  # pragma: no cover - argparse enforces the subcommand


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
