"""`reslab bench`: reslab's training path vs plain PyTorch loops. Exit status 1 when a ratio
was refused because the loops did not do the same work (the output says what differed)."""

from __future__ import annotations

import contextlib
import json
import sys

import torch

from reslab import bench
from reslab.commands import DEFAULT_RECIPE, split_args
from reslab.config.load import load


def run(args) -> int:
    recipes, overrides = split_args(args.items)
    cfg = load(recipes or [DEFAULT_RECIPE], overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    with contextlib.redirect_stdout(sys.stderr):  # epoch lines while timing: not the result
        result = bench.bench(cfg, steps=args.steps, rounds=args.rounds, warmup=args.warmup,
                             pipelines=args.pipelines)
    print(json.dumps(result, indent=2) if args.json else bench.format_result(result))
    for name, why in result.get("refused", {}).items():
        print(f"reslab bench: {name}: {why}", file=sys.stderr)
    return 1 if result.get("refused") else 0
