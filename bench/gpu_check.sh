#!/usr/bin/env bash
# fastlift on a real GPU in one command: build, the GPU tests, the GPU benchmark; one JSON, one log.
#
#   bash bench/gpu_check.sh [--dry-run] [--wheels DIR] [--budget SECONDS] [--step-limit SECONDS]
#                           [--steps a,b,...] [OUT_DIR]
#
# For a bare NVIDIA machine with Python 3, CuPy, PyTorch, h5py, Cython and a C compiler, and no
# network. Steps, each under its own time limit (`timeout`), so a hang in one leaves the others'
# results, and all together under --budget seconds (default 470: under 8 minutes; --step-limit
# caps every step's limit, --steps runs only the steps named):
#
#   machine     nvidia-smi
#   wheels      pip install --no-index --no-deps of the wheels in --wheels DIR (pure-Python extras
#               such as captum, tangermeme and their missing dependencies) into a private folder
#   build       python setup.py build_ext --inplace (the Cython extensions; CUDA needs no build)
#   env         bench/bench_gpu.py env: GPU, driver, CUDA, CuPy, PyTorch, peers; fastlift's cuda12 /
#               cuda13 extra against the installed CuPy
#   pytest_gpu  python -m pytest -m gpu --require-gpu (a GPU test that cannot run fails)
#   peak, models, chrombpnet, scan, agreement
#               bench/bench_gpu.py PART (see its docstring)
#
# Writes OUT_DIR/gpu_check.json (every step: status ok / failed / timeout / skipped, seconds,
# limit, reason, and the step's own JSON result) after every step, and OUT_DIR/gpu_check.log (all
# output). OUT_DIR is $OUT when set, else the argument, else ./gpu_check_out. Exit status 0 when
# no step failed or timed out.
#
# --dry-run (CPU, no GPU needed; what CI runs): every step that can run on the CPU runs (the
# benchmark at tiny sizes on fastlift's CPU backend, the GPU tests without --require-gpu, so they
# skip); what needs a GPU is recorded as skipped with the reason.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
DRY=0
WHEELS=""
BUDGET=470
STEP_LIMIT=""
STEPS=""
ARG_OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --wheels) WHEELS=${2:?--wheels needs a folder}; shift ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
        --step-limit) STEP_LIMIT=${2:?--step-limit needs seconds}; shift ;;
        --steps) STEPS=${2:?--steps needs a comma-separated list}; shift ;;
        -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
        *) ARG_OUT=$1 ;;
    esac
    shift
done
for n in "$BUDGET" "${STEP_LIMIT:-1}"; do
    case "$n" in ''|*[!0-9]*) echo "gpu_check.sh: --budget and --step-limit take whole seconds; got $n" >&2; exit 2 ;; esac
done
if [ -n "$WHEELS" ] && [ ! -d "$WHEELS" ]; then
    echo "gpu_check.sh: --wheels $WHEELS is not a folder" >&2; exit 2
fi
ALL_STEPS="machine wheels build env pytest_gpu peak models chrombpnet scan agreement"
for s in ${STEPS//,/ }; do
    case " $ALL_STEPS " in *" $s "*) ;; *) echo "gpu_check.sh: unknown step $s (steps: $ALL_STEPS)" >&2; exit 2 ;; esac
done

OUT_DIR=${OUT:-${ARG_OUT:-$PWD/gpu_check_out}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOG=$OUT_DIR/gpu_check.log
JSON=$OUT_DIR/gpu_check.json
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastlift_gpu_check.XXXXXX")
mkdir -p "$WORK/steps"
: > "$LOG"
START=$(date +%s)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESERVE=10   # seconds kept for writing the JSON at the end
N=0
cd "$ROOT" || exit 2
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "$*" | tee -a "$LOG"; }

# record NAME STATUS RC SECONDS LIMIT REASON [RESULT_FILE]: one step's entry, then the whole JSON
record() {
    N=$((N + 1))
    STEP_NAME=$1 STEP_STATUS=$2 STEP_RC=$3 STEP_SECONDS=$4 STEP_LIMIT=$5 STEP_REASON=$6 STEP_RESULT=${7:-} \
    "$PY" - "$WORK/steps/$(printf %02d "$N")-$1.json" <<'EOF'
import json, os, sys
e = os.environ
entry = {"name": e["STEP_NAME"], "status": e["STEP_STATUS"], "seconds": float(e["STEP_SECONDS"]),
         "limit_s": int(e["STEP_LIMIT"]) if e["STEP_LIMIT"] else None,
         "returncode": int(e["STEP_RC"]) if e["STEP_RC"] else None, "reason": e["STEP_REASON"] or None}
path = e["STEP_RESULT"]
if path and os.path.exists(path):
    try:
        with open(path) as f:
            entry["result"] = json.load(f)
    except ValueError as err:
        entry["result_error"] = f"{path}: not JSON ({err})"
with open(sys.argv[1], "w") as f:
    json.dump(entry, f)
EOF
    write_json
}

write_json() {
    DRY=$DRY BUDGET=$BUDGET STARTED=$STARTED START=$START ALL_STEPS=$ALL_STEPS "$PY" - "$WORK/steps" "$JSON" <<'EOF'
import glob, json, os, sys, time
e = os.environ
steps = []
for p in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    with open(p) as f:
        steps.append(json.load(f))
done = {s["name"] for s in steps}
counts = {k: sum(s["status"] == k for s in steps) for k in ("ok", "failed", "timeout", "skipped")}
out = {"schema": 1, "dry_run": e["DRY"] == "1", "started": e["STARTED"],
       "seconds": time.time() - int(e["START"]), "budget_s": int(e["BUDGET"]),
       "complete": all(n in done for n in e["ALL_STEPS"].split()), "summary": counts, "steps": steps}
env = next((s.get("result") for s in steps if s["name"] == "env" and s.get("result")), None)
if env:
    out["gpu"] = env.get("cupy", {}).get("device") or env.get("gpu_status")
    out["driver"] = env.get("nvidia_smi")
tmp = sys.argv[2] + ".tmp"
with open(tmp, "w") as f:
    json.dump(out, f, indent=2)
os.replace(tmp, sys.argv[2])
EOF
}

selected() { [ -z "$STEPS" ] || case ",$STEPS," in *",$1,"*) true ;; *) false ;; esac; }

# step NAME LIMIT REASON_IF_OK RESULT_FILE -- CMD...: run CMD under min(LIMIT, what the budget has left)
# NOTE is the entry's reason when CMD succeeds, ON_SUCCESS its status then (default ok).
step() {
    local name=$1 limit=$2 note=$3 result=$4 on_success=${ON_SUCCESS:-ok}
    shift 5
    if ! selected "$name"; then
        record "$name" skipped "" 0 "" "not in --steps"
        return
    fi
    local left=$((BUDGET - ($(date +%s) - START) - RESERVE))
    if [ "$left" -lt 5 ]; then
        say "=== $name: skipped, the ${BUDGET}s budget is spent"
        record "$name" skipped "" 0 "$limit" "the overall budget (--budget $BUDGET) is spent"
        return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    [ -n "$STEP_LIMIT" ] && [ "$STEP_LIMIT" -lt "$limit" ] && limit=$STEP_LIMIT
    say "=== $name (limit ${limit}s): $*"
    local t0 rc status reason ms seconds
    t0=$(date +%s%N)
    { timeout -k 10 "$limit" "$@" 2>&1; echo $? > "$WORK/rc"; } | tee -a "$LOG"
    rc=$(cat "$WORK/rc")
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    seconds=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
    case "$rc" in
        0) status=$on_success; reason=$note ;;
        124|137) status=timeout; reason="killed after ${limit}s" ;;
        *) status=failed; reason="exit status $rc" ;;
    esac
    say "=== $name: $status ($seconds s)"
    record "$name" "$status" "$rc" "$seconds" "$limit" "$reason" "$result"
}

skip() {  # skip NAME REASON
    say "=== $1: skipped: $2"
    record "$1" skipped "" 0 "" "$2"
}

say "fastlift GPU check $( [ $DRY = 1 ] && echo '(dry run) ')in $ROOT -> $OUT_DIR; budget ${BUDGET}s; python: $PY"

# machine -------------------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1; then
    step machine 20 "" "" -- nvidia-smi
else
    skip machine "nvidia-smi is not on PATH (no NVIDIA driver here)"
fi

# wheels --------------------------------------------------------------------------------------------
export PY WORK WHEELS
export SITE=$WORK/site
install_wheels() {  # the wheels into $SITE, no index, no dependencies; their names into wheels.json
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
        --target "$SITE" "$WHEELS"/*.whl || return
    "$PY" -c 'import json, os, sys; print(json.dumps({"installed": sorted(d[:-len(".dist-info")] for d in os.listdir(sys.argv[1]) if d.endswith(".dist-info"))}))' "$SITE" > "$WORK/wheels.json"
}
export -f install_wheels
if [ -n "$WHEELS" ]; then
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        step wheels 60 "" "$WORK/wheels.json" -- bash -c install_wheels
        export PYTHONPATH="$PYTHONPATH:$SITE"   # after the checkout, ahead of the image's site-packages
    else
        skip wheels "no .whl file in $WHEELS"
    fi
else
    skip wheels "no --wheels folder given (the peers are used if the machine has them)"
fi

# build ---------------------------------------------------------------------------------------------
build_fastlift() {  # the Cython extensions in place (CUDA kernels are compiled at run time by NVRTC)
    "$PY" setup.py -q build_ext --inplace -j "$(nproc 2>/dev/null || echo 2)" || return
    "$PY" -c 'import fastlift, fastlift.backends._cpu, fastlift._genomics, fastlift.backends._pool; print("fastlift built:", fastlift.__file__)'
}
export -f build_fastlift
if "$PY" -c "import Cython" >/dev/null 2>&1; then
    step build 150 "" "" -- bash -c build_fastlift
elif [ $DRY = 1 ] && "$PY" -c "import fastlift.backends._cpu" >/dev/null 2>&1; then
    skip build "Cython is not installed here: the dry run uses the fastlift already built in this checkout"
else
    say "=== build: failed: Cython is not installed and fastlift is not built"
    record build failed "" 0 "" "Cython is not installed and fastlift is not built: nothing can run"
fi

# env -----------------------------------------------------------------------------------------------
DRYFLAG=""
[ $DRY = 1 ] && DRYFLAG="--dry-run"
step env 30 "" "$WORK/env.json" -- "$PY" bench/bench_gpu.py env $DRYFLAG --json "$WORK/env.json"

# the GPU tests -------------------------------------------------------------------------------------
gpu_tests() {  # gpu_tests PYTEST_ARGS...: pytest -m gpu with a junit report, summarised into pytest.json
    "$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml="$WORK/pytest.xml" "$@"
    local rc=$?
    "$PY" - "$WORK/pytest.xml" "$WORK/pytest.json" <<'EOF'
import json, sys
import xml.etree.ElementTree as ET
out = {}
try:
    root = ET.parse(sys.argv[1]).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    out = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    bad = []
    for case in suite.iter("testcase"):
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                bad.append({"test": f"{case.get('classname')}::{case.get('name')}", tag: (el.get("message") or "")[:500]})
    out["failed_tests"] = bad[:40]
    skips = [(c.find("skipped").get("message") or "") for c in suite.iter("testcase") if c.find("skipped") is not None]
    out["skip_reasons"] = sorted(set(s[:300] for s in skips))[:5]
except (OSError, ET.ParseError) as err:
    out["error"] = f"no junit report: {err}"
with open(sys.argv[2], "w") as f:
    json.dump(out, f)
EOF
    return $rc
}
export -f gpu_tests
if [ $DRY = 1 ]; then
    # No GPU: the GPU tests are collected and skip with CuPy's reason (--require-gpu would fail
    # them), so the step runs, but what it is for, the GPU tests passing, is recorded as skipped.
    WHY=$("$PY" -c "from fastlift.backends._cuda import gpu_status; print(gpu_status()[1])" 2>&1 | tail -1)
    ON_SUCCESS=skipped step pytest_gpu 150 "dry run, no GPU ($WHY): ran without --require-gpu, so the GPU tests skip" \
        "$WORK/pytest.json" -- bash -c 'gpu_tests tests/test_gpu.py'
else
    step pytest_gpu 150 "" "$WORK/pytest.json" -- bash -c 'gpu_tests --require-gpu -o faulthandler_timeout=120 tests'
fi

# the benchmark -------------------------------------------------------------------------------------
for part in peak models chrombpnet scan agreement; do
    case $part in
        peak) limit=30 ;; scan) limit=90 ;; agreement) limit=90 ;; *) limit=100 ;;
    esac
    step "$part" "$limit" "$( [ $DRY = 1 ] && echo 'dry run: on the CPU at tiny sizes')" "$WORK/$part.json" -- \
        "$PY" bench/bench_gpu.py "$part" $DRYFLAG --json "$WORK/$part.json"
done

write_json
"$PY" - "$JSON" <<'EOF' | tee -a "$LOG"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"fastlift GPU check: {d['summary']} in {d['seconds']:.0f} s -> {sys.argv[1]}")
for s in d["steps"]:
    print(f"  {s['name']:<12}{s['status']:<9}{s['seconds']:>7.1f} s  {s['reason'] or ''}")
EOF
rm -rf "$WORK"
"$PY" -c "import json, sys; s = json.load(open(sys.argv[1]))['summary']; sys.exit(1 if s['failed'] or s['timeout'] else 0)" "$JSON"
