"""The command line: ``pyro-node-uq compare | fit`` (also ``python -m pyro_node_uq``)."""
import argparse
import sys

from .common import UsageError
from .compare import add_compare_parser, cmd_compare
from .fit import add_fit_parser

__all__ = ["UsageError", "build_parser", "cmd_compare", "main"]


def build_parser():
    """The ``argparse`` parser of every command."""
    parser = argparse.ArgumentParser(prog="pyro-node-uq", description="Bayesian UQ for neural-ODE models on Pyro.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_compare_parser(sub)
    add_fit_parser(sub)
    return parser


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    A bad argument is reported like ``argparse`` does: the message on stderr and ``SystemExit`` with status 2
    (:class:`~pyro_node_uq.cli.common.UsageError`), before any work begins."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"pyro-node-uq {args.command}: {e}", file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
