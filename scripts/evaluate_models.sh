#!/usr/bin/env bash
# Score the bundled models (or MODELS_DIR's) on a test set the way RESULTS.md reports them:
# offline and streaming (fp32, int8), greedy and with the bundled LM, next to pocketsphinx.
# One CPU thread each, run one after another so real-time factors are comparable.
#
#   bash scripts/evaluate_models.sh work/corpus/dev.jsonl work/eval
#
# Writes OUT/<name>.txt (the summary line) and OUT/<name>.jsonl (reference/hypothesis pairs),
# then prints a table. pocketsphinx needs `pip install -e ".[results]"`; it is skipped without.
set -euo pipefail
cd "$(dirname "$0")/.."
test_set=${1:?usage: evaluate_models.sh TEST_SET OUT_DIR}
out=${2:?usage: evaluate_models.sh TEST_SET OUT_DIR}
mkdir -p "$out"

run() {  # name, then asr evaluate options
  local name=$1; shift
  echo "== $name" >&2
  asr evaluate "$test_set" --threads 1 --output "$out/$name.jsonl" "$@" | tee "$out/$name.txt"
}

run offline-greedy --lm none
run offline-lm
run streaming-fp32-greedy --streaming --lm none
run streaming-fp32-lm --streaming
run streaming-int8-greedy --streaming --int8 --lm none
run streaming-int8-lm --streaming --int8
if python -c "import pocketsphinx" 2>/dev/null; then
  echo "== pocketsphinx" >&2
  python scripts/eval_pocketsphinx.py "$test_set" --output "$out/pocketsphinx.jsonl" \
    | tee "$out/pocketsphinx.txt"
fi

echo
for f in "$out"/*.txt; do printf '%-24s %s\n' "$(basename "$f" .txt)" "$(cat "$f")"; done
