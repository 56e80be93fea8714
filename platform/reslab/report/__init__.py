"""Reports over runs: `runs` (reading run directories), `table` (grouping, mean ± std,
paper deltas), `figures`, `html` (report.html), `compare` (the `reslab compare` command)."""

# The modules other packages use: compare (the command), table (sweep.results' table).
__all__ = ["compare", "table"]
