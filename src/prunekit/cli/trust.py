"""The ``--trust-factory MODULE:FUNCTION`` flag shared by every command that loads a model file.

A prunekit file names the code that builds its architecture: a zoo model, or a
``"module:function"`` factory of the user's own. Building a factory runs its code,
so a file may only name one the user allowed on the command line (see
docs/security.md); the flag is repeatable.
"""
from __future__ import annotations

import argparse


def _factory(value: str) -> str:
    from prunekit.checkpoint import check_factory_name
    from prunekit.errors import CheckpointError

    try:
        return check_factory_name(value)
    except CheckpointError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_trust_flag(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--trust-factory MODULE:FUNCTION`` option (stored as ``args.trust_factory``)."""
    parser.add_argument(
        "--trust-factory", metavar="MODULE:FUNCTION", action="append", type=_factory, default=[],
        help="allow model files to build their architecture with this Python factory of your own (it is imported "
             "and run); repeatable. Without it only zoo models load. See docs/security.md")


def trusted(args) -> tuple[str, ...]:
    """The factories the user trusted on the command line (an empty tuple for none)."""
    return tuple(getattr(args, "trust_factory", None) or ())
