"""`reslab compare`: the grouped table, and the files written."""

from __future__ import annotations

from reslab.report import compare


def run(args) -> int:
    by = args.by.split(",") if args.by else None
    if args.wandb:
        result = compare.compare_wandb(args.wandb, by, args.metric)
    else:
        result = compare.compare(args.dirs, by, args.metric, args.out)
    print(result["table"])
    print("written: " + ", ".join(str(p) for p in result["files"]))
    return 0
