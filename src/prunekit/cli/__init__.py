"""The ``prunekit`` command line.

Each command lives in its own module ``prunekit.cli.cmd_<name>`` exposing
``add_parser(subparsers)`` and ``run(args) -> int``; :data:`COMMANDS` lists them
in the order ``--help`` shows. User errors print one line
(``prunekit: error: ...``) and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys

COMMANDS = (
    "models", "train", "eval", "profile", "prune", "sparsify", "compress", "decompress",
    "binarize", "export", "search", "analyze", "run", "demo",
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prunekit: error: ...`` and a pointer to ``--help``, exit status 2.

    argparse prints the whole usage before an error (11-16 lines for most commands),
    which buries the one line that matters; sub-parsers inherit this class.
    """

    def error(self, message):
        self.exit(2, f"prunekit: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = _Parser(
        prog="prunekit",
        description="Make trained PyTorch networks smaller and faster: prune, compress, binarize, "
                    "search, and measure accuracy, size and latency.",
        epilog="Run 'prunekit COMMAND --help' for the options of one command.",
    )
    from prunekit import __version__

    parser.add_argument("--version", action="version", version=f"prunekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"prunekit.cli.cmd_{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prunekit`` console script."""
    from prunekit.errors import PrunekitError

    parser = build_parser()
    args = parser.parse_args(argv)
    # recorded in every report's provenance (prunekit.runs): the arguments parsed, not the host's sys.argv
    args.command_line = shlex.join(["prunekit", *(sys.argv[1:] if argv is None else argv)])
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    import warnings

    # warnings reach a command-line user as one line, like errors, instead of a source location and code line;
    # restored afterwards so that ``main`` called from Python leaves the caller's formatting as it was
    plain, warnings.formatwarning = warnings.formatwarning, _format_warning
    from prunekit.models.user import cwd_on_path

    try:
        # factories of the user's own (--model, --trust-factory) are found in the current directory too
        with cwd_on_path():
            return int(args._run(args) or 0)
    except (PrunekitError, FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError) as e:
        print(f"prunekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``prunekit models --json | head``): stop quietly like other tools; stdout is
        # pointed at /dev/null so that flushing it at exit does not raise again
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        warnings.formatwarning = plain


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"prunekit: warning: {message}\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
