"""The 2D path: mosaics built per second, and 2D backbones trained / evaluated per second on mosaics.

* ``build``: :func:`braindl.mosaic.make_mosaics` + resize of 79x95x60 volumes
  into 000's 6x10 layout (one mosaic per scan) and 001's interleaved 4x4
  layout (three per scan), at the configured scale;
* ``train``: one epoch of the training data path of ``braindl.training`` for
  mosaic input (one of the scan's mosaics picked per step, shift/zoom
  augmentation on the device, Adam step), per backbone and mosaic size;
* ``predict``: evaluation mosaics per second (no gradient).

Prints mosaics per second and peak memory (process RSS on the CPU,
``torch.cuda.max_memory_allocated`` on CUDA).

    python benchmarks/mosaic_throughput.py
    python benchmarks/mosaic_throughput.py --device cuda --backbones resnet18 densenet121 resnet50 --scales 1.0
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braindl import models, mosaic, training  # noqa: E402

L000 = {"rows": 6, "columns": 10, "axis": 2, "slices": "all", "interleave": 1}
L001 = {"rows": 4, "columns": 4, "axis": 2, "slices": {"first": 6, "last": 53}, "interleave": 3}


def peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_build(vols, layout, scale) -> float:
    t0 = time.perf_counter()
    n = 0
    for v in vols:
        n += len(mosaic.resize(mosaic.make_mosaics(v, layout), scale))
    return n / (time.perf_counter() - t0)


def bench_train(name, mosaics, labels, args, device) -> tuple[float, float]:
    x = torch.from_numpy(mosaics.astype(np.float16)).to(device)
    y = torch.tensor(labels, device=device)
    model = models.build_model(name, x.shape[2:], 2, 0.5, head="fc256").to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    gen = torch.Generator(device=device.type).manual_seed(0)
    amp = device.type == "cuda"
    timings = []
    for epoch in range(args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x), device=device)
        for s in range(0, len(x), args.batch_size):
            idx = order[s:s + args.batch_size]
            pick = torch.randint(0, x.shape[1], (len(idx),), device=device)
            xb = training.augment_2d(x[idx, pick].unsqueeze(1), 0.03, 0.03, gen)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(xb.float())
            torch.nn.functional.cross_entropy(out.float(), y[idx]).backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - t0)
    train_rate = len(x) * args.epochs / sum(timings[1:])
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        for s in range(0, len(x), args.batch_size):
            for k in range(x.shape[1]):
                model(x[s:s + args.batch_size, k:k + 1].float())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return train_rate, len(x) * x.shape[1] / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "densenet121"])
    ap.add_argument("--scales", nargs="+", type=float, default=[0.5])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = training.pick_device(args.device)
    rng = np.random.default_rng(0)
    vols = [rng.random((79, 95, 60), dtype=np.float32) for _ in range(args.scans)]
    labels = [i % 2 for i in range(args.scans)]
    print(f"device {device}, {torch.get_num_threads()} threads, {args.scans} scans of 79x95x60, "
          f"batch {args.batch_size}")
    for scale in args.scales:
        for lname, layout in (("000 6x10", L000), ("001 3x 4x4", L001)):
            print(f"build   layout {lname:10s} scale {scale:.2f}: {bench_build(vols, layout, scale):8.1f} mosaics/s")
    for scale in args.scales:
        for lname, layout in (("000 6x10", L000), ("001 3x 4x4", L001)):
            mos = np.stack([mosaic.resize(mosaic.make_mosaics(v, layout), scale) for v in vols])
            for name in args.backbones:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                tr, pr = bench_train(name, mos, labels, args, device)
                print(f"{name:12s} layout {lname:10s} {mos.shape[2]}x{mos.shape[3]}: train {tr:6.2f} scans/s, "
                      f"predict {pr:7.2f} mosaics/s, peak {peak_mb(device):7.0f} MB")


if __name__ == "__main__":
    main()
