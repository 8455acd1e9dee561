#!/usr/bin/env bash
# Every method on the default model, imdb task, VADER reward, at an equal generation budget
# of 160 sampled responses (SFT samples none; DPO samples 2 per built-in query = 128), then
# the table of held-out reward before/after. Usage: bash benchmarks/methods_imdb.sh [OUT]
set -euo pipefail
OUT=${1:-runs/methods_imdb}
SHARED=${SHARED:-../shared/data}
COMMON=(--task imdb --model default --reward vader --eval-queries 32 --seed 0
        --learning-rate 3e-4 --max-new-tokens 48 --overwrite)
run() { local name=$1; shift; /usr/bin/time -f "$name %e s" ple train "${COMMON[@]}" \
        --output-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 || { tail -5 "$OUT/$name.log"; exit 1; }; }
mkdir -p "$OUT"
run ple  --method ple --max-steps 10 --batch-size 8 --replay-window 1 --sft-anchor 1.0
run raft --method raft --max-steps 5 --batch-size 8 --raft-k 4
run rloo --method rloo --max-steps 10 --batch-size 8
run ppo  --method ppo --max-steps 20 --batch-size 8
run dpo  --method dpo --max-steps 10 --batch-size 8
run sft  --method sft --max-steps 10 --batch-size 8 --data "$SHARED/imdb/train.jsonl"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| method | generated responses | optimizer steps | reward before | reward after | base PPL before → after | distinct-2 before → after |")
print("|---|---|---|---|---|---|---|")
for name in ("ple", "raft", "rloo", "ppo", "dpo", "sft"):
    s = json.loads((out / name / "summary.json").read_text())
    rows = [json.loads(l) for l in open(out / name / "metrics.jsonl")]
    b, a = s["eval_before"], s["eval_after"]
    print(f"| {name} | {rows[-1]['generated_responses']} | {rows[-1]['optimizer_steps']} | "
          f"{b['reward_mean']:+.3f} ± {b['reward_se']:.3f} | {a['reward_mean']:+.3f} ± {a['reward_se']:.3f} | "
          f"{b['base_perplexity']:.1f} → {a['base_perplexity']:.1f} | {b['distinct_2']:.3f} → {a['distinct_2']:.3f} |")
PY
