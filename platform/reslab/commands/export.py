"""`reslab export RUN_DIR|CKPT`: the network as TorchScript, ONNX or a state dict, checked."""

from __future__ import annotations

from reslab.run import export


def run(args) -> int:
    result = export.export(args.run, args.format, args.out, force=args.force)
    print(f"model:    {result['model']}\nmetadata: {result['meta']}\ncheck:    {result['check']}")
    return 0
