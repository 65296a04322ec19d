"""Class-agnostic distillation: sets of any size, k-means pseudo-classes, the pooled view."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_srdistill.config import ClusterConfig, DataConfig, DistillConfig, DistillJobConfig, ModelConfig
from hf_srdistill.distill import distill
from hf_srdistill.distill.checkpoint import checkpoint_path
from hf_srdistill.distill.class_agnostic import PooledStore, allocate, group_store, initial_images
from hf_srdistill.distill.pseudo_classes import cluster_subimages, kmeans, standardise, stats_descriptors
from hf_srdistill.distill.synthetic import downscaled_images


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("agnostic_cache"))


def job(cache, out, **distill_kw) -> DistillJobConfig:
    """3 photos (174 sub-images of 64 px), 32-px synthetic images, a 4-feature SRCNN."""
    base = dict(ipc=1, image_size=32, init="downscaled", iterations=3, batch_real=3, lr_img=0.1,
                checkpoint_every=2, snapshot_every=1, classes_per_step=2, output_dir=str(out),
                reference=ModelConfig(name="srcnn", scale=2, num_features=4))
    base.update(distill_kw)
    data = DataConfig(source="mini", max_images=3, crop_size=64, step=64, cache_dir=cache)
    return DistillJobConfig(data=data, distill=DistillConfig(**base))


def store_of(cfg):
    from hf_srdistill.data.grouped import SubImageStore

    return SubImageStore.build(cfg.data)


def with_(cfg, **kw):
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, **kw))


# ---- allocation and clustering -------------------------------------------------------------

def test_allocate_gives_one_each_then_largest_remainders():
    assert allocate(5, [10, 10, 10]) == [2, 2, 1]  # 2 spare units, equal shares: ties go to the first groups
    assert allocate(7, [100, 1, 1]) == [5, 1, 1]  # (7 - 3) * 100/102 = 3.92 -> 3 + the largest remainder
    assert allocate(3, [5, 7, 1]) == [1, 1, 1]
    with pytest.raises(ValueError, match="cannot cover"):
        allocate(2, [1, 1, 1])


def test_kmeans_recovers_well_separated_blobs_and_is_deterministic():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    truth = np.repeat([0, 1, 2], 20)
    x = centres[truth] + rng.normal(0, 0.5, (60, 2))
    labels, inertia = kmeans(x, 3, seed=7)
    # same partition as the truth, whatever the numbering
    assert len({(t, l) for t, l in zip(truth, labels)}) == 3
    assert np.array_equal(kmeans(x, 3, seed=7)[0], labels)
    want = sum(((x[labels == k] - x[labels == k].mean(0)) ** 2).sum() for k in range(3))
    assert inertia == pytest.approx(want)
    with pytest.raises(ValueError, match="distinct sub-image descriptors"):
        kmeans(np.zeros((5, 2)), 2, seed=0)


def test_standardise_and_stats_descriptor_by_hand():
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    assert np.allclose(standardise(x), [[-1, 0], [1, 0]])
    flat = np.full((16, 16, 3), 128, dtype=np.uint8)
    d = stats_descriptors([flat])[0]
    assert np.allclose(d[:3], 128 / 255) and np.allclose(d[3:6], 0)
    assert d[6] == 1 and d[7:14].sum() == 0  # no gradient anywhere: all pixels in the first bin
    # inside the 1-px border every neighbour equals the centre: all 8 bits set, uniform code P = 8
    assert d[14 + 8] == pytest.approx(14 * 14 / 256) and d[14:].sum() == pytest.approx(1)


@pytest.mark.parametrize("features", ["random_net", "stats"])
def test_clustering_assigns_every_subimage_and_is_deterministic(cache, tmp_path, features):
    cfg = job(cache, tmp_path, grouping="kmeans", num_images=4, clusters=ClusterConfig(num_clusters=3,
                                                                                      features=features))
    store = store_of(cfg)
    labels = cluster_subimages(store, cfg.distill, str(tmp_path / "a"))
    assert labels.shape == (len(store),) and set(labels.tolist()) == {0, 1, 2}
    again = cluster_subimages(store, cfg.distill, str(tmp_path / "b"))  # recomputed, not read from a cache
    assert np.array_equal(labels, again)
    assert np.array_equal(cluster_subimages(store, cfg.distill, str(tmp_path / "a")), labels)  # the cached copy


# ---- the pooled view ----------------------------------------------------------------------

def test_pooled_view_draws_patches_from_its_pool_only(cache, tmp_path):
    cfg = job(cache, tmp_path)
    store = store_of(cfg)
    view = PooledStore(store, [np.array([5]), np.array([7, 9])], [0, 1], ["a", "b"], {"grouping": "test"})
    gen = torch.Generator().manual_seed(3)
    patches = view.sample_patches(0, 4, 32, gen)
    gen = torch.Generator().manual_seed(3)
    torch.randint(1, (4,), generator=gen)
    tops, lefts = torch.randint(33, (4,), generator=gen), torch.randint(33, (4,), generator=gen)
    sub = store.all_subimages()[5]
    for p, t, l in zip(patches, tops.tolist(), lefts.tolist()):
        want = torch.from_numpy(sub[t:t + 32, l:l + 32].copy()).permute(2, 0, 1).float() / 255
        assert torch.equal(p, want)
    assert view.count(1) == 2 and view.class_names == ["a/0", "b/0"]


def test_global_init_downscales_distinct_photos_then_windows(cache, tmp_path):
    cfg = job(cache, tmp_path, grouping="global", num_images=5)
    store = store_of(cfg)
    view = group_store(store, cfg)
    assert view.num_classes == 5 and all(view.count(c) == len(store) for c in range(5))
    images = initial_images(cfg.distill, view, list(range(5)))
    photos = [downscaled_images(store.source_image(c), 1, 32, torch.Generator())[0].clamp(0, 1) for c in range(3)]
    first = [min(range(3), key=lambda c: float((images[j] - photos[c]).abs().max())) for j in range(3)]
    assert sorted(first) == [0, 1, 2]  # the first pass downscales every photo once
    assert all(torch.allclose(images[j], photos[first[j]]) for j in range(3))
    for j in (3, 4):  # later passes: windows, not copies
        assert min(float((images[j] - p).abs().max()) for p in photos) > 0.05
    # a process that owns units 3..4 only starts them from the same pixels
    assert torch.equal(initial_images(cfg.distill, view, [3, 4]), images[3:])


# ---- end to end -------------------------------------------------------------------------

@pytest.mark.parametrize("objective", ["gm", "dm"])
def test_global_set_of_any_size_is_written_and_loads(cache, tmp_path, objective):
    from datasets import load_dataset

    cfg = job(cache, tmp_path / "set", grouping="global", num_images=5, objective=objective)
    folder = distill(cfg)
    ds = load_dataset(str(folder), split="train")
    assert len(ds) == 5 and ds.features["label"].names == ["global"]
    assert ds["label"] == [0] * 5 and ds["ipc_index"] == [0, 1, 2, 3, 4]
    extra = json.loads((folder / "provenance.json").read_text())["extra"]
    assert extra["grouping"] == {"grouping": "global", "num_images": 5, "images_per_unit": 1, "units": 5}
    sizes = json.loads((folder / "size_report.json").read_text())
    assert sizes["synthetic"]["images"] == 5 and sizes["originals"]["images"] == 3


@pytest.mark.parametrize("kind", ["downscaled", "random"])
def test_baselines_of_a_class_agnostic_config_have_its_size_and_start(cache, tmp_path, kind):
    from datasets import load_dataset

    from hf_srdistill.distill import make_baseline_set

    cfg = job(cache, tmp_path / kind, grouping="global", num_images=5)
    ds = load_dataset(str(make_baseline_set(kind, cfg)), split="train")
    start = initial_images(dataclasses.replace(cfg.distill, init={"downscaled": "downscaled", "random": "real"}[kind]),
                           group_store(store_of(cfg), cfg), list(range(5)))
    assert start.is_contiguous()  # a distillation from it views the set per unit
    want = (start.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(np.stack([np.asarray(im) for im in ds["hr"]]), want)
    assert ds.features["label"].names == ["global"] and ds["ipc_index"] == [0, 1, 2, 3, 4]


def test_kmeans_set_labels_pseudo_classes_and_resume_is_exact(cache, tmp_path):
    from datasets import load_dataset

    cfg = job(cache, tmp_path / "whole", grouping="kmeans", num_images=8, ipc=2, objective="dm", iterations=4,
              clusters=ClusterConfig(num_clusters=3))
    folder = distill(cfg)
    ds = load_dataset(str(folder), split="train")
    grouping = json.loads((folder / "provenance.json").read_text())["extra"]["grouping"]
    names = ["cluster_0", "cluster_1", "cluster_2"]
    assert len(ds) == 8 and ds.features["label"].names == names
    counts = grouping["clusters"]["images"]
    assert sum(counts.values()) == 8 and all(v >= 2 and v % 2 == 0 for v in counts.values())
    assert [names[x] for x in ds["label"]] == [n for n in names for _ in range(counts[n])]
    assert sum(grouping["clusters"]["subimages"].values()) == len(store_of(cfg))

    part = with_(cfg, iterations=2, output_dir=str(tmp_path / "part"))
    distill(part)
    resumed = load_file(str(checkpoint_path(distill(with_(part, iterations=4, resume=True)))))
    whole = load_file(str(checkpoint_path(folder)))
    assert torch.equal(resumed["images"], whole["images"]) and torch.equal(resumed["momentum"], whole["momentum"])


def test_config_errors_name_the_fields():
    with pytest.raises(ValueError, match="needs distill.num_images"):
        DistillConfig(grouping="global")
    with pytest.raises(ValueError, match="multiple of distill.ipc=2"):
        DistillConfig(grouping="global", ipc=2, num_images=5)
    with pytest.raises(ValueError, match="use it with distill.grouping=global or kmeans"):
        DistillConfig(num_images=5)
    with pytest.raises(ValueError, match="cannot cover distill.clusters.num_clusters=8"):
        DistillConfig(grouping="kmeans", num_images=4)


@pytest.mark.slow
def test_global_grouping_drives_latent_codes(cache, tmp_path):
    """A class-agnostic set of 4 images decoded from a tiny untrained VAE: the codes move and are
    written with the set."""
    from datasets import load_dataset

    from hf_srdistill.config import LatentConfig
    from hf_srdistill.distill.latent_glue import latent_state_path

    lat = LatentConfig(backend="vae", vae_channels=[8, 16], chunk_size=2, lr_latent=1.0)
    cfg = job(cache, tmp_path / "latent", grouping="global", num_images=4, init="latent", latent=lat,
              iterations=2, lr_img=1.0)
    folder = distill(cfg)
    assert len(load_dataset(str(folder), split="train")) == 4 and (folder / "latents.safetensors").is_file()
    final = load_file(str(checkpoint_path(folder)))["images"]
    start = torch.load(latent_state_path(folder), weights_only=False)["initial_images"]
    assert final.shape == (4, 3, 32, 32) and float((final - start).abs().max()) > 1e-4
