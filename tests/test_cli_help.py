"""The CLI's self-description: field help from config.py's comments, suggestions, --version,
bundled configs, one-line known errors, `python -m hf_srdistill`."""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest

import hf_srdistill
from hf_srdistill import cli
from hf_srdistill import config as C
from hf_srdistill.configio import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_distill_help_lists_fields_with_their_comments(capsys):
    text = _help("distill", capsys)
    flat = _flat(text)
    assert "--distill.max_change float | None = null" in flat
    assert ("largest change of any pixel from its initial value (L-infinity, pixels in [0, 1]); the set stays "
            "within this distance of the real photos it started from. None = unbounded.") in flat
    assert "--distill.tm.syn_steps int = 20" in flat
    assert "--distill.objective {gm,dm,tm} = gm" in flat
    assert "--data.source {mini,folder,hub,div2k,photos} = mini" in flat
    assert "distill_mini_pool" in flat  # the bundled config names


def _leaves(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


@pytest.mark.parametrize("command", list(cli.CONFIG_COMMANDS))
def test_every_config_command_lists_every_field(command, capsys):
    text = _help(command, capsys)
    names = list(_leaves(cli.CONFIG_COMMANDS[command][0]))
    assert names
    for name in names:
        assert f"  --{name}  " in text, name
    assert text.count("\n  --") >= len(names)


def test_field_docs_come_from_source_comments():
    docs = {d.name: d for d in cli.config_fields(C.MainJobConfig)}
    assert docs["train.iterations"].default == 1000  # the root's default_factory, not TrainConfig's 2000
    assert docs["train.resume"].comment == "continue from output_dir/checkpoint if present."
    assert docs["data.split"].comment == ""  # no comment above it: none invented
    assert docs["reference_train"].type == "TrainConfig | None" and "--reference_train.KEY" in docs["reference_train"].comment
    assert docs["distill.latent.backend"].comment.startswith("stylegan_xl = GLaD-style W+/feature codes;")


def test_unknown_command_suggests_the_closest(capsys):
    assert cli.main(["distil", "--distill.ipc=2"]) == 2
    assert "unknown command 'distil'; did you mean 'distill'?" in capsys.readouterr().err
    assert cli.main(["upscal"]) == 2
    assert "did you mean 'upscale'?" in capsys.readouterr().err
    assert cli.main(["zzzzzz"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_version_and_usage(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hf-srdistill {hf_srdistill.__version__}"
    assert cli.main(["--help"]) == 0
    assert "upscale" in capsys.readouterr().out
    assert cli.main([]) == 2


def test_python_dash_m_hf_srdistill():
    proc = subprocess.run([sys.executable, "-m", "hf_srdistill", "--version"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"hf-srdistill {hf_srdistill.__version__}"
    # and --help of a config command stays free of torch
    code = ("import sys\nfrom hf_srdistill.cli import main\ntry:\n    main(['distill', '--help'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_bundled_config_by_name(tmp_path, monkeypatch):
    path = cli.resolve_config("distill_mini")
    assert path == cli.bundled_configs_dir() / "distill_mini.yaml" and path.is_file()
    assert cli.bundled_configs_dir().resolve() == (ROOT / "configs").resolve()  # the repo's configs/ is the one source
    monkeypatch.chdir(tmp_path)  # resolves from anywhere, not only the repo root
    assert load_config(C.DistillJobConfig, cli.resolve_config("distill_mini")) == \
        load_config(C.DistillJobConfig, ROOT / "configs" / "distill_mini.yaml")
    cfg = cli.parse_config("distill", ["--config", "distill_mini_pool", "--distill.ipc=3", "-q"])
    assert cfg.distill.ipc == 3
    with pytest.raises(ConfigError, match=r"no bundled config named 'distill_mino'; did you mean 'distill_mini'\? "
                                          r"available: .*distill_mini_pool.*main_mini"):
        cli.resolve_config("distill_mino")
    assert cli.main(["distill", "--config", "nope"]) == 2


def test_bundled_configs_are_package_data():
    with open(ROOT / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["hf_srdistill"]
    package = ROOT / "hf_srdistill"
    files = [p.relative_to(package).as_posix() for p in (package / "configs").rglob("*") if p.is_file()]
    assert len(files) >= 20 and "configs/study/mini/suite.yaml" in files
    for rel in files:
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), rel
    assert (ROOT / "configs").is_symlink()


def test_study_suite_resolves_from_the_package(capsys):
    from hf_srdistill import study

    assert study.suite_path("mini") == cli.bundled_configs_dir() / "study" / "mini" / "suite.yaml"
    with pytest.raises(ConfigError, match="available: div2k, mini"):
        study.suite_path("maxi")
    assert cli.main(["reproduce-study", "--suite", "maxi"]) == 2
    assert "no bundled study suite named 'maxi'" in capsys.readouterr().err


def test_unknown_model_name_is_a_config_error(capsys):
    assert cli.main(["train", "--model.name=srcn", "--train.iterations=1"]) == 2
    err = capsys.readouterr().err
    assert "model.name='srcn' is not a registered model; did you mean 'srcnn'?" in err
    assert len(err.strip().splitlines()) == 1
    assert cli.main(["distill", "--distill.tm.models=[{name: edsrr}]"]) == 2
    assert "distill.tm.models[0].name='edsrr'" in capsys.readouterr().err


def test_missing_model_is_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["evaluate", f"--model_path={tmp_path / 'absent'}", "--eval.lpips=false"]) == 2
    err = capsys.readouterr().err
    assert "no model folder at" in err and len(err.strip().splitlines()) == 1


def test_outputs_line_names_the_path():
    cfg = C.EvalJobConfig(eval=C.EvalConfig(output_dir="somewhere/eval"))
    assert cli._output_of("evaluate", cfg, {"results": 1}) == "somewhere/eval"
    assert cli._output_of("distill", C.DistillJobConfig(), Path("out/set")) == Path("out/set")
    assert cli._output_of("main", C.MainJobConfig(), None) == "outputs/main"


@pytest.mark.parametrize("level,shown", [("logging.INFO", True), ("logging.WARNING", False)])
def test_info_logging_by_default_quiet_with_q(level, shown):
    code = ("import logging\nfrom hf_srdistill.cli import setup_logging\n"
            f"setup_logging({level})\nlogging.getLogger('hf_srdistill.train').info('resuming out from step 7')\n"
            "logging.getLogger('httpx').info('HTTP noise')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ("resuming out from step 7" in proc.stderr) is shown and "HTTP noise" not in proc.stderr
    assert cli.VERBOSITY["-q"] == logging.WARNING and cli.VERBOSITY["-v"] == logging.DEBUG
    assert cli.main(["-v", "--version"]) == 0 and cli.main(["-q", "--version"]) == 0
