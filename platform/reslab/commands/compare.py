"""`reslab compare`: the grouped table, and the files written."""

from __future__ import annotations

from reslab.errors import UserError
from reslab.report import compare


def run(args) -> int:
    by = args.by.split(",") if args.by is not None else None
    if by is not None and "" in [k.strip() for k in by]:
        raise UserError(f"--by takes config keys separated by commas (e.g. model.depth,"
                        f"model.shortcut), got {args.by!r}")
    if args.metric is not None and not args.metric.strip():
        raise UserError("--metric is empty; give a metric such as val/err")
    if args.wandb:
        result = compare.compare_wandb(args.wandb, by, args.metric, args.out, args.group,
                                       args.filter, args.publish, args.force)
    elif args.group or args.filter or args.publish:
        raise UserError("--group, --filter and --publish select W&B runs: use them with --wandb "
                        "ENTITY/PROJECT")
    elif not args.dirs:
        raise UserError("give the run or sweep directories to compare (e.g. reslab compare "
                        "runs/quickstart), or --wandb ENTITY/PROJECT")
    else:
        result = compare.compare(args.dirs, by, args.metric, args.out, args.force)
    print(result["table"])
    print("written: " + ", ".join(str(p) for p in result["files"]))
    if result.get("report_url"):
        print(f"W&B report: {result['report_url']}")
    return 0
