"""Reports over runs: `runs` (reading run directories), `table` (grouping, mean ± std,
paper deltas), `figures`, `html` (report.html), `compare` (the `reslab compare` command)."""
