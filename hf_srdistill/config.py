"""Typed configuration for every stage. One root dataclass per command.

Defaults describe the embedded default (the mini set of real photos that scikit-image
ships) so that every command runs on a CPU with no download; the DIV2K-scale values of
the published study live in configs/*.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SOURCES = ("mini", "folder", "hub", "div2k", "photos")


def _check_positive(owner: str, **values: int | float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValueError(f"{owner}.{name} must be > 0, got {value}")


def _check_trackers(key: str, names: list[str]) -> None:
    if names:  # Accelerate is imported only when tracking is asked for
        from hf_srdistill.history import check_tracker_names

        check_tracker_names(names, key)


@dataclass
class DataConfig:
    # mini = photos shipped by scikit-image (no download); folder = local PNG/JPEG files;
    # hub = a Hugging Face dataset with an image column; div2k = the official DIV2K zips;
    # photos = 23 photographs two Debian packages ship, split train/test (hf_srdistill.data.photos).
    source: Literal["mini", "folder", "hub", "div2k", "photos"] = "mini"
    # folder source: directory of images; hub source: optional local dataset dir/parquet.
    path: str | None = None
    # hub source: dataset id (e.g. "user/my-hr-photos").
    hub_id: str | None = None
    # pin a Hub revision so a run can be reproduced from the same bytes.
    revision: str | None = None
    split: str = "train"
    image_column: str = "image"
    # stream Hub data so memory stays flat in the number of images.
    streaming: bool = True
    # cap on source images (classes); None = all.
    max_images: int | None = None
    # sub-image cropping; BasicSR's DIV2K values are 480/240/0 (configs/div2k_*.yaml).
    # The mini photos are 300-1400 px, so the default is a smaller crop.
    crop_size: int = 192
    step: int = 96
    thresh_size: int = 0
    # where sub-images are cached as an Arrow dataset (reused across runs by fingerprint).
    cache_dir: str = "~/.cache/hf_srdistill"
    # processes that decode photos, cut and PNG-encode sub-images while the cache is built (the
    # main one lists the source and writes in order); the cache's bytes do not depend on it.
    num_proc: int = 1

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"data.source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "folder" and not self.path:
            raise ValueError("data.source=folder needs data.path (a directory of PNG/JPEG files)")
        if self.source == "hub" and not (self.hub_id or self.path):
            raise ValueError("data.source=hub needs data.hub_id (or data.path to a local dataset)")
        _check_positive("data", crop_size=self.crop_size, step=self.step, max_images=self.max_images,
                        num_proc=self.num_proc)


@dataclass
class ModelConfig:
    # registry name: srcnn | vdsr | edsr (see hf_srdistill.models.MODELS).
    name: str = "srcnn"
    scale: int = 2
    # width/depth overrides; None keeps the architecture's published size.
    num_features: int | None = None
    depth: int | None = None
    # EDSR residual scaling (0.1 for the large 32x256 variant).
    res_scale: float | None = None

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4):
            raise ValueError(f"model.scale must be 2, 3 or 4, got {self.scale}")
        _check_positive("model", num_features=self.num_features, depth=self.depth)


@dataclass
class TrainConfig:
    # a distilled/baseline set folder (parquet with an `hr` column); None = data source.
    train_set: str | None = None
    iterations: int = 2000
    batch_size: int = 16
    # HR patch side; LR patches are patch_size // scale.
    patch_size: int = 96
    lr: float = 1e-3
    loss: Literal["l1", "l2"] = "l1"
    scheduler: Literal["cosine", "step", "constant"] = "cosine"
    # random flips and 90-degree rotations, as in EDSR/BasicSR training.
    augment: bool = True
    checkpoint_every: int = 500
    # DataLoader workers; 0 keeps decoding in the main process (best on small CPUs).
    num_workers: int = 0
    # MiB of decoded sub-images kept in memory when training on the data source (a PNG decode
    # per patch otherwise dominates a small judge's step; the photos suite needs ~420 MiB).
    decoded_cache_mb: int = 1024
    seed: int = 0
    output_dir: str = "outputs/train"
    # continue from output_dir/checkpoint if present.
    resume: bool = True
    # output_dir/history.csv gets a row (step, loss, lr, wall_s) every log_every steps and at the last.
    log_every: int = 10
    # experiment trackers (Accelerate's log_with: tensorboard, wandb, mlflow, ...); [] = off.
    log_with: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_positive("train", iterations=self.iterations, batch_size=self.batch_size,
                        decoded_cache_mb=self.decoded_cache_mb, log_every=self.log_every,
                        patch_size=self.patch_size, lr=self.lr, checkpoint_every=self.checkpoint_every)
        _check_trackers("train.log_with", self.log_with)


@dataclass
class EvalConfig:
    # any of: mini, photos, set5, set14, b100, urban100, manga109, div2k-val
    # (hf_srdistill.data.testsets; b100/urban100/manga109 from test_root only).
    test_sets: list[str] = field(default_factory=lambda: ["mini"])
    # local folder holding Set5/, Set14/, DIV2K_valid_HR/ when not loaded from the Hub.
    test_root: str | None = None
    # LPIPS needs AlexNet weights in the torch hub cache; absent -> reported as missing.
    lpips: bool = True
    grid: bool = True
    output_dir: str = "outputs/eval"


@dataclass
class LatentConfig:
    """Latent distillation (distill.init=latent): the synthetic images are a generator's output."""

    # stylegan_xl = GLaD-style W+/feature codes; vae = a diffusers AutoencoderKL's latents;
    # ldm = DDIM noise latents of an unconditional latent-diffusion model, decoded by DDIM
    # sampling + its autoencoder (hf_srdistill.latent.BACKENDS).
    backend: Literal["stylegan_xl", "vae", "ldm"] = "vae"
    # stylegan_xl: network pickle (local .pkl, http(s) URL, or Hub repo id with `filename`);
    # vae/ldm: diffusers model folder or Hub id (ldm: with vae/ or vqvae/, unet/, scheduler/).
    # None (vae only) = untrained VAE from vae_channels.
    generator: str | None = None
    # file inside the Hub repo `generator` (stylegan_xl pickles).
    filename: str | None = None
    # pin the Hub revision so the latents decode with the same bytes later.
    revision: str | None = None
    # diffusers subfolder of the autoencoder; None = the repo root (vae; "vae" for a Stable-Diffusion
    # repo's VAE) or whichever of "vae"/"vqvae" exists (ldm).
    subfolder: str | None = None
    # StyleGAN-XL source tree (a clone of autonomousvision/stylegan-xl): its pickles import
    # torch_utils/dnnlib from it while unpickling. None = those modules are installed.
    source_dir: str | None = None
    # vae with no `generator`: build an untrained AutoencoderKL with these block widths.
    # Plumbing/smoke runs only: untrained weights carry no image prior.
    vae_channels: list[int] | None = None
    # stylegan_xl: None = W+ codes; L = GLaD's codes (its f_layer): the features after the first
    # L synthesis layers plus the w's of the rest. GLaD uses 16 for gradient matching on ImageNet.
    layer: int | None = None
    # also optimise the generator's synthesis/decoder weights during distillation.
    train_generator: bool = False
    # class-conditional generators: the one-hot class fed to the mapping (ImageNet index for
    # StyleGAN-XL). SR classes are photos, not ImageNet classes, so one fixed class is used.
    class_index: int = 0
    # images decoded per forward/backward pass: bounds memory independently of IPC x classes.
    chunk_size: int = 8
    # SGD learning rates (momentum = distill.momentum) for the codes and the generator weights.
    lr_latent: float = 0.01
    lr_generator: float = 1e-4
    # pixel init the codes are inverted/encoded from (built by the distillation engine).
    init_from: Literal["downscaled", "real"] = "downscaled"
    # GAN inversion (stylegan_xl): Adam steps on w from the class-average w. PTI uses 450.
    invert_steps: int = 100
    invert_lr: float = 0.01
    # StyleGAN projector's w noise at the first step, as a fraction of the w spread; ramps to 0.
    invert_noise: float = 0.05
    # samples of mapping(z, c) averaged for the class-average w (PTI uses 10000).
    w_avg_samples: int = 2000
    # pivotal tuning (stylegan_xl): Adam steps on the synthesis weights; 0 = inversion only. PTI uses 350.
    tune_steps: int = 100
    tune_lr: float = 3e-4
    # PTI's locality regulariser: keep G unchanged at w's `locality_alpha` away from the pivot.
    locality_weight: float = 0.1
    locality_alpha: float = 30.0
    # reconstruction loss of inversion and tuning; LPIPS needs torchvision weights in the
    # torch hub cache (absent offline: MSE only, with a logged note).
    mse_weight: float = 1.0
    lpips_weight: float = 1.0
    lpips_net: Literal["vgg", "alex"] = "vgg"
    # ldm: DDIM steps of both the inversion (init) and the sampler (every decode): each decode
    # calls the UNet this many times and its backward about twice as many (recompute + backward).
    ldm_steps: int = 10
    # ldm: fixed-point refinements per inversion step, so that sampling retraces the inversion;
    # 0 = plain DDIM inversion (DDIMInverseScheduler). Each costs a UNet call per step, at init only.
    ldm_invert_iters: int = 10
    # ldm: recompute each UNet step in the backward instead of storing ldm_steps steps' activations.
    ldm_checkpoint: bool = True
    # ldm: pixel side the model runs at; None = its training size (UNet sample_size x the
    # autoencoder's downsampling), bicubic-resized from/to distill.image_size.
    ldm_resolution: int | None = None

    def __post_init__(self) -> None:
        _check_positive("latent", chunk_size=self.chunk_size, lr_latent=self.lr_latent,
                        w_avg_samples=self.w_avg_samples, ldm_steps=self.ldm_steps,
                        ldm_resolution=self.ldm_resolution)
        for name in ("invert_steps", "tune_steps", "lr_generator", "invert_lr", "tune_lr", "invert_noise",
                     "locality_weight", "locality_alpha", "mse_weight", "lpips_weight", "class_index",
                     "ldm_invert_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"latent.{name} must be >= 0, got {getattr(self, name)}")
        if self.mse_weight == 0 and self.lpips_weight == 0:
            raise ValueError("latent.mse_weight and latent.lpips_weight cannot both be 0")
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"latent.layer must be None (W+ codes) or a number of synthesis layers >= 0, "
                             f"got {self.layer}")
        if self.vae_channels is not None and (not self.vae_channels or min(self.vae_channels) <= 0):
            raise ValueError(f"latent.vae_channels must be positive widths, got {self.vae_channels}")


@dataclass
class DMConfig:
    """Distribution matching (distill.objective=dm): statistics of random SR-network features."""

    # what the random network sees: lr = the bicubic-downscaled image (an SR model's input);
    # hr = the HR image fed as if it were LR (its fine detail at full resolution), which costs
    # scale^2 times more per image; LR alone keeps a DM step several times cheaper than GM's.
    inputs: list[str] = field(default_factory=lambda: ["lr"])
    # 1 = per-channel means of every activation map (DM); 2 = also each map's channel
    # second-moment (Gram) matrix, the texture statistic of neural style transfer.
    moments: int = 1
    # activation maps used, in forward order; None = all of them.
    layers: int | None = None

    def __post_init__(self) -> None:
        if not self.inputs or len(set(self.inputs)) != len(self.inputs) or set(self.inputs) - {"lr", "hr"}:
            raise ValueError(f"distill.dm.inputs must be distinct entries of ['lr', 'hr'], got {self.inputs}")
        if self.moments not in (1, 2):
            raise ValueError(f"distill.dm.moments must be 1 (means) or 2 (means and Gram matrices), got {self.moments}")
        _check_positive("distill.dm", layers=self.layers)


@dataclass
class TrajectoryConfig:
    """Trajectory matching (distill.objective=tm, MTT for SR): N student steps on the set from
    an expert checkpoint should land where the expert was M checkpoints later."""

    # expert architectures (and scales); empty = [distill.reference]. Iteration i matches a
    # trajectory of models[i % len(models)], so one set carries several judges' training.
    models: list[ModelConfig] = field(default_factory=list)
    # expert runs per model (seeds 0..n-1), trained once on the full data and stored.
    num_experts: int = 2
    # where trajectories are stored and reused; None = <distill.output_dir>/experts.
    expert_dir: str | None = None
    # each expert: Adam at expert_lr (constant), batches of expert_batch patches of
    # expert_patch px (the judges' recipe), a checkpoint every expert_every steps.
    expert_steps: int = 2000
    expert_every: int = 100
    expert_lr: float = 1e-3
    expert_batch: int = 16
    expert_patch: int = 48
    # a matching starts from checkpoint min_start <= t < max_start (counted from the first saved
    # one) and targets checkpoint t + span. min_start > 0 matches only later training stages:
    # the first checkpoints are what a short judge learns, the later ones what a converged one does.
    min_start: int = 0
    max_start: int = 10
    span: int = 2
    # further spans taken in turn with span (e.g. [20] with span 2: 100 and 1000 expert steps at
    # expert_every 50). Each expert run gets every span; matchings of one architecture share its
    # student lr. Why: a short span fits the expert's own architecture, a long one transfers to
    # other judges (README, photos suite: tm_fine vs tm_late).
    extra_spans: list[int] = field(default_factory=list)
    # student: syn_steps differentiable SGD steps on batch_syn random patch_size crops of the
    # set (LR made from the whole image, then cropped, as the judges train; 0 = all images).
    # adam = steps preconditioned like the Adam-trained experts' (g / sqrt(v), v = the mean
    # squared real-data gradient at the start checkpoint, precond_batches batches); sgd = plain.
    student: Literal["adam", "sgd"] = "adam"
    precond_batches: int = 8
    syn_steps: int = 20
    batch_syn: int = 8
    patch_size: int = 48
    # initial student lr; None = calibrated at each architecture's first matching so that
    # syn_steps steps of the first gradient's size cover the expert's distance. Learnt on a log
    # scale at lr_lr, one lr per entry of models.
    lr_student: float | None = None
    # how a None lr_student is calibrated: distance = the rule above, which overshoots (on the
    # photos an EDSR student diverges at that lr and at half of it, an SRCNN one ends farther than
    # it started; the best lr on the initial set is about a quarter, scripts/probe_tm.py);
    # search = that lr and its halvings down to 1/64, each unrolled once on the set (7 unrolls
    # per architecture, once), the lowest loss wins.
    calibrate: Literal["distance", "search"] = "distance"
    lr_lr: float = 0.01
    # the pixel gradient's norm is clipped to clip_grad x the median of the last 20 iterations'
    # (after 5): an unroll whose student blows up sends a gradient many times the usual one. At
    # x2 on the photos suite one such step painted its crops into the set (3 fixes it); on mini
    # the same spikes are what moves the set, and 3 cost the main job 0.64 dB. None = off.
    clip_grad: float | None = None
    # an unroll whose normalised loss exceeds max_loss has blown up (1 = the student did not
    # move; a sane one ends below): its pixel gradient is noise up to 10^7 x the usual, so it is
    # retried with half the student lr, like a non-finite one. None = only non-finite losses (the
    # default: on mini, 10 halved the SRCNN student's lr once and cost the main job 0.40 dB; the
    # photos and DIV2K configs set 10, without which a photos set saturated at iteration 0).
    max_loss: float | None = None

    def __post_init__(self) -> None:
        _check_positive("distill.tm", num_experts=self.num_experts, expert_steps=self.expert_steps,
                        expert_every=self.expert_every, expert_lr=self.expert_lr, expert_batch=self.expert_batch,
                        expert_patch=self.expert_patch, max_start=self.max_start, span=self.span,
                        syn_steps=self.syn_steps, patch_size=self.patch_size, lr_student=self.lr_student,
                        precond_batches=self.precond_batches,
                        lr_lr=self.lr_lr, clip_grad=self.clip_grad)
        if any(s <= 0 for s in self.extra_spans):
            raise ValueError(f"distill.tm.extra_spans must be positive, got {self.extra_spans}")
        if self.max_loss is not None and self.max_loss <= 1:
            raise ValueError(f"distill.tm.max_loss must be > 1 (a loss of 1 is a student that did not move), "
                             f"got {self.max_loss}")
        if self.batch_syn < 0:
            raise ValueError(f"distill.tm.batch_syn must be >= 0 (0 = all images), got {self.batch_syn}")
        if not 0 <= self.min_start < self.max_start:
            raise ValueError(f"distill.tm: need 0 <= min_start < max_start, got min_start={self.min_start}, "
                             f"max_start={self.max_start}")
        if (self.max_start + max(self.spans)) * self.expert_every > self.expert_steps:
            raise ValueError(f"distill.tm: (max_start + the longest span) x expert_every = "
                             f"{(self.max_start + max(self.spans)) * self.expert_every} exceeds expert_steps="
                             f"{self.expert_steps}; the expert has no checkpoint that far")

    @property
    def spans(self) -> list[int]:
        return [self.span, *self.extra_spans]


@dataclass
class ClusterConfig:
    """Pseudo-classes for distill.grouping=kmeans: k-means on one descriptor per sub-image."""

    num_clusters: int = 8
    # random_net = per-channel mean/std of a frozen, randomly initialised reference SR net's
    # activations on the sub-image's LR; stats = colour moments, gradient-magnitude and
    # local-binary-pattern (texture) histograms.
    features: Literal["random_net", "stats"] = "random_net"
    # k-means++ restarts; the one with the lowest within-cluster sum of squares is kept.
    restarts: int = 10
    iterations: int = 50

    def __post_init__(self) -> None:
        _check_positive("distill.clusters", num_clusters=self.num_clusters, restarts=self.restarts,
                        iterations=self.iterations)


@dataclass
class DistillConfig:
    # synthetic images per class (1 and 10 are the published settings).
    ipc: int = 1
    # synthetic HR side (192 in the published pixel experiments; 96 for the mini set).
    image_size: int = 96
    # set = the images of the set folder distill.init_set (e.g. a coreset), matched by class name.
    init: Literal["noise", "downscaled", "real", "latent", "set"] = "downscaled"
    # init=set: a local set folder (manifest-verified) with ipc images of image_size per class.
    init_set: str | None = None
    # gm = gradient matching (Dataset Condensation); dm = distribution matching (feature
    # statistics under a fresh random reference net; no bi-level loop, much cheaper per step);
    # tm = trajectory matching against stored expert training runs (distill.tm; one process).
    objective: Literal["gm", "dm", "tm"] = "gm"
    dm: DMConfig = field(default_factory=DMConfig)
    tm: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    # class = ipc images per source photo; global / kmeans = class-agnostic: num_images images
    # in matching units of ipc, each unit matched against real patches of the whole data
    # (global) or of one k-means pseudo-class of the sub-images (kmeans).
    grouping: Literal["class", "global", "kmeans"] = "class"
    # synthetic-set size M for grouping=global|kmeans: any multiple of ipc.
    num_images: int | None = None
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    # cos = 1 - cosine over all weights (published SR variant); layerwise = DC's form.
    distance: Literal["cos", "layerwise", "mse"] = "cos"
    iterations: int = 100
    # DC's bi-level loop: matching steps per iteration, net-training steps between them.
    # DC's defaults: ipc 1 -> (1, 1); ipc 10 -> (10, 50).
    outer_loop: int = 1
    inner_loop: int = 1
    lr_img: float = 0.01
    # largest change of any pixel from its initial value (L-infinity, pixels in [0, 1]); the set
    # stays within this distance of the real photos it started from. None = unbounded.
    max_change: float | None = None
    momentum: float = 0.5
    lr_net: float = 0.01
    # inner loop: one step = one epoch over the synthetic set in shuffled minibatches of this
    # many images (DC's batch_train 256), gradients summed across processes.
    batch_net: int = 256
    # real HR patches per class per matching step.
    batch_real: int = 16
    reference: ModelConfig = field(default_factory=ModelConfig)
    # pretrained reference (save_pretrained folder or Hub id); None = fresh random init per iteration.
    reference_path: str | None = None
    # several pretrained references (folders or Hub ids), e.g. SRCNN and EDSR at x2 and x4;
    # iteration i matches against pool[i % len(pool)] at that model's own scale, so one set
    # carries what each architecture and scale learns from the real data. Empty = reference_path.
    reference_pool: list[str] = field(default_factory=list)
    # generator backend and its settings, used when init=latent.
    latent: LatentConfig = field(default_factory=LatentConfig)
    # memory bound: classes matched together in one batched pass. 0 = auto: one class is probed
    # at start-up (its peak memory against each reference) and a chunk takes as many classes as
    # half the free memory holds (GPU memory, or available RAM on a CPU); the value chosen is
    # recorded in the checkpoint and the set's provenance.
    classes_per_step: int = 0
    # False = the per-class reference loop (slow; kept to check the batched path).
    batched: bool = True
    # arithmetic of the gm/dm matching step: fp32; bf16 = autocast the SR net to bfloat16
    # (distances and pixels stay fp32; pixel gradients within 10 % relative L2 of fp32, tested);
    # tf32 = TF32 matmuls/convolutions on CUDA (no effect on a CPU).
    precision: Literal["fp32", "bf16", "tf32"] = "fp32"
    # torch.compile the gm/dm matching step (one compile per chunk shape, tens of seconds on a
    # CPU; pixel gradients equal eager to float rounding, tested). Meant for GPUs: on a CPU at
    # the main job's sizes it was not faster than eager (README, bench_distill --paths compiled).
    compile: bool = False
    # classes per vmap call for the real / synthetic gradients; 0 = auto: all on a GPU, one on a
    # CPU (oneDNN's grouped convolutions, which wider vmaps produce, are slow there; one class
    # per call equals the per-class loop bit for bit). dm: classes per real forward, 0 = all,
    # or one on a CPU once a class has >= 8 images (matching.auto_chunk, dm.real_forward_chunk).
    real_chunk: int = 0
    syn_chunk: int = 0
    checkpoint_every: int = 50
    snapshot_every: int = 10
    seed: int = 0
    output_dir: str = "outputs/distill"
    resume: bool = False
    # experiment trackers (Accelerate's log_with: tensorboard, wandb, mlflow, ...); [] = off.
    # <output_dir>/history.csv is written either way (one row per iteration).
    log_with: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_trackers("distill.log_with", self.log_with)
        _check_positive("distill", ipc=self.ipc, image_size=self.image_size, iterations=self.iterations,
                        outer_loop=self.outer_loop, batch_real=self.batch_real, batch_net=self.batch_net,
                        lr_img=self.lr_img, lr_net=self.lr_net,
                        checkpoint_every=self.checkpoint_every,
                        snapshot_every=self.snapshot_every)
        if self.inner_loop < 0:
            raise ValueError(f"distill.inner_loop must be >= 0, got {self.inner_loop}")
        if self.classes_per_step < 0:
            raise ValueError(f"distill.classes_per_step must be >= 0 (0 = auto), got {self.classes_per_step}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"distill.momentum must be in [0, 1) (SGD momentum), got {self.momentum}")
        for name in ("real_chunk", "syn_chunk"):
            if getattr(self, name) < 0:
                raise ValueError(f"distill.{name} must be >= 0 (0 = auto), got {getattr(self, name)}")
        if self.image_size % self.reference.scale:
            raise ValueError(f"distill.image_size={self.image_size} must be divisible by the scale "
                             f"{self.reference.scale}")
        if self.max_change is not None and not 0 < self.max_change <= 1:
            raise ValueError(f"distill.max_change must be in (0, 1] (pixels are in [0, 1]) or None, "
                             f"got {self.max_change}")
        if self.max_change is not None and self.init == "latent":
            raise ValueError("distill.max_change bounds pixels, but init=latent optimises a generator's codes; "
                             "unset max_change")
        if self.objective == "tm" and self.precision != "fp32":
            raise ValueError(f"distill.precision={self.precision} applies to the gm/dm matching step; "
                             "objective=tm runs in fp32")
        if (self.init == "set") != (self.init_set is not None):
            raise ValueError(f"distill.init=set and distill.init_set go together (init={self.init!r}, "
                             f"init_set={self.init_set!r})")
        if self.reference_pool and self.reference_path:
            raise ValueError(f"distill.reference_pool={self.reference_pool} and distill.reference_path="
                             f"{self.reference_path} both name pretrained references; set only one of them")
        if self.objective == "tm":
            if self.init == "latent":
                raise ValueError("distill.objective=tm optimises pixels; init=latent is not supported with it")
            if self.reference_pool or self.reference_path:
                raise ValueError("distill.objective=tm trains its own experts (distill.tm); distill.reference_path/"
                                 "reference_pool name pretrained gm/dm references it would not use: unset them")
            for m in self.tm.models or [self.reference]:
                if self.tm.patch_size > self.image_size or self.tm.patch_size % m.scale:
                    raise ValueError(f"distill.tm.patch_size={self.tm.patch_size} must be <= distill.image_size="
                                     f"{self.image_size} and divisible by every expert's scale (x{m.scale})")
        if self.objective == "dm" and self.outer_loop != 1:
            raise ValueError(f"distill.objective=dm has no bi-level loop: distill.outer_loop must be 1, "
                             f"got {self.outer_loop}")
        if self.grouping == "class" and self.num_images is not None:
            raise ValueError("distill.num_images sets the size of a class-agnostic set: use it with "
                             "distill.grouping=global or kmeans (grouping=class makes classes x ipc images)")
        if self.grouping != "class":
            if self.num_images is None or self.num_images <= 0 or self.num_images % self.ipc:
                raise ValueError(f"distill.grouping={self.grouping} needs distill.num_images, a positive multiple "
                                 f"of distill.ipc={self.ipc} (images per matching unit), got {self.num_images}")
            if self.grouping == "kmeans" and self.num_images // self.ipc < self.clusters.num_clusters:
                raise ValueError(f"distill.num_images / distill.ipc = {self.num_images // self.ipc} matching units "
                                 f"cannot cover distill.clusters.num_clusters={self.clusters.num_clusters}")


# ---- root configs, one per command ----------------------------------------------------

@dataclass
class TrainJobConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class EvalJobConfig:
    # save_pretrained folder or Hub id of the SR model to evaluate.
    model_path: str = "outputs/train"
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class DistillJobConfig:
    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class BaselineJobConfig:
    """An equal-budget baseline set: distill.ipc images of distill.image_size per class, in distill.output_dir."""

    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # downscaled = each whole photo downscaled; random = random real crops; coreset = the crops a
    # scorer SR model finds hardest (distill.reference_path, else distill.reference trained briefly);
    # mosaic = each image a tiles x tiles grid of hard smaller crops at native scale, spread apart;
    # mixed = a mosaic whose first tile is the whole photo downscaled; representative = the real
    # crops whose luminance and bicubic-loss histograms best match the mean over all candidate
    # crops of their photo (herding, no model).
    kind: Literal["downscaled", "random", "coreset", "mosaic", "mixed", "representative"] = "coreset"
    # coreset: drop this top percentage of each class's crop losses as outliers first.
    outlier_pct: float = 0.0
    # coreset: steps of the scorer when distill.reference_path is unset.
    scorer_iterations: int = 500
    # mosaic / mixed: tiles per side of each image (distill.image_size must be a multiple).
    tiles: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.outlier_pct < 100.0:
            raise ValueError(f"outlier_pct must be in [0, 100), got {self.outlier_pct}")
        _check_positive("baseline", scorer_iterations=self.scorer_iterations, tiles=self.tiles)
        if self.kind in ("mosaic", "mixed") and self.distill.image_size % self.tiles:
            raise ValueError(f"baseline.tiles={self.tiles} must divide distill.image_size={self.distill.image_size}")


@dataclass
class MainJobConfig:
    """distil -> train a judge model on each set -> evaluate, in one table."""

    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(iterations=1000))
    eval: EvalConfig = field(default_factory=EvalConfig)
    # which training sets to compare: distilled, full, downscaled, random, coreset (the crops a
    # trained reference finds hardest; scored by the reference at the judge's scale).
    sets: list[str] = field(default_factory=lambda: ["distilled", "full", "downscaled", "random", "coreset"])
    # one judge per set and seed (train.seed is replaced); the table gives means, and the
    # distilled set's paired difference to downscaled, random and coreset with the seed spread.
    judge_seeds: list[int] = field(default_factory=lambda: [0, 1])
    output_dir: str = "outputs/main"
    # train the reference(s) on the full training data first and distil against them (one becomes
    # distill.reference_path, several distill.reference_pool); None = distil against the distill
    # config's own reference.
    reference_train: TrainConfig | None = None
    # the models reference_train trains (unused without it, like distill.latent without
    # init=latent); empty = [distill.reference]. Several make a pool, e.g. SRCNN at x2 and x4,
    # so the set is matched to what a model learns at each scale.
    reference_models: list[ModelConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.judge_seeds or len(set(self.judge_seeds)) != len(self.judge_seeds):
            raise ValueError(f"judge_seeds must be distinct seeds, at least one, got {self.judge_seeds}")
        named = self.distill.reference_path or self.distill.reference_pool
        if self.reference_train is not None and named:
            raise ValueError(f"reference_train trains the reference, but distill.reference_path/reference_pool="
                             f"{named} names one already; set only one of them")
