"""Sweeps: `spec` (the YAML spec as a typed schema; no Ray), `tune` (Ray Tune trials, each
calling the one `run.train.fit` path), `results` (sweep.csv, best_config.yaml, the printed table)."""

# The modules other packages use (imported by their dotted names; nothing is imported here).
__all__ = ["results", "spec", "tune"]
