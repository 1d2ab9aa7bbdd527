#!/usr/bin/env bash
# Commit every finished long run in results/ (its JSON, figure tensors and, for MNIST, checkpoints) at once,
# one commit per run, with the run's headline numbers in the message. Runs still being written have no JSON yet
# (results are written atomically at the end of a run), so only finished runs are picked up.
set -euo pipefail
cd "$(dirname "$0")/.."
for json in $(git status --porcelain --untracked-files=all -- results/ | awk '{print $2}' | grep -E '^results/[^/]+-s[0-9]+\.json$' || true); do
  name=$(basename "$json" .json)
  files=("$json")
  for f in "results/$name.artifacts.pt" "results/checkpoints/$name.pt" "results/checkpoints/$name.final.pt"; do
    [ -e "$f" ] && ! git check-ignore -q "$f" && files+=("$f")
  done
  msg=$(.venv/bin/python - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["metrics"]; f = r.get("final", {}).get("metrics", {})
p = r["provenance"]
print(f"Run {r['name']} ({r['config']['epochs']} epochs, {p['device']}, commit {p['git_commit'][:7]}, "
      f"train {p['train_wall_s']/60:.0f} min): selected epoch {m['best_epoch']} test {m['test']:.1f} PGD {m['pgd']:.1f} "
      f"worst {r['robust']['worst'][0]:.1f}; final test {f.get('test', float('nan')):.1f} PGD {f.get('pgd', float('nan')):.1f}")
PY
)
  git add -- "${files[@]}"
  git commit -q -m "$msg" -- "${files[@]}" && echo "committed $name"
done
