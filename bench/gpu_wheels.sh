#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what bench/gpu_check.sh needs on the GPU machine, which reaches no index:
#   bench/gpu_wheels.sh            wheels for python 3.12 x86-64 into .gpu-carry/wheels
#   bench/gpu_wheels.sh --demo     the same, plus the demo models built into .gpu-carry/demo (10+ min on 2 cores)
# .gpu-carry/ is in .gitignore; the device run names it in `carry` (docs/gpu.md). What travels must stay under
# 64 MiB with the checkout: this script fails if .gpu-carry is over 56 MiB.
#
# The device image (python 3.12, torch 2.11+cu130, transformers 5.17, accelerate, peft, pandas, pyarrow, numpy,
# matplotlib, typer, rich, absl-py, joblib, regex, tqdm, click, six, fsspec, xxhash ...) lacks: rouge-score and
# nltk (+ defusedxml), platformdirs, bitsandbytes, gptqmodel and its own needs (defuser, device-smi, logbar,
# pypcre, tokenicer, torchao, datasets, dill, multiprocess). Versions are the ones this machine runs.
# - rouge-score 0.1.2 and gptqmodel 7.6.0 (+ defuser, device-smi, logbar, tokenicer) have no wheel on the
#   registry: built here from their sdists with python3.12 (pure Python); pypcre has a C extension: built with
#   python3.12 here too (cp312, linked against this machine's glibc; the device's must not be older).
# - bitsandbytes' manylinux wheel is 43 MB (CUDA 11.8-13.2 kernels): repacked with the CPU and CUDA 13.x
#   libraries only (the image's torch is cu130), ~3 MB.
# - maturin (a Rust build tool gptqmodel lists as a dependency) is not carried: nothing imports it at run time.
# - llama-cpp-python: no CUDA wheel on the registry and no CUDA compiler here: not carried (GGUF offload is
#   recorded as not checked).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_ROOT_USER_ACTION=ignore
export PIP_CONSTRAINT="${PIP_CONSTRAINT:-$PWD/constraints.txt}"
DEST=.gpu-carry/wheels
PY312="${PY312:-}"
if [ -z "$PY312" ]; then  # a python 3.12 that runs (a pyenv shim without PYENV_VERSION does not)
  for c in python3.12 $(ls -d "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.12*/bin/python3.12 2>/dev/null); do
    if "$c" --version >/dev/null 2>&1; then PY312=$c; break; fi
  done
fi
mkdir -p "$DEST"
grep -qx '/.gpu-carry/' .gitignore || { echo ".gpu-carry/ must be ignored (.gitignore)"; exit 1; }
PLAT=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64)
BINARY=(nltk==3.10.4 defusedxml==0.7.1 platformdirs==4.14.9 torchao==0.18.0 datasets==5.2.0 dill==0.4.1
        multiprocess==0.70.19 bitsandbytes==0.50.2)
SDIST=(rouge-score==0.1.2 gptqmodel==7.6.0 defuser==0.0.28 device-smi==0.5.7 logbar==0.4.15 pypcre==0.6.4
       tokenicer==0.0.14)

have() {  # is a wheel of this name==version already in DEST?
  local n=${1%%==*} v=${1##*==}
  n=$(echo "$n" | tr '-' '_' | tr 'A-Z' 'a-z')
  ls "$DEST" | tr 'A-Z' 'a-z' | grep -q "^${n}-${v}-"
}

for req in "${BINARY[@]}"; do
  have "$req" || timeout 600 python3 -m pip download -q --no-deps --only-binary=:all: "${PLAT[@]}" -d "$DEST" "$req"
done
if [ -z "$PY312" ]; then
  echo "no $PY312 here: the sdist-only packages (${SDIST[*]}) cannot be built for the device's python 3.12" >&2
  exit 1
fi
for req in "${SDIST[@]}"; do
  have "$req" || timeout 900 "$PY312" -m pip wheel -q --no-deps -w "$DEST" "$req"
done

# bitsandbytes: keep the CPU and CUDA 13.x libraries only (RECORD rewritten to match)
python3 - "$DEST" <<'EOF'
import pathlib, re, sys, zipfile
for whl in pathlib.Path(sys.argv[1]).glob("bitsandbytes-*.whl"):
    drop = re.compile(r"bitsandbytes/libbitsandbytes_(cuda1[0-2]\d|rocm\d+|xpu\d+)\.so$")
    with zipfile.ZipFile(whl) as src:
        names = [n for n in src.namelist() if not drop.search(n)]
        if len(names) == len(src.namelist()):
            continue
        tmp = whl.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for n in names:
                data = src.read(n)
                if n.endswith(".dist-info/RECORD"):
                    data = b"".join(l + b"\n" for l in data.splitlines() if not drop.search(l.split(b",")[0].decode()))
                dst.writestr(src.getinfo(n), data)
    tmp.replace(whl)
    print(f"repacked {whl.name}: {whl.stat().st_size / 2**20:.1f} MiB")
EOF

# pypcre's extension links the system's libpcre2-8.so.0 (Debian/Ubuntu's grep needs it, so the image very
# likely has it): a copy travels in .gpu-carry/lib, which gpu_check.sh puts on LD_LIBRARY_PATH only if missing there
mkdir -p .gpu-carry/lib
pcre=$(ldconfig -p | awk '/libpcre2-8.so.0 .*x86-64/ {print $NF; exit}')
[ -n "$pcre" ] && cp -L "$pcre" .gpu-carry/lib/libpcre2-8.so.0

# every wheel must install on python 3.12 (no index, no dependencies: the device's way)
check=$(mktemp -d)
for whl in "$DEST"/*.whl; do
  "$PY312" -m pip install -q --no-index --no-deps --no-compile --target "$check" "$whl" \
    || { echo "does not install on python 3.12: $whl" >&2; exit 1; }
done
rm -rf "$check"

if [ "${1:-}" = --demo ]; then
  # the demo models, built with this checkout's code (the cache key covers it; a stale cache is rebuilt there)
  PYTHONPATH="$PWD" timeout 3600 python3 -c "
from auditq.demo.build import build_demo
print(build_demo(cache_dir='.gpu-carry/demo', log=print).base.parent)"
  find .gpu-carry/demo -name '.*.tmp' -prune -exec rm -rf {} +
fi

du -sh "$DEST"/* | sort -h
total=$(du -sm .gpu-carry | cut -f1)
echo ".gpu-carry: ${total} MiB (the checkout adds ~2 MiB; 64 MiB travel in all)"
[ "$total" -le 56 ] || { echo ".gpu-carry is over 56 MiB: it would not travel with the checkout" >&2; exit 1; }
