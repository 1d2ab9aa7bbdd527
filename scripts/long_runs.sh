#!/usr/bin/env bash
# The long Table 1 runs in the background, resumable: a git worktree at a fixed commit (so that edits in this
# checkout cannot break a running job), two workers with one thread each, nice'd, sharing one queue through
# claims (`reproduce --share`), writing into this checkout's results/. Interrupted runs resume from their last
# finished epoch (state in $CLIPBOOK_CACHE, default ~/.cache/clipbook). Commit finished runs with
# scripts/commit_finished_runs.sh.
#   usage: scripts/long_runs.sh [COMMIT] [WORKTREE]      (defaults: eacf211, ../runs)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
commit=${1:-eacf211}
tree=${2:-$here/../runs}
[ -d "$tree" ] || git -C "$here" worktree add --detach "$tree" "$commit"
[ "$(git -C "$tree" rev-parse --short=7 HEAD)" = "${commit:0:7}" ] || { echo "$tree is not at $commit" >&2; exit 1; }
mkdir -p "$here/logs"
queue() {  # one worker: its queue of reproduce commands, in order
  cd "$tree"
  export PYTHONPATH=$tree CLIPBOOK_DATA=${CLIPBOOK_DATA:-$here/../shared/data} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TQDM_DISABLE=1
  for args in "$@"; do
    nice -n 10 "$here/.venv/bin/python" -m clipbook reproduce $args --share --device cpu --results "$here/results"
  done
}
queue "--datasets fashion --seeds 0" "--datasets mnist --seeds 0 1 2" "--datasets fashion --seeds 1 2" \
  > "$here/logs/worker1.log" 2>&1 &
sleep 5
queue "--datasets mnist --seeds 0 1 2" "--datasets fashion --seeds 0" "--datasets fashion --seeds 1 2" \
  > "$here/logs/worker2.log" 2>&1 &
echo "two workers started; logs in $here/logs/, claims in $here/results/.claims/"
