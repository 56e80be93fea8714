"""Sweeps: `spec` (the YAML spec as a typed schema; no Ray), `tune` (Ray Tune trials, each
calling the one `run.train.fit` path), `results` (sweep.csv, best_config.yaml, the printed table)."""
