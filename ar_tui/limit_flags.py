"""The per-run limit flags of `ar-tui run` (ar_tui.core.limits checks their values)."""

from __future__ import annotations

import argparse


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit-memory", metavar="SIZE",
                        help="each run's memory cap, e.g. 8GiB, or none (default: [limits] memory, else the "
                             "machine's memory less a reserve for the engine, shared by the slots)")
    parser.add_argument("--limit-processes", metavar="N",
                        help="each run's cap on processes and threads, or none (default: [limits] processes, else 4096)")
    parser.add_argument("--limit-writes", metavar="SIZE",
                        help="each run's cap on bytes written to its worktree and scratch dir, or none "
                             "(default: [limits] writes, else half the run dir's free space)")
