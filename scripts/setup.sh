#!/usr/bin/env bash
# Idempotent set-up for a fresh clone: makes .venv, installs torch (the CPU build when no GPU is
# present), difusi with its dev tools and the serve and lmeval extras (the tests cover both), and caches
# the offline Indonesian corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
py=.venv/bin/python
pip() { "$py" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored" >&2); }

if ! "$py" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        pip install "torch==$TORCH_VERSION"
    else
        # A bare "torch" pulls a multi-GB CUDA build; TORCH_INDEX_URL may name a CPU-only index.
        pip install "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
    fi
fi

stamp=.venv/.difusi-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    pip install -e ".[dev,serve,lmeval]" "torch==$TORCH_VERSION"
    touch "$stamp"
fi
"$py" -m difusi.synthetic.corpus --ensure >/dev/null
