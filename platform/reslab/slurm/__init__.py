"""SLURM: `env` (facts about the job this process runs in; stdlib only), `script` (sbatch
rendering), `submit` (sbatch from a config or a sweep spec), `status` (queue state of runs)."""
