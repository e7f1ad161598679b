"""The `heartfast` command.

One entry point; each module in `heartfast.commands` adds its subcommands through `register(tree)`,
so features add commands without editing this file. Paths like "data inspect" create groups on demand.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from heartfast import __version__, commands


class CommandTree:
    """Builds nested argparse subcommands from space-separated paths ("data inspect")."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._subparsers = {(): parser.add_subparsers(dest="command", metavar="COMMAND", required=True)}
        self._defaults: dict[str, str] = {}

    def add(self, path: str, help: str, func: Callable[[argparse.Namespace], int | None],
            default: bool = False) -> argparse.ArgumentParser:
        """Add the command at `path`; `default=True` makes it the group's command when none is named."""
        *groups, name = path.split()
        subparsers = self._group(tuple(groups))
        parser = subparsers.add_parser(name, help=help, description=help)
        parser.set_defaults(func=func)
        if default:
            self._defaults[" ".join(groups)] = name
        return parser

    def _group(self, groups: tuple[str, ...]) -> argparse._SubParsersAction:
        if groups not in self._subparsers:
            parent = self._group(groups[:-1])
            group_parser = parent.add_parser(groups[-1], help=f"{groups[-1]} commands")
            self._subparsers[groups] = group_parser.add_subparsers(
                dest="_".join(groups) + "_command", metavar="COMMAND", required=True)
        return self._subparsers[groups]

    def with_defaults(self, argv: list[str]) -> list[str]:
        """Insert a group's default command: `evaluate answers.jsonl` -> `evaluate answers answers.jsonl`."""
        if len(argv) >= 2 and argv[0] in self._defaults:
            group = self._subparsers[(argv[0],)]
            if argv[1] not in group.choices and argv[1] not in ("-h", "--help"):
                return [argv[0], self._defaults[argv[0]], *argv[1:]]
        return argv


def build_parser() -> tuple[argparse.ArgumentParser, CommandTree]:
    parser = argparse.ArgumentParser(prog="heartfast", description="Fast ECG multimodal LLMs (HeartcareGPT, GEM): "
                                     "data, rendering, training, batch inference and evaluation.")
    parser.add_argument("--version", action="version", version=f"heartfast {__version__}")
    tree = CommandTree(parser)
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{module.name}").register(tree)
    return parser, tree


def main(argv: Sequence[str] | None = None) -> int:
    parser, tree = build_parser()
    args = parser.parse_args(tree.with_defaults(list(sys.argv[1:] if argv is None else argv)))
    return int(args.func(args) or 0)
