"""Command line: ``python -m hfl_lite <command> [options]`` (also installed as ``hfl-lite``).

Each command lives in the module that owns its work; this file only dispatches, importing a
command's module when it is called so that ``--help`` stays fast. Expected failures
(:mod:`hfl_lite.errors`) end with one line on stderr and status 1; ``--debug``, anywhere on the
command line, shows their traceback instead.
"""
from __future__ import annotations

import importlib
import sys

from hfl_lite.errors import EXPECTED_ERRORS, one_line

# command -> (module, function taking argv, one-line help)
COMMANDS = {
    "synth": ("hfl_lite.synth.generate", "main", "render synthetic HO3D-/Dex-YCB-format sets"),
    "train": ("hfl_lite.training.cli", "train_main", "train HFL-Net (CPU, one GPU or torchrun)"),
    "eval": ("hfl_lite.training.cli", "eval_main", "evaluate a checkpoint on a dataset split"),
    "infer": ("hfl_lite.inference", "main", "hand mesh and object pose for one image"),
    "export": ("hfl_lite.export", "main", "export a checkpoint to ONNX (the network the browser runs)"),
    "bench": ("hfl_lite.bench.cli", "main", "benchmarks measured side by side on this machine"),
    "ablate": ("hfl_lite.ablation", "main", "backbone and interaction ablations on the synthetic set"),
}
DEBUG_FLAG = "--debug"


def _usage() -> str:
    lines = ["usage: python -m hfl_lite <command> [options] [--debug]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines.append("\n`python -m hfl_lite <command> --help` describes a command's options. Errors the user can fix "
                 f"print one line; {DEBUG_FLAG} shows their traceback.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hfl_lite: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        result = getattr(importlib.import_module(module), func)(rest)
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        print(f"python -m hfl_lite {name}: error: {one_line(err)} ({DEBUG_FLAG} shows the traceback)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"python -m hfl_lite {name}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
