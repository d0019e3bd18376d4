"""Command line: ``python -m hfl_lite <command> [options]`` (also installed as ``hfl-lite``).

Each command lives in the module that owns its work; this file only dispatches, importing a
command's module when it is called so that ``--help`` stays fast.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module, function taking argv, one-line help)
COMMANDS = {
    "synth": ("hfl_lite.synth.generate", "main", "render synthetic HO3D-/Dex-YCB-format sets"),
    "train": ("hfl_lite.training.cli", "train_main", "train HFL-Net (CPU, one GPU or torchrun)"),
    "eval": ("hfl_lite.training.cli", "eval_main", "evaluate a checkpoint on a dataset split"),
    "infer": ("hfl_lite.inference", "main", "hand mesh and object pose for one image"),
    "bench": ("hfl_lite.bench.cli", "main", "benchmarks measured side by side on this machine"),
    "ablate": ("hfl_lite.ablation", "main", "backbone and interaction ablations on the synthetic set"),
}


def _usage() -> str:
    lines = ["usage: python -m hfl_lite <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines.append("\n`python -m hfl_lite <command> --help` describes a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hfl_lite: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    result = getattr(importlib.import_module(module), func)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
