"""`hf-srdistill <command> [--config FILE] [--section.key=value ...]`.

Config commands map a root config dataclass to one importable function; the Hub
commands (push-dataset, push-model, reproduce) take plain arguments and live in
hf_srdistill.hub.cli. Imports are lazy so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hf_srdistill import config as C
from hf_srdistill.configio import ConfigError, load_config

# command -> (root config class, "module:function", one-line help)
CONFIG_COMMANDS = {
    "main": (C.MainJobConfig, "hf_srdistill.pipeline:run_main",
             "distil the data, train a judge model on every set, evaluate all in one table"),
    "distill": (C.DistillJobConfig, "hf_srdistill.distill:distill", "distil a dataset into a synthetic set"),
    "train": (C.TrainJobConfig, "hf_srdistill.train:train_sr", "train an SR model"),
    "evaluate": (C.EvalJobConfig, "hf_srdistill.evaluate:evaluate", "evaluate an SR model on test sets"),
}
HUB_COMMANDS = ("push-dataset", "push-model", "reproduce")
# commands with their own argument parsing: command -> "module:main(argv)"
ARGV_COMMANDS = {**{name: "hf_srdistill.hub.cli:main" for name in HUB_COMMANDS},
                 "reproduce-study": "hf_srdistill.study:main", "cache": "hf_srdistill.data.cache:main"}


def known_errors() -> tuple[type[BaseException], ...]:
    """Errors that explain themselves in one line: printed without a traceback, exit 2."""
    from hf_srdistill.data.errors import DataNotFoundError
    from hf_srdistill.data.set_folder import IncompleteSetError
    from hf_srdistill.distill.loop import DistillationDiverged
    from hf_srdistill.hub.folders import FolderError
    from hf_srdistill.io import CorruptFileError, UnwritableError

    return (ConfigError, DataNotFoundError, IncompleteSetError, FolderError, CorruptFileError, UnwritableError,
            DistillationDiverged)


def _resolve(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def parse_config(command: str, argv: list[str]):
    """Split argv into --config and dotted overrides and build the typed config."""
    cls = CONFIG_COMMANDS[command][0]
    parser = argparse.ArgumentParser(prog=f"hf-srdistill {command}",
                                     description=CONFIG_COMMANDS[command][2],
                                     epilog="Any field can be overridden as --section.key=value.")
    parser.add_argument("--config", help="YAML file under configs/")
    args, rest = parser.parse_known_args(argv)
    return load_config(cls, args.config, rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = list(CONFIG_COMMANDS) + list(ARGV_COMMANDS)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        lines = [f"  {name:<15} {CONFIG_COMMANDS[name][2]}" for name in CONFIG_COMMANDS]
        lines += [f"  {name:<15} see `hf-srdistill {name} --help`" for name in ARGV_COMMANDS]
        print("usage: hf-srdistill <command> [--config FILE] [--section.key=value ...]\n\ncommands:\n"
              + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "cache":
        return _resolve(ARGV_COMMANDS[command])(rest)
    if command in ARGV_COMMANDS:
        return _resolve(ARGV_COMMANDS[command])([command, *rest])
    try:
        cfg = parse_config(command, rest)
    except (ConfigError, ValueError) as err:
        print(f"hf-srdistill {command}: config error: {err}", file=sys.stderr)
        return 2
    try:
        _resolve(CONFIG_COMMANDS[command][1])(cfg)
    except known_errors() as err:
        print(f"hf-srdistill {command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
