"""The command line: ``pyro-node-uq compare | fit`` (also ``python -m pyro_node_uq``)."""
import argparse
import sys

from .compare import add_compare_parser, cmd_compare
from .fit import add_fit_parser

__all__ = ["build_parser", "cmd_compare", "main"]


def build_parser():
    """The ``argparse`` parser of every command."""
    parser = argparse.ArgumentParser(prog="pyro-node-uq", description="Bayesian UQ for neural-ODE models on Pyro.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_compare_parser(sub)
    add_fit_parser(sub)
    return parser


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
