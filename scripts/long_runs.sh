#!/usr/bin/env bash
# The long Table 1 runs in the background, resumable: a git worktree at a fixed commit (so that edits in this
# checkout cannot break a running job), two workers with one thread each, nice'd, sharing one queue through
# claims (`reproduce --share`), writing into this checkout's results/. Interrupted runs resume from their last
# finished epoch (state in $CLIPBOOK_CACHE, default ~/.cache/clipbook). Commit finished runs with
# scripts/commit_finished_runs.sh.
#   usage: scripts/long_runs.sh [WORKTREE]      (default: ../runs-longruns)
# The code of the runs: eacf211 with the two later runner/attack commits cherry-picked (3944570: L2 PGD at the
# same arithmetic, faster; 84e6a59: the final network's worst case by the cascade only). The worktree's tree
# must be exactly TREE below, so that every run of Table 1 comes from the same code.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tree=${1:-$here/../runs-longruns}
TREE=131500c88d5b078f3e1dd8d69266e8edb4735884
if [ ! -d "$tree" ]; then
  git -C "$here" worktree add --detach "$tree" eacf211
  git -C "$tree" -c user.name=clipbook -c user.email=clipbook@localhost cherry-pick 3944570 84e6a59 >/dev/null
fi
[ "$(git -C "$tree" rev-parse 'HEAD^{tree}')" = "$TREE" ] || { echo "$tree does not hold the long runs' code ($TREE)" >&2; exit 1; }
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
