#!/usr/bin/env bash
# Issue 11's unseen-task check: LoRA (the demo recipe) on extractive QA over names and places that
# neither the base nor the demo's tasks contain. Usage: bash experiments/unseen.sh DEMO_OUT WORK
set -euo pipefail
demo=$1 work=$2
difusi=${DIFUSI:-.venv/bin/difusi}
PYTHONPATH=src .venv/bin/python experiments/unseen.py "$work/data" > /dev/null
"$difusi" train --config configs/demo-lora.yaml --base "$demo/base/model" --data "$work/data/train" \
    --max-steps 200 --out "$work/lora"
for run in base lora; do
    adapter=(); [ "$run" = lora ] && adapter=(--adapter "$work/lora/adapter")
    "$difusi" evaluate --base "$demo/base/model" "${adapter[@]}" --data "$work/data/test.parquet" \
        --out "$work/$run/eval" --label "$run" --steps 32 --gen-length 32 --block-length 32 --mc-num 4 \
        --batch-size 16 --max-length 192 --no-progress
done
"$difusi" compare "$work/base" "$work/lora" --out "$work/report"
sed -n '/## Headline/,/## 95%/p' "$work/report/report.md"
