# shellcheck shell=bash
# Sourced into a sweep job by reslab.slurm.script (after RAY=<path of the ray command> is set).
# A Ray head on the first node, a worker on each other node; port and temp dir from the job id.
# Token auth stays on: every node and the driver read the token from ~/.ray (shared home); a
# home that has none yet gets one, readable by its owner only ('ray start' would refuse to run).
export RAY_AUTH_MODE=token
(umask 077 && "$RAY" get-auth-token --generate >/dev/null)
mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_ip=$(getent hosts "${nodes[0]}" | awk '{print $1; exit}')
port=$((20000 + SLURM_JOB_ID % 20000))
ray_tmp=/tmp/reslab-ray-$SLURM_JOB_ID
srun --nodes=1 --ntasks=1 -w "${nodes[0]}" "$RAY" start --head --disable-usage-stats \
    --node-ip-address="$head_ip" --port=$port --num-cpus="$SLURM_CPUS_PER_TASK" \
    --temp-dir="$ray_tmp" --include-dashboard=false --block &
head_pid=$!
for _ in $(seq 120); do
  "$RAY" status --address "$head_ip:$port" >/dev/null 2>&1 && break
  kill -0 "$head_pid" 2>/dev/null || { echo "reslab: the Ray head on ${nodes[0]} stopped (above)"; exit 1; }
  sleep 1
done
for node in "${nodes[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" "$RAY" start --disable-usage-stats \
      --address="$head_ip:$port" --num-cpus="$SLURM_CPUS_PER_TASK" --block &
done
joined=0
for _ in $(seq 300); do  # a busy node can take minutes to start its worker
  joined=$("$RAY" status --address "$head_ip:$port" 2>/dev/null | grep -c ' node_' || true)
  [ "$joined" -ge ${#nodes[@]} ] && break
  sleep 1
done
if [ "$joined" -ge ${#nodes[@]} ]; then
  echo "[sweep] Ray: all ${#nodes[@]} nodes joined"
else
  echo "[sweep] only $joined of ${#nodes[@]} nodes joined Ray within 300 s; the trials run on those"
fi
