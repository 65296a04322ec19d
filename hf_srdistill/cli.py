"""`hf-srdistill <command> [--config FILE|NAME] [--section.key=value ...]`.

Config commands map a root config dataclass to one importable function; the Hub
commands (push-dataset, push-model, reproduce), `upscale`, `reproduce-study` and `cache`
take plain arguments. Imports are lazy so `--help` stays fast (no torch).
`--config NAME` (no slash, no .yaml) names a config shipped in the package
(hf_srdistill/configs, which the repo's top-level configs/ links to).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import importlib
import inspect
import io
import logging
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Iterator

from hf_srdistill import __version__
from hf_srdistill import config as C
from hf_srdistill.configio import ConfigError, bundled_configs_dir, load_config

# command -> (root config class, "module:function", one-line help)
CONFIG_COMMANDS = {
    "main": (C.MainJobConfig, "hf_srdistill.pipeline:run_main",
             "distil the data, train a judge model on every set, evaluate all in one table"),
    "distill": (C.DistillJobConfig, "hf_srdistill.distill:distill", "distil a dataset into a synthetic set"),
    "baseline": (C.BaselineJobConfig, "hf_srdistill.distill.baselines:build_baseline",
                 "an equal-budget baseline set (downscaled, random, coreset, mosaic, mixed or representative) to "
                 "compare a distilled set with"),
    "train": (C.TrainJobConfig, "hf_srdistill.train:train_sr", "train an SR model"),
    "evaluate": (C.EvalJobConfig, "hf_srdistill.evaluate:evaluate", "evaluate an SR model on test sets"),
}
# where each config command writes, when its function does not return a path
OUTPUT_FIELDS = {"main": "output_dir", "distill": "distill.output_dir", "baseline": "distill.output_dir",
                 "train": "train.output_dir", "evaluate": "eval.output_dir"}
HUB_COMMANDS = ("push-dataset", "push-model", "reproduce")
# commands with their own argument parsing: command -> "module:main(argv)"
ARGV_COMMANDS = {"upscale": "hf_srdistill.upscale:main",
                 **{name: "hf_srdistill.hub.cli:main" for name in HUB_COMMANDS},
                 "reproduce-study": "hf_srdistill.study:main", "cache": "hf_srdistill.data.cache:main",
                 "plan": "hf_srdistill.plan:main"}
ARGV_HELP = {"upscale": "super-resolve an image file or folder with a saved model (file/folder -> PNGs)",
             "plan": "time a distill/main config on this machine; project wall time, memory, disk (plan.json)"}
VERBOSITY = {"-v": logging.DEBUG, "--verbose": logging.DEBUG, "-q": logging.WARNING, "--quiet": logging.WARNING}


def known_errors() -> tuple[type[BaseException], ...]:
    """Errors that explain themselves in one line: printed without a traceback, exit 2."""
    from hf_srdistill.data.errors import DataNotFoundError
    from hf_srdistill.data.set_folder import IncompleteSetError
    from hf_srdistill.distill.loop import DistillationDiverged
    from hf_srdistill.hub.folders import FolderError
    from hf_srdistill.io import CorruptFileError, UnwritableError
    from hf_srdistill.models import ModelNotFoundError
    from hf_srdistill.upscale import UpscaleArgumentError

    return (ConfigError, DataNotFoundError, IncompleteSetError, FolderError, CorruptFileError, UnwritableError,
            DistillationDiverged, ModelNotFoundError, UpscaleArgumentError)


# ---- bundled configs ----------------------------------------------------------------------

def bundled_config_names() -> list[str]:
    return sorted(p.stem for p in bundled_configs_dir().glob("*.yaml"))


def resolve_config(value: str | Path | None) -> Path | None:
    """``--config`` value -> a file: a path as given, or NAME (no slash, no .yaml) -> a bundled config."""
    if value is None:
        return None
    text = str(value)
    if "/" in text or "\\" in text or text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return Path(text)
    path = bundled_configs_dir() / f"{text}.yaml"
    if not path.is_file():
        names = bundled_config_names()
        close = difflib.get_close_matches(text, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"no bundled config named {text!r}; {hint}available: {', '.join(names)} "
                          f"(or pass a path to a YAML file)")
    return path


# ---- config fields, documented from the source comments of hf_srdistill/config.py ---------

@dataclasses.dataclass
class FieldDoc:
    name: str  # dotted, e.g. distill.tm.syn_steps
    type: str
    default: Any
    comment: str


def _source_docs(cls: type) -> dict[str, tuple[str, str]]:
    """field -> (annotation as written, the comment lines right above it) from the class source."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}  # line number -> text of a line that holds only a comment
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT and tok.line.strip().startswith("#"):
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    node = ast.parse(src).body[0]
    docs = {}
    for item in getattr(node, "body", []):
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            line, block = item.lineno - 1, []
            while line in comments:
                block.insert(0, comments[line])
                line -= 1
            docs[item.target.id] = (ast.unparse(item.annotation), " ".join(block))
    return docs


def _pretty_type(annotation: str) -> str:
    try:
        node = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return annotation
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
        values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return "{" + ",".join(str(ast.literal_eval(v)) for v in values) + "}"
    return annotation


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass inside an ``X | None`` hint (a section that may be left unset), else None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 and dataclasses.is_dataclass(args[0]) else None


def _dataclass_list(tp: Any) -> type | None:
    """The item dataclass of a ``list[X]`` hint, else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (list, tuple) and len(args) == 1 and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def config_fields(cls: type, instance: Any = None, prefix: str = "") -> Iterator[FieldDoc]:
    """Every leaf field of a root config, depth first, with the defaults of ``cls()``."""
    instance = cls() if instance is None else instance
    hints = typing.get_type_hints(cls)
    docs = _source_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        value = getattr(instance, f.name)
        annotation, comment = docs.get(f.name, (str(hints[f.name]), ""))
        if dataclasses.is_dataclass(hints[f.name]):
            yield from config_fields(hints[f.name], value, f"{prefix}{f.name}.")
            continue
        section = _dataclass_in(hints[f.name])
        if section is not None:
            comment = (comment + " " if comment else "") + (
                f"A {section.__name__} section: set its keys as --{prefix}{f.name}.KEY=value.")
        items = _dataclass_list(hints[f.name])
        if items is not None:
            keys = ", ".join(g.name for g in dataclasses.fields(items) if g.init)
            comment = (comment + " " if comment else "") + (
                f"A list of {items.__name__} mappings (keys: {keys}), e.g. '[{{{keys.split(', ')[0]}: ...}}]'.")
        yield FieldDoc(prefix + f.name, _pretty_type(annotation), value, comment)


def _format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if dataclasses.is_dataclass(value):
        return "{" + ", ".join(f"{k}: {_format_value(v)}" for k, v in dataclasses.asdict(value).items()) + "}"
    return str(value)


def fields_help(cls: type, width: int = 100) -> str:
    lines = ["config fields (override any as --section.key=value; YAML values: null, true, [a, b]):"]
    for doc in config_fields(cls):
        lines.append(f"  --{doc.name}  {doc.type} = {_format_value(doc.default)}")
        if doc.comment:
            lines += textwrap.wrap(doc.comment, width=width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


# ---- the commands ----------------------------------------------------------------------

def _resolve(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def config_parser(command: str) -> argparse.ArgumentParser:
    cls, _, description = CONFIG_COMMANDS[command]
    parser = argparse.ArgumentParser(
        prog=f"hf-srdistill {command}", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(textwrap.wrap("bundled configs (--config NAME): " + ", ".join(bundled_config_names()),
                                       width=100, subsequent_indent="  ")) + "\n\n" + fields_help(cls))
    parser.add_argument("--config", help="a YAML file, or the NAME of a bundled config (listed below)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def check_model_names(cfg: Any, prefix: str = "") -> None:
    """An unknown ``*.name`` of any ModelConfig is a config error now, not after data loading."""
    if isinstance(cfg, C.ModelConfig):
        from hf_srdistill.models import MODELS

        if cfg.name not in MODELS:
            close = difflib.get_close_matches(cfg.name, list(MODELS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{prefix}name={cfg.name!r} is not a registered model; {hint}choose one of "
                              f"{', '.join(sorted(MODELS))}")
        return
    if isinstance(cfg, (list, tuple)):
        for i, item in enumerate(cfg):
            check_model_names(item, f"{prefix[:-1]}[{i}].")
    elif dataclasses.is_dataclass(cfg):
        for f in dataclasses.fields(cfg):
            check_model_names(getattr(cfg, f.name), f"{prefix}{f.name}.")


def parse_config(command: str, argv: list[str]):
    """Split argv into --config and dotted overrides and build the typed config."""
    args, rest = config_parser(command).parse_known_args(argv)
    cfg = load_config(CONFIG_COMMANDS[command][0], resolve_config(args.config), rest)
    check_model_names(cfg)
    return cfg


def setup_logging(level: int = logging.INFO) -> None:
    """hf_srdistill's INFO messages (e.g. "resuming ... from step N") on stderr; other libraries at
    WARNING. Leaves logging alone when the caller (or pytest) configured it already."""
    root = logging.getLogger()
    if root.handlers:
        return

    class _Stderr(logging.StreamHandler):  # looks sys.stderr up at each record (it may be swapped)
        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, _value):
            pass

    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("hf_srdistill").setLevel(level)


def _usage() -> str:
    lines = [f"  {name:<15} {CONFIG_COMMANDS[name][2]}" for name in CONFIG_COMMANDS]
    lines += [f"  {name:<15} {ARGV_HELP.get(name, f'see `hf-srdistill {name} --help`')}" for name in ARGV_COMMANDS]
    return ("usage: hf-srdistill [-v|-q] <command> [--config FILE|NAME] [--section.key=value ...]\n"
            "       hf-srdistill --version\n\ncommands:\n" + "\n".join(lines)
            + "\n\n`hf-srdistill <command> --help` lists a command's options (config commands: every field).")


def _output_of(command: str, cfg: Any, result: Any) -> Any:
    if isinstance(result, (str, Path)):
        return result
    node = cfg
    for part in OUTPUT_FIELDS[command].split("."):
        node = getattr(node, part)
    return node


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    level = logging.INFO
    while argv and argv[0] in VERBOSITY:
        level = VERBOSITY[argv.pop(0)]
    commands = list(CONFIG_COMMANDS) + list(ARGV_COMMANDS)
    if argv and argv[0] in ("--version", "-V"):
        print(f"hf-srdistill {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] not in commands:
        close = difflib.get_close_matches(argv[0], commands, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"hf-srdistill: unknown command {argv[0]!r}{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command in CONFIG_COMMANDS:
        for flag in [a for a in rest if a in VERBOSITY]:
            level = VERBOSITY[flag]
    setup_logging(level)
    if command == "cache":
        return _resolve(ARGV_COMMANDS[command])(rest)
    if command == "upscale":
        try:
            return _resolve(ARGV_COMMANDS[command])(rest)
        except known_errors() as err:
            print(f"hf-srdistill {command}: error: {err}", file=sys.stderr)
            return 2
    if command in ARGV_COMMANDS:
        return _resolve(ARGV_COMMANDS[command])([command, *rest])
    try:
        cfg = parse_config(command, rest)
    except (ConfigError, ValueError) as err:
        print(f"hf-srdistill {command}: config error: {err}", file=sys.stderr)
        return 2
    try:
        result = _resolve(CONFIG_COMMANDS[command][1])(cfg)
    except known_errors() as err:
        print(f"hf-srdistill {command}: error: {err}", file=sys.stderr)
        return 2
    print(f"hf-srdistill {command}: outputs in {_output_of(command, cfg, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
