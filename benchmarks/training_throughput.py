"""Training throughput: the packed device tensor against a plain MONAI Dataset + DataLoader.

Both paths train the same model with the same batch size on the same volumes:

* ``packed``: braindl's path (one .npy, rows copied to the device once,
  augmentation on the device, :func:`braindl.training.augment`);
* ``monai``: ``monai.data.Dataset`` with ``LoadImage`` + ``EnsureChannelFirst``
  + ``RandFlip`` + ``RandAffine`` (translation) per item, read from NIfTI at
  every step, through a ``DataLoader`` with ``--workers`` workers.

Prints volumes per second (after one warm-up epoch) and peak memory (process
RSS on the CPU; ``torch.cuda.max_memory_allocated`` on CUDA).

    python benchmarks/training_throughput.py --volumes 32 --epochs 2
    python benchmarks/training_throughput.py --device cuda --shape 96 114 96
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braindl import models, training  # noqa: E402
from braindl.io import write_nifti  # noqa: E402


def make_volumes(folder: Path, n: int, shape) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"v{i:03d}.nii.gz"
        write_nifti(p, rng.random(shape, dtype=np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
        paths.append(p)
    return paths


def step_fn(model, opt, loss_fn, device, amp):
    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb.float())
        loss = loss_fn(out.float(), yb)
        loss.backward()
        opt.step()
    return step


def bench_packed(paths, labels, shape, args, device):
    arr = np.stack([np.asarray(__import__("nibabel").load(str(p)).dataobj, np.float32) for p in paths])
    x = torch.from_numpy(arr.astype(np.float16)).unsqueeze(1).to(device)
    y = torch.tensor(labels, device=device)
    model = models.build_model(args.model, shape, 2).to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    step = step_fn(model, opt, torch.nn.CrossEntropyLoss(), device, device.type == "cuda")
    gen = torch.Generator(device=device.type).manual_seed(0)
    timings = []
    for epoch in range(args.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(len(paths), device=device)
        for s in range(0, len(paths), args.batch_size):
            idx = order[s:s + args.batch_size]
            step(training.augment(x[idx], 0.5, 2, gen), y[idx])
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - t0)
    return len(paths) * args.epochs / sum(timings[1:])


def bench_monai(paths, labels, shape, args, device):
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandAffined, RandFlipd

    items = [{"image": str(p), "label": int(lab)} for p, lab in zip(paths, labels)]
    tf = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
                  RandFlipd("image", prob=0.5, spatial_axis=0),
                  RandAffined("image", prob=1.0, translate_range=(2, 2, 2), padding_mode="zeros")])
    loader = DataLoader(Dataset(items, tf), batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        pin_memory=device.type == "cuda")
    model = models.build_model(args.model, shape, 2).to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    step = step_fn(model, opt, torch.nn.CrossEntropyLoss(), device, device.type == "cuda")
    timings = []
    for epoch in range(args.epochs + 1):
        t0 = time.perf_counter()
        for batch in loader:
            step(batch["image"].as_tensor().to(device, non_blocking=True), batch["label"].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - t0)
    return len(paths) * args.epochs / sum(timings[1:])


def peak_memory(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB RSS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=32)
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 114, 96])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    ap.add_argument("--model", default="cnn3d_thesis", choices=models.MODELS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["monai", "packed"], help="run one path (each runs in its own process, "
                    "so that peak memory is its own)")
    args = ap.parse_args()
    if args.only is None:
        import subprocess

        rates = {}
        for name in ("monai", "packed"):
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", name], capture_output=True,
                                 text=True, check=True).stdout
            print(out.rstrip() if name == "monai" else out.rstrip().splitlines()[-1])
            rates[name] = float(out.rstrip().splitlines()[-1].split()[1])
        print(f"speed-up packed / monai: {rates['packed'] / rates['monai']:.2f}x")
        return
    torch.set_num_threads(args.threads)
    device = training.pick_device(args.device)
    shape = tuple(args.shape)
    labels = [i % 2 for i in range(args.volumes)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_volumes(Path(tmp), args.volumes, shape)
        print(f"{args.volumes} volumes of {shape}, batch {args.batch_size}, model {args.model}, device {device}, "
              f"{args.threads} threads, {args.workers} loader workers, {args.epochs} timed epochs")
        fn = {"monai": bench_monai, "packed": bench_packed}[args.only]
        vps = fn(paths, labels, shape, args, device)
        print(f"{args.only:7s} {vps:8.2f} volumes/s   peak {peak_memory(device)}")


if __name__ == "__main__":
    main()
