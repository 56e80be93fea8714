"""Secrets never reach a run's records: values under secret-looking keys and any value equal to
a secret in the environment are masked, in config.yaml, summary.json, an attempt's overrides and
what goes to W&B."""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_KEY = re.compile(r"(api_?key|token|secret|password|passwd)", re.I)
SECRET_ENV = ("WANDB_API_KEY",)


def redact(obj: Any) -> Any:
    """Mask values under secret-looking keys and any value equal to a secret in the environment."""
    env_secrets = {v for k in SECRET_ENV if (v := os.environ.get(k))}
    if isinstance(obj, dict):
        return {k: "***" if SECRET_KEY.search(str(k)) and v else redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and any(s in obj for s in env_secrets):
        return "***"
    return obj


def redact_overrides(overrides: list[str]) -> list[str]:
    """KEY=VALUE items as given, with the value masked under a secret-looking key."""
    return [f"{k}=***" if SECRET_KEY.search(k) and sep else redact(f"{k}{sep}{v}")
            for k, sep, v in (str(o).partition("=") for o in overrides)]
