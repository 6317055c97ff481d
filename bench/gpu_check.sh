#!/usr/bin/env bash
# Every GPU check of auditq in one run (issue 22; docs/gpu.md). On the device machine:
#   OUT=$OUT bench/gpu_check.sh                         (all checks, ~400 s budget)
#   GPU_CHECK_STEPS=gptq4,bench_7b GPU_CHECK_BUDGET_S=240 OUT=$OUT bench/gpu_check.sh   (a rerun)
# On this CPU machine, the stand-in that runs the same steps on the CPU (small shape; tests use tiny):
#   DEVICE=cpu OUT=/tmp/gc bench/gpu_check.sh
# Installs the wheels bench/gpu_wheels.sh put in .gpu-carry/wheels into a separate folder on PYTHONPATH
# (pip --no-index --no-deps --target: the image's torch, transformers and numpy are never replaced), puts
# this checkout first on PYTHONPATH (auditq runs from the travelled source, no install), then runs
# bench/gpu_check.py, which writes $OUT/gpu_check.json, $OUT/gpu_check.log and $OUT/reports.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the JSON and log go to}"
mkdir -p "$OUT"
export DEVICE="${DEVICE:-cuda}"
WHEELS="${GPU_CHECK_WHEELS:-.gpu-carry/wheels}"
SITE="${GPU_CHECK_SITE:-/tmp/auditq-gpu-site}"
INSTALL="${GPU_CHECK_INSTALL:-auto}"   # auto: install on cuda only (the CPU machine has everything already)
PY="${PYTHON:-python3}"
LOG="$OUT/gpu_check.log"
echo "gpu_check.sh $(date -u +%FT%TZ) DEVICE=$DEVICE $(uname -m) $($PY --version 2>&1)" >>"$LOG"

INSTALL_JSON=$(mktemp /tmp/auditq-gpu-install.XXXXXX)
if [ "$INSTALL" = 1 ] || { [ "$INSTALL" = auto ] && [ "${DEVICE%%:*}" = cuda ]; }; then
  start=$SECONDS
  rm -rf "$SITE"; mkdir -p "$SITE"
  TSV=$(mktemp /tmp/auditq-gpu-install.XXXXXX)
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl)
  [ ${#wheels[@]} -gt 0 ] || echo "no wheels in $WHEELS (run bench/gpu_wheels.sh here first and carry .gpu-carry)" | tee -a "$LOG"
  # all at once (one pip start); if that fails, one at a time: a wheel that cannot install is recorded, the
  # others still install
  if [ ${#wheels[@]} -gt 0 ] && $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "${wheels[@]}" >>"$LOG" 2>&1; then
    for whl in "${wheels[@]}"; do printf '%s\tok\n' "$(basename "$whl")" >>"$TSV"; done
    wheels=()
  fi
  for whl in "${wheels[@]}"; do
    if out=$($PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$whl" 2>&1); then
      printf '%s\tok\n' "$(basename "$whl")" >>"$TSV"
    else
      echo "$out" >>"$LOG"
      printf '%s\tfailed: %s\n' "$(basename "$whl")" "$(echo "$out" | tail -1 | tr '\t' ' ')" >>"$TSV"
    fi
  done
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  if ! ldconfig -p 2>/dev/null | grep -q 'libpcre2-8.so.0 ' && [ -f .gpu-carry/lib/libpcre2-8.so.0 ]; then
    export LD_LIBRARY_PATH="$PWD/.gpu-carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # for pypcre (gptqmodel)
    echo "libpcre2-8.so.0 not on this machine: using the carried copy" >>"$LOG"
  fi
  # which optional engines import there (gptqmodel may need compiled pieces, bitsandbytes its CUDA library)
  PYTHONPATH="$PWD:$PYTHONPATH" INSTALL_S=$((SECONDS - start)) timeout 120 $PY bench/gpu_check_imports.py "$TSV" "$SITE" \
    >"$INSTALL_JSON" 2>>"$LOG"
  [ -s "$INSTALL_JSON" ] || echo '{"status": "failed", "error": "the import check did not finish (see the log)"}' >"$INSTALL_JSON"
  cat "$INSTALL_JSON" >>"$LOG"
  rm -f "$TSV"
else
  echo "{\"status\": \"skipped\", \"note\": \"DEVICE=$DEVICE: this machine's packages are used (GPU_CHECK_INSTALL=1 installs the wheels anyway)\"}" >"$INSTALL_JSON"
fi

export GPU_CHECK_INSTALL_JSON="$INSTALL_JSON"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY bench/gpu_check.py
rc=$?
rm -f "$INSTALL_JSON"
exit $rc
