"""Gradient-matching throughput: the per-class loop vs the batched (vmap) path, side by side.

    python scripts/bench_distill.py                      # 8/32/128 classes, IPC 1 and 10
    python scripts/bench_distill.py --classes 8 --ipc 1 --repeats 1 --size 48   # quick
    python scripts/bench_distill.py --threads 1 --size 48   # as measured for the README table

For every (classes, IPC) it times one full matching step (real gradients, synthetic
gradients with create_graph, distance, backward into the pixels) with each path, and prints:
class-matchings/s, peak memory above the pre-call level, achieved GFLOP/s against the
machine's measured dense-convolution peak, and the largest difference between the two
paths' pixel gradients (relative to the largest gradient).

FLOPs are counted from the model with ``models.count_conv_flops`` (conv layers, one
multiply-add = 2 FLOPs) for one forward pass of one image, times a stated factor per image:
3 for a real image (forward, input-gradient, weight-gradient) and 8 for a synthetic image
(the same 3, then the double backward through both gradient convolutions, 4, and the
input-gradient back through the forward, 1). The first layer needs no input-gradient for
real images, so this overstates a little; ``torch.utils.flop_counter`` on the loop path counts
the executed FLOPs, both are printed, and GFLOP/s uses the smaller (no flattering).

Row ``dm``: the distribution-matching step (``distill.objective=dm``, default DMConfig: LR
input, channel means) on the same data and reference model, batched like the loop runs
it; its FLOPs are a forward per real image and a forward plus input-gradient per synthetic
image; its "vs loop" compares with the batched GM step.

Row ``pool``: ``--pool srcnn:2 srcnn:4 ...`` times the batched step once per member of a
reference pool (``distill.reference_pool``, each member at its own scale and ``--num-features``
width); an iteration matches against one member, so the row is their mean time and largest
memory, and its "vs loop" compares with the batched step of ``--model``.

Row ``tm``: one trajectory-matching iteration (``distill.objective=tm``, ``trajectory.unroll``):
``--tm-steps`` differentiable student steps on ``--tm-batch`` random ``--tm-patch``-px crops of
the set from a start checkpoint, the normalised distance to a target, and the backward into the
pixels. Its cost does not grow with the classes (the crops are drawn from the whole set) but its
memory grows with the steps (the unrolled graph); FLOPs are a synthetic image's factor per crop
per step; its "vs loop" compares with the batched GM step.

Memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the process RSS sampled every
2 ms by a background thread (torch's CPU allocator is invisible to tracemalloc, and
ru_maxrss cannot be reset between measurements), minus the RSS just before the call.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time

import torch

from hf_srdistill.config import DMConfig, ModelConfig, TrajectoryConfig
from hf_srdistill.distill.dm import dm_match_and_backward, real_forward_chunk
from hf_srdistill.distill.matching import auto_chunk, match_and_backward, precision
from hf_srdistill.distill.trajectory import trajectory_loss, unroll
from hf_srdistill.models import build_model, count_conv_flops
from hf_srdistill.peak_memory import PeakMemory

REAL_FACTOR, SYN_FACTOR = 3, 8
# path name -> (batched, real_chunk, syn_chunk) for (device, real images per class, IPC);
# "batched" is what the loop runs (matching.auto_chunk)
PATHS = {
    "loop": lambda dev, b, ipc: (False, None, None),
    "batched": lambda dev, b, ipc: (True, auto_chunk(dev), auto_chunk(dev)),
    "vmap-all": lambda dev, b, ipc: (True, None, None),
    "dm": lambda dev, b, ipc: (True, real_forward_chunk(b, dev), None),  # distribution matching, as the loop runs it
    "bf16": lambda dev, b, ipc: (True, auto_chunk(dev), auto_chunk(dev)),  # batched, distill.precision
    "tf32": lambda dev, b, ipc: (True, auto_chunk(dev), auto_chunk(dev)),
    "compiled": lambda dev, b, ipc: (True, auto_chunk(dev), auto_chunk(dev)),  # batched under distill.compile
    "tm": lambda dev, b, ipc: (True, None, None),  # one trajectory-matching iteration (chunks unused)
}
compiled_match = torch.compile(match_and_backward)  # compiles at its first call (the warm-up)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def conv_peak(device, repeats: int, clock) -> tuple[float, str]:
    """Best GFLOP/s of a few large dense conv2d forwards (the achievable convolution peak)."""
    shapes = [(32, 64, 96, 64, 3), (16, 64, 96, 32, 5), (64, 128, 64, 128, 3)]
    best, best_desc = 0.0, ""
    for n, cin, hw, cout, k in shapes:
        x = torch.randn(n, cin, hw, hw, device=device)
        w = torch.randn(cout, cin, k, k, device=device)
        flops = 2 * n * cout * hw * hw * cin * k * k
        torch.nn.functional.conv2d(x, w, padding=k // 2)
        sync(device)
        times = []
        for _ in range(max(3, repeats)):
            t = clock()
            torch.nn.functional.conv2d(x, w, padding=k // 2)
            sync(device)
            times.append(clock() - t)
        g = flops / min(times) / 1e9
        if g > best:
            best, best_desc = g, f"conv {n}x{cin}x{hw}x{hw} -> {cout}, {k}x{k}"
    return best, best_desc


def tm_step(model, images, tm: TrajectoryConfig):
    """One trajectory-matching iteration from the model's weights towards a nearby target."""
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    target = start + 1e-3 * torch.randn(start.shape, generator=torch.Generator().manual_seed(0)).to(start.device)
    log_lr = torch.tensor(-6.0, device=start.device, requires_grad=True)
    end, _ = unroll(model, start, images, log_lr, tm.syn_steps, tm.batch_syn, tm.patch_size,
                    torch.Generator().manual_seed(1), torch.ones_like(start))
    trajectory_loss(end, start, target).backward()


def one_step(model, syn0, real, scale, path, cps, device, tm: TrajectoryConfig | None = None):
    """One matching step; returns (wall s, process-CPU s, peak bytes, pixel gradient)."""
    leaf = syn0.clone().requires_grad_(True)
    k, ipc = real.shape[0], syn0.shape[0] // real.shape[0]
    batched, real_chunk, syn_chunk = PATHS[path](device, real.shape[1], ipc)
    sync(device)
    with PeakMemory(device) as mem, precision(path if path in ("bf16", "tf32") else "fp32", device):
        t, c = time.perf_counter(), time.process_time()
        if path == "tm":
            tm_step(model, leaf, tm)
        elif path == "dm":
            dm_match_and_backward(model, leaf.view(k, ipc, *syn0.shape[1:]), real, scale, DMConfig(), cps, batched,
                                  real_chunk)
        else:
            (compiled_match if path == "compiled" else match_and_backward)(
                model, leaf.view(k, ipc, *syn0.shape[1:]), real, scale, "cos", cps, batched, real_chunk, syn_chunk)
        sync(device)
        dt, dc = time.perf_counter() - t, time.process_time() - c
    return dt, dc, mem.delta, leaf.grad.detach()


def best_run(runs: list, clock_name: str):
    """The fastest of repeated one_step results on the chosen clock."""
    return min(runs, key=lambda r: r[1] if clock_name == "cpu" else r[0])


def pool_step(pool, syn, real, cps, device, repeats, clock_name) -> tuple[float, float, float]:
    """Mean (wall s, CPU s) and largest memory of the batched step over the pool's members."""
    per_member = []
    for member in pool:
        one_step(member, syn[: cps * (syn.shape[0] // real.shape[0])], real[:cps], member.scale, "batched", cps,
                 device)  # warm-up
        runs = [one_step(member, syn, real, member.scale, "batched", cps, device) for _ in range(repeats)]
        per_member.append((best_run(runs, clock_name), max(r[2] for r in runs)))
    n = len(per_member)
    return (sum(b[0] for b, _ in per_member) / n, sum(b[1] for b, _ in per_member) / n,
            max(mem for _, mem in per_member))


def executed_flops(model, scale, size, batch_real, ipc) -> int:
    """FLOPs torch's flop counter sees in one class-matching of the per-class loop (CPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    real = torch.rand(1, batch_real, 3, size, size)
    syn = torch.rand(ipc, 3, size, size).requires_grad_(True)
    with FlopCounterMode(display=False) as fc:
        match_and_backward(model, syn.view(1, ipc, 3, size, size), real, scale, "cos", 1, batched=False)
    return fc.get_total_flops()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="srcnn")
    p.add_argument("--num-features", type=int, default=None, help="reference width (None = published)")
    p.add_argument("--depth", type=int, default=None, help="reference depth, e.g. EDSR blocks (None = published)")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--classes", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--batch-real", type=int, default=16)
    p.add_argument("--size", type=int, default=96, help="HR side of real and synthetic images")
    p.add_argument("--classes-per-step", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (best is reported)")
    p.add_argument("--loop-max-classes", type=int, default=128, help="skip the loop above this (slow)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--paths", nargs="+", default=["loop", "batched", "vmap-all", "dm"], choices=list(PATHS),
                   help="bf16 / tf32 = the batched path under distill.precision, compiled = under "
                        "distill.compile (grad diffs are against the fp32 loop)")
    p.add_argument("--tm-steps", type=int, default=TrajectoryConfig.syn_steps, help="tm row: student steps")
    p.add_argument("--tm-batch", type=int, default=TrajectoryConfig.batch_syn, help="tm row: crops per step")
    p.add_argument("--tm-patch", type=int, default=TrajectoryConfig.patch_size, help="tm row: crop side (HR px)")
    p.add_argument("--pool", nargs="+", default=[], metavar="NAME:SCALE",
                   help="also time a reference pool, e.g. srcnn:2 srcnn:4 (the main job's)")
    p.add_argument("--clock", choices=["wall", "cpu"], default=None,
                   help="time base of GFLOP/s and matchings/s (default: wall on GPU, process CPU time on "
                        "CPU, which stays meaningful when other jobs share the cores)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    tm = TrajectoryConfig(syn_steps=args.tm_steps, batch_syn=args.tm_batch, patch_size=args.tm_patch)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=args.model, scale=args.scale, num_features=args.num_features,
                                    depth=args.depth)).to(device)
    members = [m.partition(":") for m in args.pool]
    if any(not sc.isdigit() for _, _, sc in members):
        p.error(f"--pool takes NAME:SCALE entries such as srcnn:4, got {args.pool}")
    pool = [build_model(ModelConfig(name=name, scale=int(sc), num_features=args.num_features)).to(device)
            for name, _, sc in members]
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    per_image = count_conv_flops(model, (1, 3, args.size // args.scale, args.size // args.scale))
    per_crop_tm = count_conv_flops(model, (1, 3, tm.patch_size // args.scale, tm.patch_size // args.scale))
    per_image_dm = sum(per_image if x == "lr" else count_conv_flops(model, (1, 3, args.size, args.size))
                       for x in DMConfig().inputs)  # a forward per DM input (the HR one at HR size)
    clock_name = args.clock or ("wall" if device.type == "cuda" else "cpu")
    clock = time.perf_counter if clock_name == "wall" else time.process_time
    peak, peak_desc = conv_peak(device, args.repeats, clock)
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"machine: {hw}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print(f"load average before the run: {os.getloadavg()[0]:.2f}")
    print(f"model: {args.model} (features {args.num_features or 'published'}, depth {args.depth or 'published'}), "
          f"x{args.scale}, "
          f"{per_image / 1e9:.3f} GFLOP per {args.size}px forward; factors real {REAL_FACTOR}, synthetic {SYN_FACTOR}")
    counted = {}
    for ipc in args.ipc:
        stated = per_image * (REAL_FACTOR * args.batch_real + SYN_FACTOR * ipc)
        counted[ipc] = executed_flops(copy.deepcopy(model).cpu(), args.scale, args.size, args.batch_real, ipc)
        print(f"FLOPs per class-matching, IPC {ipc}: stated {stated / 1e9:.2f} GFLOP (forward x "
              f"({REAL_FACTOR} x {args.batch_real} real + {SYN_FACTOR} x {ipc} synthetic)), executed "
              f"{counted[ipc] / 1e9:.2f} GFLOP (torch.utils.flop_counter on the loop); GFLOP/s below use "
              f"the smaller")
    table = []
    for ipc in args.ipc:
        for k in args.classes:
            gen = torch.Generator().manual_seed(k * 100 + ipc)
            real = torch.rand(k, args.batch_real, 3, args.size, args.size, generator=gen).to(device)
            syn = torch.rand(k * ipc, 3, args.size, args.size, generator=gen).to(device)
            flops = k * min(counted[ipc], per_image * (REAL_FACTOR * args.batch_real + SYN_FACTOR * ipc))
            cps = min(k, args.classes_per_step)
            # the peak is re-measured per row (best kept): other jobs sharing the cores depress it too
            p2, d2 = conv_peak(device, args.repeats, clock)
            if p2 > peak:
                peak, peak_desc = p2, d2
            rows, grads = {}, {}
            paths = [q for q in args.paths if q != "loop" or k <= args.loop_max_classes]
            for name in paths:
                # warm-up on the chunk size: first calls pay for kernel selection and allocation
                one_step(model, syn[: cps * ipc], real[:cps], args.scale, name, cps, device, tm)
            runs: dict[str, list] = {name: [] for name in paths}
            for _ in range(args.repeats):  # interleaved, so drifting load hits every path alike
                for name in paths:
                    runs[name].append(one_step(model, syn, real, args.scale, name, cps, device, tm))
            for name in paths:
                best = best_run(runs[name], clock_name)
                rows[name] = (best[0], best[1], max(r[2] for r in runs[name]))
                grads[name] = runs[name][-1][3]
            if pool:
                rows["pool"] = pool_step(pool, syn, real, cps, device, args.repeats, clock_name)
            for name, (wall, cpu, mem) in rows.items():
                t = cpu if clock_name == "cpu" else wall
                gf = {"dm": k * per_image_dm * (args.batch_real + 2 * ipc),
                      "tm": per_crop_tm * SYN_FACTOR * tm.batch_syn * tm.syn_steps}.get(name, flops) / t / 1e9
                ref = rows.get("batched" if name in ("dm", "pool", "tm") else "loop")
                speed = f"{(ref[1] if clock_name == 'cpu' else ref[0]) / t:.2f}x" if ref and name != "loop" else ""
                diff = ""
                if "loop" in grads and name in grads and name not in ("loop", "dm", "tm"):
                    g0 = grads["loop"]
                    diff = f"{float((g0 - grads[name]).abs().max() / g0.abs().max().clamp_min(1e-30)):.2e}"
                table.append((k, ipc, name, k / t, wall, cpu, mem / 2**20, gf, speed, diff))
                print(f"done: {k} classes, IPC {ipc}, {name}: {gf:.1f} GFLOP/s", file=sys.stderr, flush=True)
    print(f"dense-conv peak: {peak:.1f} GFLOP/s ({peak_desc}; {clock_name} clock; best of the measurements "
          f"taken before each row)")
    head = (f"{'classes':>7} {'ipc':>4} {'path':>8} {'match/s':>9} {'wall s':>8} {'cpu s':>8} {'peak MB':>9} "
            f"{'GFLOP/s':>8} {'% peak':>7} {'vs loop':>8} {'max rel grad diff':>18}")
    print(head + "\n" + "-" * len(head))
    for k, ipc, name, rate, wall, cpu, mem, gf, speed, diff in table:
        print(f"{k:>7} {ipc:>4} {name:>8} {rate:>9.2f} {wall:>8.2f} {cpu:>8.2f} {mem:>9.0f} "
              f"{gf:>8.1f} {100 * gf / peak:>6.1f}% {speed:>8} {diff:>18}")
    print(f"\nbest of {args.repeats} timed steps each, paths interleaved ({clock_name} clock, after one "
          f"warm-up); "
          f"{args.classes_per_step} classes per chunk. batched = the loop's default (matching.auto_chunk: "
          f"{'vmap over the whole chunk' if device.type == 'cuda' else 'one class per vmap call, the loop bit for bit'}"
          f"); vmap-all = vmap over the whole chunk for both. match/s, GFLOP/s and vs-loop use "
          f"the {clock_name} clock. dm = one distribution-matching step (default DMConfig); its "
          f"vs-loop column is against batched gradient matching. tm = one trajectory-matching "
          f"iteration ({tm.syn_steps} student steps on {tm.batch_syn} crops of {tm.patch_size} px, any class count), "
          f"its vs-loop column against batched gradient matching."
          + (f" pool = the batched step averaged over {', '.join(args.pool)} (one member per iteration; "
             f"GFLOP/s counts --model's FLOPs); its vs-loop column is against batched." if pool else ""))


if __name__ == "__main__":
    main()
