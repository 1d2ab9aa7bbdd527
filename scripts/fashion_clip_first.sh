#!/usr/bin/env bash
# Worker 2's queue after its MNIST reruns, reordered so that a Fashion-MNIST CLIP network exists early (Fig. 1
# needs one, and it is the row Table 1's comparison turns on): fashion-clip90-s0 first (claimed like a
# `reproduce --share` run, so worker 1 skips it), then the rest of the Fashion queue. Same code as
# scripts/long_runs.sh (its worktree, checked by tree hash), same environment, same results folder.
#   usage: scripts/fashion_clip_first.sh [PID to wait for]    (e.g. the MNIST reproduce process still running)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
TREE=545fa7990f478a491bee7433ff7c8b948411940b
tree=$here/../runs-${TREE:0:8}
[ "$(git -C "$tree" rev-parse 'HEAD^{tree}')" = "$TREE" ] || { echo "$tree does not hold the long runs' code ($TREE)" >&2; exit 1; }
(
  cd "$tree"
  export PYTHONPATH=$tree CLIPBOOK_DATA=${CLIPBOOK_DATA:-$here/../shared/data} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TQDM_DISABLE=1
  if [ -n "${1:-}" ]; then while kill -0 "$1" 2>/dev/null; do sleep 20; done; fi
  "$here/.venv/bin/python" - "$here/results" <<'PY'
import sys
from clipbook.cli import main
from clipbook.storage import claim
results = sys.argv[1]
lock = claim(results, "fashion-clip90-s0")
if lock is None:
    print("fashion-clip90-s0 is claimed by a live worker: skipped", file=sys.stderr)
else:
    try:
        main(["train", "--dataset", "fashion", "--method", "clip", "--target", "0.9", "--seed", "0",
              "--device", "cpu", "--results", results])
    finally:
        lock.unlink(missing_ok=True)
PY
  for args in "--datasets fashion --seeds 0" "--datasets fashion --seeds 1 2"; do
    "$here/.venv/bin/python" -m clipbook reproduce $args --share --device cpu --results "$here/results"
  done
) >> "$here/logs/worker2.log" 2>&1 &
echo "worker 2's Fashion queue started (clip90-s0 first); log: $here/logs/worker2.log"
