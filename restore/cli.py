"""The ``restore`` command. Each modality registers its own subcommand; this file only dispatches.

Bad input raises :class:`restore.errors.InputError` anywhere below; it is printed as one line and
the process exits with code 2. ``--debug`` shows the traceback of unexpected errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from restore import __version__
from restore.errors import InputError

# module -> it defines register(subparsers); each subcommand sets func(args) -> int
SUBCOMMANDS = ["restore.mri.cli", "restore.audio.cli", "restore.training_cli"]
# commands served by flows/ (Prefect, the `flows` extra): imported only when used, so restore/ never imports Prefect
FLOW_PACKAGES = ("flows", "prefect", "prefect_dask", "dask", "distributed", "fastapi", "sqlalchemy")
FLOW_COMMANDS = {"batch": "run a folder, glob or CSV manifest as a Prefect batch",
                 "serve": "start a Prefect server and the scheduled inbox deployment"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="restore", description="Restore noisy MRI volumes and damaged audio.")
    parser.add_argument("--version", action="version", version=f"restore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    for name, help_text in FLOW_COMMANDS.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=None, flow_command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # flow commands take options before their first positional too (`restore serve --help`): argparse's
    # REMAINDER only starts at a positional, so options ahead of it arrive as unknown and are forwarded
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "flow_command", None):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if getattr(args, "flow_command", None):
            return _run_flow_command(args.flow_command, [*unknown, *args.rest])
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"restore: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("restore: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the command line never shows a traceback by default
        if args.debug:
            raise
        print(f"restore: error: {type(e).__name__}: {e} (run with --debug for details)", file=sys.stderr)
        return 1


def _run_flow_command(command: str, argv: list[str]) -> int:
    """``restore batch|serve ...``: flows/ and Prefect are imported here, or one line says how to install them."""
    try:
        flows_cli = importlib.import_module("flows.cli")  # first: it sets Prefect's environment defaults
        importlib.import_module("prefect")
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in FLOW_PACKAGES:
            raise
        print(f"restore: error: `restore {command}` needs the flows extra ({e.name} is not installed): "
              f"pip install 'restore[flows]' -c constraints.txt", file=sys.stderr)
        return 2
    return flows_cli.main([command, *argv])


if __name__ == "__main__":
    sys.exit(main())
