#!/usr/bin/env bash
# The long Table 1 runs in the background, resumable: a git worktree at a fixed commit (so that edits in this
# checkout cannot break a running job), two workers with one thread each, nice'd, sharing one queue through
# claims (`reproduce --share`), writing into this checkout's results/. Interrupted runs resume from their last
# finished epoch (state in $CLIPBOOK_CACHE, default ~/.cache/clipbook). Commit finished runs with
# scripts/commit_finished_runs.sh.
#   usage: scripts/long_runs.sh [WORKTREE]      (default: ../runs-<first 8 characters of TREE>)
# The code of the runs: eacf211 with three later runner/attack commits cherry-picked (3944570: L2 PGD at the
# same arithmetic, faster; 84e6a59: the final network's worst case by the cascade only; ef4f0a5: the ladder's
# check cascade on the ladder's own images; -X ours keeps eacf211's tests where later tests conflict). The
# worktree's tree must be exactly TREE below. Runs stored before it: mnist-standard-s0 (eacf211: its final
# network also has the ladder), mnist-weight_reg*-s0 and mnist-clip95-s0 (eacf211 + the first two): the same
# training and Table 1 numbers, see scripts/compare_reruns.py.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
TREE=545fa7990f478a491bee7433ff7c8b948411940b
tree=${1:-$here/../runs-${TREE:0:8}}
if [ ! -d "$tree" ]; then
  git -C "$here" worktree add --detach "$tree" eacf211
  git -C "$tree" -c user.name=clipbook -c user.email=clipbook@localhost cherry-pick -X ours 3944570 84e6a59 ef4f0a5 >/dev/null
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
