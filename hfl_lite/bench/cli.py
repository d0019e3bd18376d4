"""``python -m hfl_lite bench``: speed measured against this machine's own limits.

The command: runs the chosen sections (see :mod:`hfl_lite.bench`), prints one table and writes
the JSON file (``meta``: date, settings, machine, command; ``sections``: each one's records,
seconds and error; ``table``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from hfl_lite.threads import cpu_threads

from .backbone import bench_backbone
from .book import bench_book
from .browser import bench_browser
from .data import bench_data
from .epnp import bench_epnp_section, bench_voting_section
from .inference import bench_inference
from .peak import bench_peak
from .render import bench_render
from .settings import Settings, make_settings
from .timing import cpu_name, load_average
from .train import bench_train

__all__ = ["DEFAULT_OUT", "RUNNERS", "SECTIONS", "format_table", "main", "run"]

DEFAULT_OUT = Path("bench_results") / "bench.json"

RUNNERS: dict[str, Callable[[Settings, dict], list[dict]]] = {
    "peak": bench_peak, "inference": bench_inference, "train": bench_train, "backbone": bench_backbone,
    "epnp": bench_epnp_section, "voting": bench_voting_section, "data": bench_data, "render": bench_render,
    "browser": bench_browser, "book": bench_book,
}

SECTIONS = tuple(RUNNERS)


def _machine() -> dict:
    """What the figures ran on: processor, threads, Python, torch, GPU, load."""
    info = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    load = load_average()
    if load is not None:
        info["load_average"] = load
    return info


def run(sections: tuple[str, ...], settings: Settings, log=print) -> dict:
    """Run the ``sections`` in order; returns the JSON-ready result. A section that raises is
    recorded with its error and the others still run."""
    result = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "settings": asdict(settings), "machine": _machine()},
              "sections": {}}
    context: dict = {}
    for name in sections:
        log(f"[bench] {name} ...")
        start = time.perf_counter()
        try:
            records, error = RUNNERS[name](settings, context), None
        except Exception as err:  # keep going: one broken section should not hide the others
            records, error = [], f"{type(err).__name__}: {err}"
            log(traceback.format_exc())
        result["sections"][name] = {"records": records, "seconds": time.perf_counter() - start, "error": error}
    result["meta"]["load_average_end"] = load_average()
    return result


def format_table(result: dict) -> str:
    """The results as one Markdown table."""
    lines = ["| section | case | result | details |", "|---|---|---:|---|"]
    for name, section in result["sections"].items():
        if section["error"]:
            lines.append(f"| {name} | (failed) | | {section['error']} |")
        for r in section["records"]:
            lines.append(f"| {name} | {r['case']} | {r['value']} | {r['details']} |")
    return "\n".join(lines)


def _sections(text: str | None, book: bool) -> tuple[str, ...]:
    if text is None:
        picked = [s for s in SECTIONS if s != "book"]
    else:
        picked = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in picked if s not in SECTIONS]
        if unknown:
            raise SystemExit(f"hfl_lite bench: unknown section(s) {unknown} in --sections; choices: {', '.join(SECTIONS)}")
    if book and "book" not in picked:
        picked.append("book")
    return tuple(picked)


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batches wants comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--batches wants positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hfl_lite bench`` (see ``--help`` and :mod:`hfl_lite.bench`)."""
    parser = argparse.ArgumentParser(prog="python -m hfl_lite bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="sections: " + ", ".join(SECTIONS))
    parser.add_argument("--tiny", action="store_true", help="small sizes and one run each (a check, ~1-2 min on a CPU)")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file to write (default {DEFAULT_OUT})")
    parser.add_argument("--sections", default=None, help="comma-separated sections to run (default: all but book)")
    parser.add_argument("--book", action="store_true", help="also execute every chapter (takes minutes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for the whole run")
    parser.add_argument("--load-processes", type=int, default=None,
                        help="busy processes competing with the epnp section's second pass (default: one per CPU on a "
                             "CPU run; 0 skips that pass)")
    parser.add_argument("--no-compile", action="store_true",
                        help="time the EPnP and voting solvers eagerly only, not also through torch.compile "
                             "(whose first call compiles: two or three minutes on a small CPU; a tiny run never compiles)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (median reported)")
    parser.add_argument("--batches", type=_batches, default=None, help="inference batch sizes, e.g. 1,32")
    parser.add_argument("--book-root", default=None,
                        help="repository checkout whose chapters the book section runs (default: the checkout "
                             "holding this package)")
    args = parser.parse_args(argv)
    if args.device is not None and args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    sections = _sections(args.sections, args.book)
    if args.load_processes is not None and not 0 <= args.load_processes <= (os.cpu_count() or 1):
        parser.error(f"--load-processes {args.load_processes}: must be between 0 and {os.cpu_count()} (this machine's CPUs)")
    settings = make_settings(args.tiny, args.device, threads=args.threads, repeats=args.repeats,
                             infer_batches=args.batches, book_root=args.book_root, load_processes=args.load_processes,
                             compiled=False if args.no_compile else None)
    with cpu_threads(args.threads):
        result = run(sections, settings, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    result["meta"]["command"] = "python -m hfl_lite bench " + " ".join(sys.argv[1:] if argv is None else argv)
    table = format_table(result)
    result["table"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table)
    print(f"\nwrote {args.out}")
    return 1 if any(section["error"] for section in result["sections"].values()) else 0
