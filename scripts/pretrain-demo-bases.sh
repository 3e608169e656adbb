#!/usr/bin/env bash
# Rebuild the demo's shipped bases from scratch (src/difusi/assets/): the diffusion base of
# configs/demo-pretrain.yaml and its AR twin (the same recipe, causal, next-token loss throughout).
# About 16 minutes each on two CPU cores. Usage: bash scripts/pretrain-demo-bases.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/demo-bases}
difusi=.venv/bin/difusi
"$difusi" pretrain --config configs/demo-pretrain.yaml --out "$work/demo-base"
"$difusi" pretrain --config configs/demo-pretrain.yaml --objective ar --ar-steps 0 --out "$work/demo-ar-base"
for base in demo-base demo-ar-base; do
    shipped=src/difusi/assets/$base
    rm -rf "$shipped" && mkdir -p "$shipped"
    cp -r "$work/$base"/{model,config.yaml,run_info.json,metrics.jsonl} "$shipped"/
done
