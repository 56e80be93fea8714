"""SLURM: `script` (sbatch rendering), `submit` (sbatch from a config or a sweep spec), `status`
(queue state of runs). Facts about the job this process runs in are reslab.environment's."""

# The modules the commands use (imported by their dotted names; nothing is imported here).
__all__ = ["status", "submit"]
