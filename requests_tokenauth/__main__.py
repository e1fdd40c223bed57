"""``python -m requests_tokenauth`` (also the ``tokenauth`` console script)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="tokenauth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo against the embedded server")
    demo.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    demo.add_argument("--seconds", type=float, default=6.0, help="how long to run (default 6)")
    demo.add_argument("--lifetime", type=int, default=2, help="token lifetime in seconds")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        result = run_demo(
            threads=args.threads, seconds=args.seconds, lifetime_seconds=args.lifetime
        )
        return 0 if result.ok else 1
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
