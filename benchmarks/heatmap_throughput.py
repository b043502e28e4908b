"""Heatmaps per second per method (braindl.heatmaps), on the CPU or a CUDA GPU.

    python benchmarks/heatmap_throughput.py                  # CPU, default settings
    python benchmarks/heatmap_throughput.py --device cuda
    python benchmarks/heatmap_throughput.py --full-occlusion # also the full protocol's 8^3 patch, stride 4

3D: ``cnn3d_thesis`` on the default T1w crop (96 x 114 x 96); 2D: ResNet-18 on
000's mosaics at ``mosaic.scale`` 0.5 (285 x 395). Random weights: the cost of an
attribution does not depend on what the network learned. Occlusion is batched
(``--occlusion-batch`` occluded inputs per forward pass). Prints one line per
model and method: scans, seconds, heatmaps per second, peak memory.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from braindl import heatmaps, models


def _peak(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"


def bench(model, shape, specs, settings, n, batch, device):
    model = model.to(device).eval()
    x = torch.rand(n, 1, *shape, device=device)
    for label, spec in specs.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            attr = heatmaps.Attributor(model, spec, x[:1], settings)
        except heatmaps.HeatmapError as err:
            print(f"  {label:<22} refused: {err}")
            continue
        attr(x[:1], 1)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            attr(x[s:s + batch], 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"  {label:<22} {n} scans in {dt:7.2f} s: {n / dt:7.2f} heatmaps/s  (peak {_peak(device)})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scans", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--occlusion-batch", type=int, default=16)
    ap.add_argument("--full-occlusion", action="store_true", help="also 8^3 patches with stride 4 (slow on a CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {args.threads} threads, batch {args.batch}, occlusion batch {args.occlusion_batch}")
    specs = {"lrp_epsilon": {"method": "lrp_epsilon", "epsilon": 1e-3}, "lrp_beta (0.5)": {"method": "lrp_beta", "beta": 0.5},
             "guided_backprop": {"method": "guided_backprop"}, "gradient_x_input": {"method": "gradient_x_input"},
             "gradcam": {"method": "gradcam"}, "occlusion 16^3/16": {"method": "occlusion"}}
    settings = {"occlusion_patch": [16, 16, 16], "occlusion_stride": [16, 16, 16], "occlusion_batch": args.occlusion_batch,
                "occlusion_patch_2d": [12, 10], "occlusion_stride_2d": [12, 10]}
    shape3d = (96, 114, 96)
    torch.manual_seed(0)
    print(f"cnn3d_thesis, {shape3d}")
    bench(models.build_model("cnn3d_thesis", shape3d, 2), shape3d, specs, settings, args.scans, args.batch, device)
    if args.full_occlusion:
        full = {**settings, "occlusion_patch": [8, 8, 8], "occlusion_stride": [4, 4, 4]}
        bench(models.build_model("cnn3d_thesis", shape3d, 2), shape3d, {"occlusion 8^3/4": {"method": "occlusion"}},
              full, max(1, args.scans // 8), 1, device)
    shape2d = (285, 395)
    print(f"resnet18 on mosaics, {shape2d}")
    specs2d = {k: v for k, v in specs.items() if not k.startswith("lrp")}
    specs2d["occlusion 12x10/12x10"] = specs2d.pop("occlusion 16^3/16")
    bench(models.build_model("resnet18", shape2d, 2, head="linear"), shape2d, specs2d, settings, args.scans,
          args.batch, device)


if __name__ == "__main__":
    main()
