#!/bin/bash
# ar-tui on a Slurm allocation of N GPU nodes, its trials on Ray.
#
#   sbatch --nodes=4 docs/clusters/slurm.sh            # from the target repository
#   ssh <first node of the job>; ar-tui attach ~/ar-tui-run-$SLURM_JOB_ID
#
# The engine runs on the first node with the Ray head; every node gives Ray
# its GPUs; each trial gets its commit from the engine (no shared filesystem
# is needed for the code; the run dir lives on the head node's home).
#
# Written from Ray's "Deploying on Slurm" guide (doc_code/slurm-basic.sh):
# one Slurm task per node, the head's address from `hostname --ip-address`,
# `ray start --block` under srun so Slurm owns (and ends) every Ray process.
#
#SBATCH --job-name=ar-tui
#SBATCH --nodes=2
#SBATCH --exclusive
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-task=8
#SBATCH --cpus-per-task=32
#SBATCH --time=08:30:00
#SBATCH --output=ar-tui-%j.out

set -euo pipefail

# The same environment on every node (Ray refuses mismatched versions):
# a venv on a shared home, or a module/conda line of your site's.
# On a node, `python` in the target's commands is this environment's too.
source "${AR_TUI_VENV:-$HOME/ar-tui-venv}/bin/activate"   # holds: pip install 'ar-tui[ray]' (+ the target's deps)

nodes=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
nodes_array=($nodes)
head_node=${nodes_array[0]}
head_node_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address)
# Several addresses (IPv6 first): keep the IPv4 one, as Ray's guide does.
if [[ "$head_node_ip" == *" "* ]]; then
  IFS=' ' read -ra addresses <<<"$head_node_ip"
  if [[ ${#addresses[0]} -gt 16 ]]; then head_node_ip=${addresses[1]}; else head_node_ip=${addresses[0]}; fi
fi
port=6379
export RAY_ADDRESS="$head_node_ip:$port"

srun --nodes=1 --ntasks=1 -w "$head_node" \
  ray start --head --node-ip-address="$head_node_ip" --port=$port \
  --num-cpus "$SLURM_CPUS_PER_TASK" --num-gpus "$SLURM_GPUS_PER_TASK" --disable-usage-stats --block &
until ray health-check --address="$RAY_ADDRESS" >/dev/null 2>&1; do sleep 2; done

for ((i = 1; i < SLURM_JOB_NUM_NODES; i++)); do
  srun --nodes=1 --ntasks=1 -w "${nodes_array[$i]}" \
    ray start --address "$RAY_ADDRESS" \
    --num-cpus "$SLURM_CPUS_PER_TASK" --num-gpus "$SLURM_GPUS_PER_TASK" --disable-usage-stats --block &
done
# Every node's GPUs counted before the run sizes its slots (one per GPU).
want_gpus=$((SLURM_JOB_NUM_NODES * SLURM_GPUS_PER_TASK))
until [ "$(python -c 'import ray; ray.init(logging_level="ERROR"); print(int(ray.cluster_resources().get("GPU", 0)))' \
           2>/dev/null)" -ge "$want_gpus" ]; do
  sleep 5
done

# This batch script runs on the first node of the allocation, the head.
run_dir="$HOME/ar-tui-run-$SLURM_JOB_ID"
ar-tui run --detach --executor ray --unattended --run-dir "$run_dir" --hours 8 "$@"
# The allocation lasts as long as the engine; `scancel` ends both, and the
# same run dir resumes in a later allocation (--run-dir "$run_dir").
while [ -e "$run_dir/engine.pid" ] && kill -0 "$(cat "$run_dir/engine.pid")" 2>/dev/null; do
  sleep 60
done
