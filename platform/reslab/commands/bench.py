"""`reslab bench`: reslab's training path vs a plain PyTorch loop."""

from __future__ import annotations

import json

from reslab import bench
from reslab.commands import DEFAULT_RECIPE, split_args
from reslab.config.load import load


def run(args) -> int:

    recipes, overrides = split_args(args.items)
    cfg = load(recipes or [DEFAULT_RECIPE], overrides)
    result = bench.bench(cfg, steps=args.steps, rounds=args.rounds)
    print(json.dumps(result, indent=2) if args.json else bench.format_result(result))
    return 0
