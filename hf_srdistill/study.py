"""`hf-srdistill reproduce-study --suite mini|div2k`: the published study, end to end.

A suite (configs/study/<suite>/suite.yaml) lists experiments, each a DistillJobConfig
YAML that `hf-srdistill distill --config` also runs on its own. The study builds every set
(distilled ones and the equal-budget baselines: full data, downscaled photos, random
crops, the loss-ranked coreset, GAN inversion), trains every judge model on every set at
every scale and seed with the same recipe, evaluates them on the test sets, and writes

    tables.md / tables.csv   PSNR↑ SSIM↑ LPIPS↓ per test set, one table per (scale, judge),
                             baseline rows then synthetic rows, mean ± std over seeds
    evolution.png            rows = distillation experiments, columns = iterations
    qualitative_x<s>.png     one crop: HR, bicubic, and SR by each set's model (rows = judges),
                             each tile labelled with its set's full name and that crop's PSNR/SSIM
    psnr_vs_ipc.png / .pdf   PSNR-Y against IPC per method family, one line per judge and scale
                             (only when the sets come at several IPCs)
    results.json             every measurement (one record per run and test set)

Each unit of work (a set, a trained-and-evaluated judge) is finished when its folder holds
its final artifact (a parquet shard; eval.json), and is skipped on a rerun, so a killed
study resumes where it stopped. A set that cannot be built here (a generator that is not
on this machine) is skipped with its reason logged, listed under the tables and counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hf_srdistill.config import DistillJobConfig, EvalConfig, ModelConfig, TrainConfig, TrainJobConfig
from hf_srdistill.configio import ConfigError, flatten, load_config
from hf_srdistill.io import read_json, write_json
from hf_srdistill.study_report import (compose_evolution, plot_psnr_vs_ipc, qualitative_figure, save_figure,
                                       write_tables)

log = logging.getLogger(__name__)

# the suites shipped in the package (the repo's top-level configs/ links to hf_srdistill/configs)
SUITES_DIR = Path(str(resources.files("hf_srdistill").joinpath("configs").joinpath("study")))


def suite_path(suite: str) -> Path:
    """configs/study/<suite>/suite.yaml inside the package; an unknown name lists the known ones."""
    path = SUITES_DIR / suite / "suite.yaml"
    if not path.is_file():
        names = sorted(p.parent.name for p in SUITES_DIR.glob("*/suite.yaml"))
        raise ConfigError(f"no bundled study suite named {suite!r}; available: {', '.join(names)} "
                          f"(or pass --config with a suite YAML)")
    return path


BASELINES = ("full", "downscaled", "random", "coreset", "gan_inversion")


@dataclass
class ExperimentSpec:
    # row name in the tables and folder name under sets/
    name: str
    # DistillJobConfig YAML, relative to the suite file (also runnable with `hf-srdistill distill`)
    config: str | None = None
    # judge the set of another experiment instead of distilling (the x2-distilled sets at x4)
    set_from: str | None = None
    # judge scales; None = the suite's scales
    scales: list[int] | None = None
    # distil against the SRCNN the study trains on the full data, unless the config names one
    pretrained_reference: bool = False

    def __post_init__(self) -> None:
        if (self.config is None) == (self.set_from is None):
            raise ValueError(f"experiment {self.name!r}: give exactly one of config or set_from")


@dataclass
class CoresetSettings:
    # drop this top percentage of each class's losses as outliers before keeping the hardest
    outlier_pct: float = 0.0
    # steps of the scorer SRCNN when the study trains no pretrained reference
    scorer_iterations: int = 500


@dataclass
class SuiteConfig:
    name: str = "mini"
    output_dir: str = "outputs/study/mini"
    experiments: list[ExperimentSpec] = field(default_factory=list)
    # equal-budget baselines, built for every (ipc, image_size) an experiment uses
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    # judge models (their `scale` is set per run); names must be unique
    judges: list[ModelConfig] = field(default_factory=lambda: [ModelConfig(name=n) for n in ("srcnn", "vdsr", "edsr")])
    # one recipe for every judge run, so the tables compare sets, not training runs
    train: TrainConfig = field(default_factory=TrainConfig)
    # the pretrained SRCNN reference (and coreset scorer), trained on the full data
    reference_train: TrainConfig = field(default_factory=lambda: TrainConfig(loss="l2"))
    eval: EvalConfig = field(default_factory=EvalConfig)
    scales: list[int] = field(default_factory=lambda: [2])
    # judge training seeds; the tables show mean ± std over them
    seeds: list[int] = field(default_factory=lambda: [0])
    coreset: CoresetSettings = field(default_factory=CoresetSettings)
    # refuse to start on a CPU-only machine (DIV2K scale would take days)
    requires_gpu: bool = False
    # side of the crop in the qualitative figure
    qualitative_crop: int = 96
    # dotted overrides applied to every experiment config, e.g. ["distill.iterations=2"] for a smoke run
    distill_overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ValueError(f"baselines: unknown {unknown}; choose from {BASELINES}")
        names = [j.name for j in self.judges]
        if len(set(names)) != len(names):
            raise ValueError(f"judges: names must be unique, got {names}")


class SkipSet(Exception):
    """A set that cannot be built on this machine; the reason goes under the tables."""


@dataclass
class SetPlan:
    key: str  # folder name under sets/ and row id
    group: str  # baseline | synthetic
    kind: str  # full | downscaled | random | coreset | gan_inversion | distilled
    job: DistillJobConfig | None  # None for full
    scales: list[int]
    pretrained_reference: bool = False
    source: str | None = None  # set_from: whose folder is judged


def plan_sets(suite: SuiteConfig, suite_dir: Path) -> list[SetPlan]:
    """Baseline rows first (full, then per budget), then one synthetic row per experiment."""
    jobs: dict[str, DistillJobConfig] = {}
    synthetic: list[SetPlan] = []
    for spec in suite.experiments:
        scales = spec.scales or suite.scales
        if spec.set_from is not None:
            if spec.set_from not in jobs:
                raise ConfigError(f"experiment {spec.name!r}: set_from={spec.set_from!r} must name an earlier experiment")
            synthetic.append(SetPlan(spec.name, "synthetic", "distilled", jobs[spec.set_from], scales,
                                     source=spec.set_from))
            continue
        job = load_config(DistillJobConfig, suite_dir / spec.config, suite.distill_overrides)
        jobs[spec.name] = job
        synthetic.append(SetPlan(spec.name, "synthetic", "distilled", job, scales, spec.pretrained_reference))
    if not jobs:
        raise ConfigError("the suite has no experiment with a config")
    data = next(iter(jobs.values())).data
    for name, job in jobs.items():
        if job.data != data:
            raise ConfigError(f"experiment {name!r} uses other data than the first experiment; "
                              "a study compares sets of one data source")
    budgets: dict[tuple[int, int], tuple[DistillJobConfig, set[int]]] = {}
    for plan in synthetic:
        d = plan.job.distill
        _, scales = budgets.setdefault((d.ipc, d.image_size), (plan.job, set()))
        scales.update(plan.scales)
    baselines = []
    if "full" in suite.baselines:
        baselines.append(SetPlan("full", "baseline", "full", None, sorted({s for p in synthetic for s in p.scales})))
    for (ipc, size), (job, scales) in budgets.items():
        for kind in [k for k in BASELINES[1:] if k in suite.baselines]:
            baselines.append(SetPlan(f"{kind}_ipc{ipc}_{size}px", "baseline", kind, job, sorted(scales)))
    return baselines + synthetic


# fields that say where and how often to write, or how much to hold in memory at once, not what
# is computed: never a recipe change (classes_per_step only bounds a chunk: on a CPU the pixels
# are bit-identical whatever its value, on a GPU it can change their rounding)
INERT_FIELDS = {"resume", "output_dir", "checkpoint_every", "snapshot_every", "log_every", "log_with",
                "num_workers", "decoded_cache_mb", "num_proc", "expert_dir", "classes_per_step"}
_ABSENT = object()


def recipe_changes(old: dict, new: dict, defaults: dict) -> list[str]:
    """Dotted keys whose value differs, ignoring INERT_FIELDS; a key only one side has (a field
    added or removed since) counts as unchanged when the other side holds its default."""
    a, b, d = flatten(old), flatten(new), flatten(defaults)
    changed = []
    for key in sorted(set(a) | set(b)):
        if key.rsplit(".", 1)[-1] in INERT_FIELDS:
            continue
        default = d.get(key, _ABSENT)
        if a.get(key, default) != b.get(key, default):
            changed.append(key)
    return changed


def guard_recipe(out: Path, recipe: dict, rows: dict) -> None:
    """Refuse to reuse finished runs made with another recipe; new rows may be added.

    Run folders are named by set, judge, scale and seed only, so resuming after a change of
    the training recipe or of a set's config would silently mix two recipes in one table.
    Output and logging fields are not part of a recipe, and a field this version added at
    its default matches a record written before it existed.
    """
    path = out / "recipe.json"
    plain = json.loads(json.dumps({"recipe": recipe, "rows": rows}, default=str))
    if path.is_file():
        old = read_json(path)
        defaults = json.loads(json.dumps({"train": dataclasses.asdict(TrainConfig()),
                                          "job": dataclasses.asdict(DistillJobConfig())}, default=str))
        changed = recipe_changes(old["recipe"], plain["recipe"], {"train": defaults["train"]})
        for name, row in plain["rows"].items():
            if name in old["rows"]:
                changed += [f"rows.{name}.{k}" for k in recipe_changes(
                    old["rows"][name] or {}, row or {}, defaults["job"])]
        if changed:
            raise ConfigError(f"{out} holds runs made with another recipe (changed: {', '.join(changed)}); "
                              "use a new output directory or delete it")
        plain["rows"] = {**old["rows"], **plain["rows"]}
    write_json(path, plain)


def _is_built(folder: Path) -> bool:
    from hf_srdistill.data.set_folder import is_complete

    return is_complete(folder)


def _latent_job(suite_jobs: list[SetPlan]) -> DistillJobConfig | None:
    return next((p.job for p in suite_jobs if p.kind == "distilled" and p.job.distill.init == "latent"), None)


def build_set(plan: SetPlan, folder: Path, store, reference: str | None, suite: SuiteConfig,
              latent_job: DistillJobConfig | None) -> None:
    """Write one set folder (raises SkipSet when this machine cannot build it)."""
    from hf_srdistill.distill import distill, make_baseline_set, write_image_set

    job = dataclasses.replace(plan.job, distill=dataclasses.replace(plan.job.distill, output_dir=str(folder)))
    if plan.kind == "distilled":
        d = job.distill
        if plan.pretrained_reference and not d.reference_path:
            job = dataclasses.replace(job, distill=dataclasses.replace(d, reference_path=reference))
        job = dataclasses.replace(job, distill=dataclasses.replace(job.distill, resume=True))
        if d.init != "latent":
            distill(job)
            return
        from hf_srdistill.latent import GeneratorNotFoundError
        try:
            distill(job)
        except (GeneratorNotFoundError, ConfigError, ImportError, NotImplementedError) as err:
            raise SkipSet(f"latent distillation cannot run here: {type(err).__name__}: {err}") from err
    elif plan.kind == "coreset":
        from hf_srdistill.distill.coreset import make_coreset_set
        make_coreset_set(job, reference=reference, outlier_pct=suite.coreset.outlier_pct,
                         scorer_iterations=suite.coreset.scorer_iterations, store=store, folder=folder)
    elif plan.kind == "gan_inversion":
        if latent_job is None:
            raise SkipSet("no latent experiment in the suite names a generator")
        _gan_inversion_set(job, latent_job.distill.latent, store, folder, write_image_set)
    else:
        make_baseline_set(plan.kind, job, store=store)


def _gan_inversion_set(job: DistillJobConfig, latent_cfg, store, folder: Path, write_image_set) -> None:
    """The inversion of the pixel init through the generator, with no distillation step."""
    import time

    import torch

    from hf_srdistill.distill.export import real_set_sizes
    from hf_srdistill.distill.synthetic import init_images
    from hf_srdistill.latent import GeneratorNotFoundError, gan_inversion_images
    from hf_srdistill.provenance import describe_source

    t0 = time.time()
    d = dataclasses.replace(job.distill, init=latent_cfg.init_from, latent=latent_cfg)
    k = store.num_classes
    labels = [c for c in range(k) for _ in range(d.ipc)]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        images = gan_inversion_images(latent_cfg, init_images(d, store, list(range(k))), labels, device, d.seed)
    except (GeneratorNotFoundError, ImportError) as err:
        raise SkipSet(f"GAN inversion needs the generator: {type(err).__name__}: {err}") from err
    write_image_set(folder, images, labels, store.class_names, [i for _ in range(k) for i in range(d.ipc)],
                    dataclasses.replace(job, distill=d), extra={"kind": "gan_inversion"},
                    real_sizes=real_set_sizes(store, job.data), source=describe_source(job.data, store.fingerprint),
                    wall_time_s=time.time() - t0)


def train_and_evaluate(run_dir: Path, train_job: TrainJobConfig, tests: dict, lpips_metric, device: str) -> dict:
    """Train one judge (reusing a finished model folder) and evaluate it; returns per-test-set metrics."""
    from hf_srdistill.evaluate import evaluate_upscaler, model_upscaler
    from hf_srdistill.models import load_model
    from hf_srdistill.train import train_sr

    if not (run_dir / "model.safetensors").is_file():
        train_sr(train_job)
    up = model_upscaler(load_model(run_dir), device)
    return {name: evaluate_upscaler(up, images, train_job.model.scale, lpips_metric) for name, images in tests.items()}


def run_study(suite: SuiteConfig, suite_dir: Path) -> dict:
    """Build, train, evaluate and report; returns {"records": [...], "skipped": {...}}."""
    import torch

    from hf_srdistill.data import load_test_set
    from hf_srdistill.data.grouped import SubImageStore
    from hf_srdistill.evaluate import bicubic_upscaler, evaluate_upscaler
    from hf_srdistill.metrics import LPIPSMetric
    from hf_srdistill.train import train_sr

    out = Path(suite.output_dir)
    plans = plan_sets(suite, suite_dir)
    guard_recipe(out, {k: dataclasses.asdict(suite)[k] for k in ("judges", "train", "reference_train", "eval", "coreset")},
                 {p.key: (dataclasses.asdict(p.job) if p.job is not None else None) for p in plans})
    data = next(p.job.data for p in plans if p.job is not None)
    tests = {name: load_test_set(name, root=suite.eval.test_root) for name in suite.eval.test_sets}
    store = SubImageStore.build(data)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lpips_metric = LPIPSMetric(device=device) if suite.eval.lpips else None

    reference = None
    if any(p.pretrained_reference for p in plans) or any(p.kind == "coreset" for p in plans):
        ref_model = next((p.job.distill.reference for p in plans if p.pretrained_reference), plans[-1].job.distill.reference)
        ref_dir = out / "reference" / f"{ref_model.name}_x{ref_model.scale}"
        if not (ref_dir / "model.safetensors").is_file():
            print(f"study: training the pretrained reference {ref_model.name} x{ref_model.scale} on the full data")
            train_sr(TrainJobConfig(data=data, model=ref_model,
                                    train=dataclasses.replace(suite.reference_train, output_dir=str(ref_dir))))
        reference = str(ref_dir)

    folders: dict[str, str | None] = {}
    skipped: dict[str, str] = {}
    latent_job = _latent_job(plans)
    for plan in plans:
        if plan.kind == "full":
            folders[plan.key] = None
            continue
        folder = out / "sets" / (plan.source or plan.key)
        if plan.source is not None:
            if plan.source in skipped:
                skipped[plan.key] = f"its set {plan.source!r} was skipped"
            else:
                folders[plan.key] = str(folder)
            continue
        if not _is_built(folder):
            print(f"study: building set {plan.key} ({plan.kind})")
            try:
                build_set(plan, folder, store, reference, suite, latent_job)
            except SkipSet as err:
                log.warning("skipping set %s: %s", plan.key, err)
                skipped[plan.key] = str(err)
                continue
        folders[plan.key] = str(folder)

    records = []
    for scale in sorted({s for p in plans for s in p.scales}):
        bic = out / "runs" / f"bicubic_x{scale}" / "eval.json"
        if not bic.is_file():
            write_json(bic, {name: evaluate_upscaler(bicubic_upscaler(scale), images, scale, lpips_metric)
                             for name, images in tests.items()})
        records += _records(read_json(bic), "bicubic", "baseline", "-", scale, 0)
    for plan in plans:
        if plan.key not in folders:
            continue
        for scale in plan.scales:
            for judge in suite.judges:
                for seed in suite.seeds:
                    run_dir = out / "runs" / plan.key / f"{judge.name}_x{scale}_seed{seed}"
                    done = run_dir / "eval.json"
                    if not done.is_file():
                        print(f"study: {judge.name} x{scale} seed {seed} on {plan.key}")
                        train = dataclasses.replace(suite.train, train_set=folders[plan.key], seed=seed,
                                                    output_dir=str(run_dir))
                        job = TrainJobConfig(data=data, model=dataclasses.replace(judge, scale=scale), train=train)
                        write_json(done, train_and_evaluate(run_dir, job, tests, lpips_metric, device))
                    records += _records(read_json(done), plan.key, plan.group, judge.name, scale, seed)

    result = {"suite": suite.name, "records": records, "skipped": skipped, "sets": folders}
    write_json(out / "results.json", result)
    write_tables(out, records, skipped, title=f"reproduce-study --suite {suite.name}")
    plot_psnr_vs_ipc(records, out, ipcs={p.key: p.job.distill.ipc for p in plans if p.job is not None})
    evolution = compose_evolution([(p.key, Path(folders[p.key]) / "evolution.png") for p in plans
                                   if p.kind == "distilled" and p.source is None and p.key in folders])
    if evolution is not None:
        save_figure(evolution, out / "evolution.png")
    first = next(iter(tests.values()))[0][1]
    for scale in sorted({s for p in plans for s in p.scales}):
        rows = {judge.name: {plan.key: out / "runs" / plan.key / f"{judge.name}_x{scale}_seed{suite.seeds[0]}"
                             for plan in plans if plan.key in folders and scale in plan.scales}
                for judge in suite.judges}
        save_figure(qualitative_figure(rows, first, scale, suite.qualitative_crop, device), out / f"qualitative_x{scale}.png")
    return result


def _records(metrics: dict, key: str, group: str, judge: str, scale: int, seed: int) -> list[dict]:
    return [{"set": key, "group": group, "judge": judge, "scale": scale, "seed": seed, "test_set": name, **m}
            for name, m in metrics.items()]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "reproduce-study":
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="hf-srdistill reproduce-study", description=__doc__.split("\n")[0],
                                     epilog="Other flags are dotted overrides of the suite config, e.g. "
                                            "--train.iterations=50.")
    parser.add_argument("--suite", default="mini", help="mini (CPU, no download) or div2k (DIV2K data + a GPU)")
    parser.add_argument("--config", help="a suite YAML instead of configs/study/<suite>/suite.yaml")
    parser.add_argument("--output-dir", help="where sets, models, tables and figures go")
    parser.add_argument("--seeds", type=int, nargs="+", help="judge training seeds (overrides the suite's)")
    parser.add_argument("--allow-cpu", action="store_true", help="run a GPU suite on the CPU anyway")
    args, rest = parser.parse_known_args(argv)
    prog = "hf-srdistill reproduce-study"
    try:
        path = Path(args.config) if args.config else suite_path(args.suite)
        suite = load_config(SuiteConfig, path, rest)
    except (ConfigError, ValueError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    if args.output_dir:
        suite.output_dir = args.output_dir
    if args.seeds:
        suite.seeds = args.seeds
    import torch

    from hf_srdistill.data.errors import DataNotFoundError

    if suite.requires_gpu and not torch.cuda.is_available() and not args.allow_cpu:
        print(f"{prog}: the {suite.name} suite needs a GPU (none is visible) and the data it names; "
              "pass --allow-cpu to run it on the CPU anyway", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run_study(suite, path.parent)
    except DataNotFoundError as err:
        print(f"{prog}: the {suite.name} suite needs its data: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    print(f"{prog}: {len(result['records'])} measurements, {len(result['skipped'])} sets skipped; "
          f"tables in {Path(suite.output_dir) / 'tables.md'}")
    return 0
