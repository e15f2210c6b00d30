"""The ``securechat`` command line: one ``_cmd_*`` function per subcommand, added in ``_build_parser``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

__all__ = ["main"]

_Command = Callable[[argparse.Namespace], int]


def _cmd_build_tiny_model(args: argparse.Namespace) -> int:
    from securechat.tiny_model import build_tiny_model, tiny_model_dir

    print(build_tiny_model(tiny_model_dir(args.cache_dir), force=args.force))
    return 0


def _add_build_tiny_model(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "build-tiny-model",
        help="build the embedded tiny Qwen2 model into the cache and print its directory",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default: $SECURECHAT_CACHE_DIR or ~/.cache/securechat)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the model is already there")
    parser.set_defaults(command=_cmd_build_tiny_model)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="securechat", description="SecureChat tools.")
    subparsers = parser.add_subparsers(metavar="COMMAND", required=True)
    _add_build_tiny_model(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    command: _Command = args.command
    return command(args)


if __name__ == "__main__":
    raise SystemExit(main())
