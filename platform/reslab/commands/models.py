"""`reslab models [PATTERN]`: name, family, depth, block, shortcut, parameters and MACs."""

from __future__ import annotations

from reslab import models
from reslab.errors import UserError
from reslab.models.profile import profile


def run(args) -> int:
    names = models.list_models(args.pattern)
    if not names:
        raise UserError(f"no model matches '{args.pattern}' (try `reslab models` for all)")
    rows = []
    for name in names:
        info = models.info(name)
        params, macs = profile(name)
        rows.append((name, info.family, str(info.depth or info.default_depth),
                     info.block or "-", info.shortcut or "-", f"{params:,}", _human(macs)))
    header = ("name", "family", "depth", "block", "shortcut", "params", "MACs")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.rjust(w) if i >= 5 else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths))).rstrip())
    return 0


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}G" if n >= 1e9 else f"{n / 1e6:.1f}M"
