"""Training of one run: a model on one task, variant, modality, split and repeat.

Data path: the packed volumes of the variant (:mod:`braindl.pack`) are read
once, the rows of the split copied to the device as one tensor, and batches
are sliced from it; augmentation (sagittal flip with probability
``augment_flip``, translation along one random axis by up to
``augment_shift_voxels`` voxels, zero filled) runs on the device too.
Mosaic input (``settings['input'] == 'mosaic'``, :mod:`braindl.mosaic`) trains
a 2D backbone (:mod:`braindl.backbones`) on one of a scan's mosaics per step
with 001's shift/zoom augmentation, and predicts the mean over the scan's
mosaics (001's ensemble).

Training: Adam or Adadelta, class-weighted cross-entropy (or MSE on a
standardised target for regression), bf16 autocast on CUDA, early stopping on
``monitor`` with ``early_stopping_patience`` epochs and ``early_stopping_min_delta``,
the best epoch's weights kept. The whole state (model, optimiser, random
generators, history, best weights) is checkpointed under ``state_dir`` at most
every ``checkpoint_s`` seconds (default one minute) and when the run ends; a
run killed in the middle resumes from its last checkpoint when rerun with the
same settings, and ends where an uninterrupted run ends (the generators are
part of the state). On the CPU the same seed gives the same metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from braindl import backbones, derivatives, models, splits
from braindl.architectures import PIF_MODELS
from braindl.io import atomic_path, job_file_lists, write_json, write_tsv
from braindl.logs import progress
from braindl.pack import load_pack


class TrainingError(RuntimeError):
    """A run that cannot give a model (it diverged); the message names the run and what to change."""


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is cuda but no CUDA device is available")
    return dev


def run_seed(seed: int, split: int, run: int) -> int:
    """Seed of one (split, run): different runs differ, the same run is repeatable."""
    return int(seed) + 1000 * int(split) + int(run)


def task_rows(index: pd.DataFrame, split: pd.DataFrame, task: str) -> dict[str, pd.DataFrame]:
    """Rows of the pack index per set, with a ``target`` column; QC-failed scans left out."""
    classes = splits.task_classes(task)
    merged = index.merge(split[["participant_id", "session_id", "set"]], on=["participant_id", "session_id"])
    merged = merged[merged["qc_pass"].astype(str).str.lower().isin(["true", "1"])]
    if splits.is_regression(task):
        merged = merged.assign(target=pd.to_numeric(merged[splits.REGRESSION[task]], errors="coerce"))
        merged = merged[merged["target"].notna()]
    else:
        labels = splits.task_labels(merged, task)
        merged = merged.assign(target=labels.map({c: i for i, c in enumerate(classes)}))
        merged = merged[merged["target"].notna()].astype({"target": int})
    out = {s: merged[merged["set"] == s].reset_index(drop=True) for s in splits.SETS}
    for s, rows in out.items():
        if rows.empty:
            raise splits.SplitError(f"task {task}: no usable scan in the {s} set")
    return out


def to_device(arr: np.ndarray, rows: pd.DataFrame, device: torch.device, mosaic: bool = False) -> torch.Tensor:
    """The pack rows on ``device`` in the pack's precision (``training.pack_dtype``: float16 halves the
    memory, float32 keeps full precision): volumes (N, 1, X, Y, Z), mosaics (N, S, H, W)."""
    dtype = np.float32 if arr.dtype == np.float32 else np.float16
    data = torch.from_numpy(np.ascontiguousarray(arr[rows["index"].to_numpy()], dtype=dtype))
    return (data if mosaic else data.unsqueeze(1)).to(device)


def augment(x: torch.Tensor, flip_p: float, max_shift: int, gen: torch.Generator, shift_axis: str = "random") -> torch.Tensor:
    """Flip across the sagittal plane (array axis 0) and shift, per sample, along one random axis
    (``shift_axis`` random), along the left-right axis (``sagittal``, array axis 0: 004's "translation
    and flipping along the sagittal axis") or along one random axis of the axial plane (``axial``, array
    axes 0 and 1: 004 study 2's "randomly translated between -2 and 2 pixels within the axial plane")."""
    x = x.clone()
    n = x.shape[0]
    dev = gen.device
    if flip_p > 0:
        flip = (torch.rand(n, generator=gen, device=dev) < flip_p).to(x.device)
        if flip.any():
            x[flip] = x[flip].flip(2)
    if max_shift > 0:
        axes = torch.randint(0, 2 if shift_axis == "axial" else 3, (n,), generator=gen, device=dev).tolist()
        if shift_axis == "sagittal":
            axes = [0] * n
        shifts = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen, device=dev).tolist()
        for i, (a, s) in enumerate(zip(axes, shifts)):
            if s == 0:
                continue
            d = 1 + a  # sample dims: (C, X, Y, Z)
            xi = torch.roll(x[i], s, dims=d)
            sl = [slice(None)] * 4
            sl[d] = slice(0, s) if s > 0 else slice(s, None)
            xi[tuple(sl)] = 0
            x[i] = xi
    return x


def augment_2d(x: torch.Tensor, shift: float, zoom: float, gen: torch.Generator) -> torch.Tensor:
    """001's augmentation of (B, 1, H, W) mosaics: width/height shift up to ``shift`` (a fraction of the
    size) and zoom in by a factor in [1, 1 + ``zoom``], zero filled."""
    if shift <= 0 and zoom <= 0:
        return x
    n, dev = x.shape[0], gen.device
    u = torch.rand(n, 3, generator=gen, device=dev).to(x.device)
    scale = 1.0 / (1.0 + zoom * u[:, 0])
    t = (u[:, 1:] * 2 - 1) * shift * 2  # normalised coordinates span 2
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale, scale
    theta[:, :, 2] = t
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x.float(), grid, align_corners=False, padding_mode="zeros").to(x.dtype)


class WeightedBCE(nn.Module):
    """003's loss for sigmoid heads: binary cross-entropy on one-hot targets, samples weighted by class."""

    def __init__(self, n_classes: int, weight: torch.Tensor | None = None):
        super().__init__()
        self.n = n_classes
        self.register_buffer("weight", weight if weight is not None else torch.ones(n_classes))

    def forward(self, logits, y):
        onehot = nn.functional.one_hot(y, self.n).float()
        per = nn.functional.binary_cross_entropy_with_logits(logits, onehot, reduction="none").mean(1)
        w = self.weight[y]
        return (w * per).sum() / w.sum()


def probabilities(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Class probabilities of logits: softmax, or sigmoid outputs normalised to sum to one."""
    if output == "sigmoid":
        p = torch.sigmoid(logits)
        return p / p.sum(1, keepdim=True).clamp_min(1e-12)
    return torch.softmax(logits, 1)


def class_weights(targets: np.ndarray, n_classes: int) -> torch.Tensor:
    """n / (k n_c): balanced weights as scikit-learn's ``compute_class_weight('balanced')``."""
    counts = np.bincount(targets.astype(int), minlength=n_classes).astype(float)
    if (counts == 0).any():
        raise splits.SplitError(f"a class has no training scan (counts {counts.astype(int).tolist()})")
    return torch.tensor(len(targets) / (n_classes * counts), dtype=torch.float32)


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _optimizer(name, params, lr, wd):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


def _save_atomic(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, str(tmp))


class Runner:
    """Everything one run needs: data on the device, model, loss, generators."""

    def __init__(self, arr, rows, task, settings, device, seed, pretrained=None):
        self.task, self.s, self.device = task, settings, device
        self.regression = splits.is_regression(task)
        self.classes = splits.task_classes(task)
        self.rows = rows
        self.mosaic = settings.get("input", "volume") == "mosaic"
        self.x = {k: to_device(arr, v, device, self.mosaic) for k, v in rows.items()}
        y_train = rows["train"]["target"].to_numpy()
        if self.regression:
            self.mu, self.sd = float(y_train.mean()), float(y_train.std() or 1.0)
            self.y = {k: torch.tensor((v["target"].to_numpy() - self.mu) / self.sd, dtype=torch.float32,
                                      device=device) for k, v in rows.items()}
            self.loss_fn = nn.MSELoss()
        else:
            self.mu, self.sd = 0.0, 1.0
            self.y = {k: torch.tensor(v["target"].to_numpy(), dtype=torch.long, device=device)
                      for k, v in rows.items()}
            w = class_weights(y_train, len(self.classes)) if settings["class_weights"] else None
            if settings.get("head") == "sigmoid":
                self.loss_fn = WeightedBCE(len(self.classes), w).to(device)
            else:
                self.loss_fn = nn.CrossEntropyLoss(weight=None if w is None else w.to(device))
        torch.manual_seed(seed)
        n_out = 1 if self.regression else len(self.classes)
        self.arch = model_arch(settings)
        in_shape = arr.shape[2:] if self.mosaic else arr.shape[1:]
        self.model = models.build_model(settings["model"], in_shape, n_out, settings["dropout"], **self.arch)
        self.model = self.model.to(device)
        self.fresh, self.weights = [], None
        if pretrained:
            self.fresh = models.load_pretrained(self.model, pretrained)
        elif models.is_2d(settings["model"]) and str(settings.get("weights", "none")) != "none":
            self.weights = str(backbones.load_imagenet(self.model, settings["model"], settings["weights"]))
            self.fresh = [k for k in self.model.state_dict() if k.startswith("head.")]
        # freezing only makes sense for pretrained weights
        started = bool(pretrained or self.weights)
        self.trainable = models.freeze(self.model, settings["freeze"] if started else "none")
        self.opt = _optimizer(settings["optimizer"], [p for p in self.model.parameters() if p.requires_grad],
                              float(settings["learning_rate"]), float(settings["weight_decay"]))
        self._schedule(settings)
        self._seed_generators(seed)

    def _schedule(self, settings: dict) -> None:
        """The learning rate's start, its decay (``learning_rate_decay``) and the count of updates."""
        self.lr0, self.decay, self.updates = float(settings["learning_rate"]), float(
            settings.get("learning_rate_decay", 0.0)), 0

    def _decay_lr(self) -> None:
        """Keras' time-based decay (004 study 2: "0.0005 with a 0.002 decay"): the learning rate of
        update t is lr0 / (1 + decay * t)."""
        if self.decay:
            for g in self.opt.param_groups:
                g["lr"] = self.lr0 / (1.0 + self.decay * self.updates)

    def _seed_generators(self, seed: int) -> None:
        """Batch-order and augmentation generators (the latter on the device), bf16 autocast on CUDA."""
        gen_dev = "cuda" if self.device.type == "cuda" else "cpu"
        self.shuffle_gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator(device=gen_dev).manual_seed(seed + 1)
        self.amp = self.device.type == "cuda"

    def _forward(self, xb):
        xb = xb.float()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(xb)
        out = out.float()
        return out[:, 0] if self.regression else out

    def _train_mode(self):
        """Train mode, except BatchNorm layers that are frozen: they keep their (pretrained) statistics."""
        self.model.train()
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()

    def _batch(self, idx):
        xb = self.x["train"][idx]
        if self.mosaic:  # one of the scan's mosaics (001: the interleaved sets are augmentation)
            pick = torch.randint(0, xb.shape[1], (xb.shape[0],), generator=self.aug_gen,
                                 device=self.aug_gen.device).to(xb.device)
            xb = xb[torch.arange(xb.shape[0], device=xb.device), pick].unsqueeze(1)
            return augment_2d(xb, float(self.s.get("augment_shift_fraction", 0.0)),
                              float(self.s.get("augment_zoom", 0.0)), self.aug_gen)
        return augment(xb, float(self.s["augment_flip"]), int(self.s["augment_shift_voxels"]), self.aug_gen,
                       str(self.s.get("augment_shift_axis", "random")))

    def train_epoch(self) -> float:
        self._train_mode()
        n = self.x["train"].shape[0]
        order = torch.randperm(n, generator=self.shuffle_gen)
        bs = int(self.s["batch_size"])
        total = 0.0
        for start in range(0, n, bs):
            idx = order[start:start + bs].to(self.device)
            if len(idx) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
                continue  # BatchNorm cannot train on a batch of one
            xb = self._batch(idx)
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self._forward(xb), self.y["train"][idx])
            loss.backward()
            self._decay_lr()
            self.opt.step()
            self.updates += 1
            total += float(loss.detach()) * len(idx)
        return total / n

    @torch.no_grad()
    def predict(self, which: str) -> tuple[float, np.ndarray]:
        """Loss and outputs (class probabilities, or predictions in target units) of one set.

        Mosaic inputs with several mosaics per scan are an ensemble (001): each
        mosaic is predicted and the probabilities (or predictions) averaged;
        the loss is the mean over the mosaics.
        """
        self.model.eval()
        bs = int(self.s["batch_size"])
        x = self.x[which]
        views = [x[:, s:s + 1] for s in range(x.shape[1])] if self.mosaic else [x]
        losses, outs = [], []
        for v in views:
            out = torch.cat([self._forward(v[start:start + bs]) for start in range(0, v.shape[0], bs)])
            losses.append(float(self.loss_fn(out, self.y[which])))
            outs.append(out if self.regression else probabilities(out, self.model.output))
        loss, out = float(np.mean(losses)), torch.stack(outs).mean(0)
        if self.regression:
            return loss, out.cpu().numpy() * self.sd + self.mu
        return loss, out.cpu().numpy()

    def score(self, which: str) -> dict:
        loss, out = self.predict(which)
        truth = self.rows[which]["target"].to_numpy()
        if self.regression:
            return {f"{which}_loss": loss, f"{which}_mae": float(np.mean(np.abs(out - truth)))}
        return {f"{which}_loss": loss,
                f"{which}_balanced_accuracy": float(balanced_accuracy_score(truth, out.argmax(1)))}


class ArrayRunner(Runner):
    """A 2D backbone regressing several targets from in-memory images (002's quality scores from
    patches): sets ``x`` ``(n, H, W)`` and targets ``y`` ``(n, k)``, MSE on the raw targets, Adam, 002's
    flatten + FC head (``flatten``). Same interface as :class:`Runner`, for :func:`fit`."""

    def __init__(self, x: dict, y: dict, settings: dict, device, seed: int, n_outputs: int):
        self.s, self.device = settings, device
        self.regression, self.mosaic = True, False
        self.x = {k: torch.from_numpy(np.asarray(v, dtype=np.float32))[:, None].to(device) for k, v in x.items()}
        self.y = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)).to(device) for k, v in y.items()}
        self.loss_fn = nn.MSELoss()
        torch.manual_seed(seed)
        self.arch = {"head": "flatten", "rgb": bool(settings.get("rgb", True)),
                     "input_size": list(next(iter(x.values())).shape[1:])}
        self.model = backbones.build_2d(settings["model"], int(n_outputs), **self.arch).to(device)
        self.weights = None
        if str(settings.get("weights", "none")) != "none":
            self.weights = str(backbones.load_imagenet(self.model, settings["model"], settings["weights"]))
        self.trainable = models.freeze(self.model, settings["freeze"])
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad],
                                    lr=float(settings["learning_rate"]))
        self._schedule(settings)
        self._seed_generators(seed)

    def _forward(self, xb):
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(xb.float())
        return out.float()

    def _batch(self, idx):
        return self.x["train"][idx]

    @torch.no_grad()
    def predict(self, which: str) -> tuple[float, np.ndarray]:
        self.model.eval()
        bs = int(self.s["batch_size"])
        x = self.x[which]
        out = torch.cat([self._forward(x[i:i + bs]) for i in range(0, x.shape[0], bs)])
        return float(self.loss_fn(out, self.y[which])), out.cpu().numpy()

    def score(self, which: str) -> dict:
        loss, out = self.predict(which)
        return {f"{which}_loss": loss, f"{which}_mae": float(np.abs(out - self.y[which].cpu().numpy()).mean())}


def model_arch(settings: dict) -> dict:
    """Architecture settings beyond name and dropout (3D networks: input pooling when not 1, and the PIF
    layer's patch grid and filters; 2D backbones: head, head width, RGB input)."""
    if not models.is_2d(settings["model"]):
        pool = int(settings.get("input_pool", 1))
        arch = {"input_pool": pool} if pool != 1 else {}
        if settings["model"] in PIF_MODELS:
            arch.update(pif_grid=[int(g) for g in settings.get("pif_grid", (2, 3, 2))],
                        pif_filters=int(settings.get("pif_filters", 3)))
        return arch
    return {"head": settings.get("head", "fc256"), "head_width": int(settings.get("head_width", 256)),
            "rgb": bool(settings.get("rgb", True))}


def monitor_of(task: str, settings: dict) -> tuple[str, int]:
    """Monitored history column and its sign (+1 higher is better)."""
    mon = settings["monitor"]
    if splits.is_regression(task) and mon == "val_balanced_accuracy":
        mon = "val_loss"  # no accuracy for a regression
    col = {"val_balanced_accuracy": "validation_balanced_accuracy", "val_loss": "validation_loss"}[mon]
    return col, (1 if mon == "val_balanced_accuracy" else -1)


def fit(runner, settings: dict, col: str, sign: int, digest: str, state_dir, log, on_epoch_end=None,
        label: str = "", checkpoint_s: float = 60.0) -> tuple[list, float, int, dict]:
    """The epoch loop of a run: train, validate, keep the best epoch, checkpoint, stop early, resume.

    ``runner`` provides ``train_epoch()``, ``score('validation')``, ``model``,
    ``opt`` and the generators ``shuffle_gen``/``aug_gen``; ``col`` is the
    monitored history column and ``sign`` +1 when higher is better. The whole
    state is saved under ``state_dir`` after an epoch when ``checkpoint_s`` seconds have passed since
    the last save (0: every epoch), and after the last epoch; it is reloaded when its ``digest``
    matches (a DenseNet-121's state is about 110 MB: one a minute, not one an epoch).
    ``on_epoch_end(epoch)`` is called after every epoch, once its checkpoint (if any) is written. The best epoch's weights are loaded into the model on
    return. Returns ``(history, best value (signed), best epoch, best weights on the CPU)``.
    """
    state_dir = Path(state_dir)
    last = state_dir / "last.pt"
    dev = next(runner.model.parameters()).device
    history, best, best_epoch, bad, start_epoch = [], -math.inf, 0, 0, 1
    best_state = None
    if last.is_file():
        ck = torch.load(str(last), map_location=dev, weights_only=True)
        if ck.get("digest") == digest:
            runner.model.load_state_dict(ck["model"])
            runner.opt.load_state_dict(ck["optimizer"])
            # generator states are CPU byte tensors, whatever the device
            torch.set_rng_state(ck["torch_rng"].cpu())
            runner.shuffle_gen.set_state(ck["shuffle_gen"].cpu())
            runner.aug_gen.set_state(ck["aug_gen"].cpu())
            history, best, best_epoch, bad = ck["history"], ck["best"], ck["best_epoch"], ck["bad"]
            runner.updates = int(ck.get("updates", 0))
            best_state = ck["best_state"]
            start_epoch = ck["epoch"] + 1
            log(f"resuming {label} from epoch {ck['epoch']} ({last})")
        else:
            log(f"{last}: settings changed since this checkpoint; starting over")
    patience = int(settings["early_stopping_patience"])
    min_delta = float(settings.get("early_stopping_min_delta", 0.0))
    stopped = bad >= patience
    saved_at = time.monotonic()
    for epoch in range(start_epoch, int(settings["max_epochs"]) + 1):
        if stopped:
            break
        t0 = time.perf_counter()
        train_loss = runner.train_epoch()
        val = runner.score("validation")
        row = {"epoch": epoch, "train_loss": train_loss, **val, "seconds": time.perf_counter() - t0}
        history.append(row)
        value = sign * row[col]
        if value > best + min_delta:
            best, best_epoch, bad = value, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in runner.model.state_dict().items()}
        else:
            bad += 1
        stopped = bad >= patience
        log(f"epoch {epoch:3d}/{settings['max_epochs']}  train loss {train_loss:.4f}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in val.items())
            + f"  {row['seconds']:.1f}s" + ("  *best" if best_epoch == epoch else "")
            + ("  early stop" if stopped else ""))
        if stopped or epoch == int(settings["max_epochs"]) or time.monotonic() - saved_at >= float(checkpoint_s):
            state_dir.mkdir(parents=True, exist_ok=True)
            _save_atomic(dict(digest=digest, epoch=epoch, model=runner.model.state_dict(),
                              optimizer=runner.opt.state_dict(), torch_rng=torch.get_rng_state(),
                              shuffle_gen=runner.shuffle_gen.get_state(), aug_gen=runner.aug_gen.get_state(),
                              history=history, best=best, best_epoch=best_epoch, bad=bad, best_state=best_state,
                              updates=getattr(runner, "updates", 0)),
                         last)
            saved_at = time.monotonic()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if best_state is None:  # no epoch gave a finite monitored value: the run diverged (a NaN loss)
        seen = ", ".join(f"epoch {h['epoch']}: train loss {h['train_loss']:.4g}, {col} {h[col]:.4g}" for h in history[:3])
        raise TrainingError(f"{label or 'run'}: no epoch gave a finite {col} ({seen}); the run diverged: "
                            f"lower the learning rate ({settings['learning_rate']}) or check the input scans")
    runner.model.load_state_dict(best_state)
    return history, best, best_epoch, best_state


def train_run(pack_npy, index_tsv, split_tsv, task: str, settings: dict, split: int, run: int, out: dict,
              state_dir, pretrained=None, threads: int | None = None, on_epoch_end=None,
              log=None, checkpoint_s: float = 60.0, keep_state: bool = False) -> dict:
    """Train one run and write ``out``: model, history, predictions (validation + test) and summary JSON.

    ``pretrained``: checkpoint to start from (the fine-tuning source, or
    ``settings['pretrained']`` when None); ``settings['freeze']`` then applies.

    ``on_epoch_end(epoch)`` is called after each epoch (tests use it to
    interrupt a run); ``checkpoint_s``: see :func:`fit`. The checkpoint folder is removed once the
    outputs are written, unless ``keep_state`` (:func:`train_runs` removes it when its last run is done).
    Returns the summary.
    """
    log = log or progress
    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(settings.get("device", "auto"))
    pretrained = pretrained or settings.get("pretrained")
    arr, index = load_pack(pack_npy, index_tsv)
    split_table = splits.read_split(split_tsv)
    rows = task_rows(index, split_table, task)
    seed = run_seed(settings["seed"], split, run)
    digest = settings_digest({**settings, "task": task, "split": split, "run": run, "pretrained": str(pretrained),
                              "pack_rows": len(index), "split_file": Path(split_tsv).name})
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True)
    runner = Runner(arr, rows, task, settings, dev, seed, pretrained)
    total = sum(p.numel() for p in runner.model.parameters())
    log(f"{settings['model']} on {dev}: {runner.trainable:,} of {total:,} parameters trainable"
        + (f" (freeze {settings['freeze']})" if (pretrained or runner.weights) else ""))
    col, sign = monitor_of(task, settings)
    history, best, best_epoch, best_state = fit(runner, settings, col, sign, digest, state_dir, log, on_epoch_end,
                                                f"{task} split {split} run {run}", checkpoint_s)
    preds = []
    for which in ("validation", "test"):
        _, outp = runner.predict(which)
        r = runner.rows[which]
        table = r[["participant_id", "session_id", "diagnosis"]].assign(set=which)
        if runner.regression:
            table = table.assign(truth=r["target"].to_numpy(), prediction=outp)
        else:
            table = table.assign(truth=[runner.classes[i] for i in r["target"]],
                                 predicted=[runner.classes[i] for i in outp.argmax(1)],
                                 **{f"prob_{c}": outp[:, i] for i, c in enumerate(runner.classes)})
        preds.append(table)
    summary = dict(task=task, split=split, run=run, seed=seed, model=settings["model"], device=str(dev),
                   input=settings.get("input", "volume"), pretrained=str(pretrained) if pretrained else None,
                   weights=runner.weights, freeze=settings["freeze"] if (pretrained or runner.weights) else "none",
                   epochs=len(history), best_epoch=best_epoch, monitor=col, best_value=sign * best,
                   trainable_parameters=runner.trainable, fresh_parameters=runner.fresh,
                   n_train=len(rows["train"]), n_validation=len(rows["validation"]), n_test=len(rows["test"]),
                   classes=runner.classes, target_mean=runner.mu, target_sd=runner.sd,
                   seconds=round(sum(h["seconds"] for h in history), 2))
    _save_atomic({"model": best_state, "model_name": settings["model"], "arch": runner.arch,
                  "input": settings.get("input", "volume"),
                  "input_shape": list(arr.shape[2:] if runner.mosaic else arr.shape[1:]),
                  "n_outputs": 1 if runner.regression else len(runner.classes), "classes": runner.classes,
                  "dropout": settings["dropout"], "target_mean": runner.mu, "target_sd": runner.sd}, out["model"])
    write_tsv(out["history"], pd.DataFrame(history))
    write_tsv(out["predictions"], pd.concat(preds, ignore_index=True))
    write_json(out["summary"], summary)
    if not keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    return summary


RUN_OUTPUTS = ("model", "history", "predictions", "summary")  # braindl.derivatives.training_run


def train_runs(pack_npy, index_tsv, split_tsvs, task: str, settings: dict, runs, out: dict, state_dirs=None,
               pretrained=None, threads: int | None = None, log=None, checkpoint_s: float = 60.0,
               on_epoch_end=None) -> list[dict]:
    """:func:`train_run` for several runs of one unit, one after another in one process: the runs that
    ``resources.training_job_runs`` puts in one workflow job (:func:`braindl.planning.job_runs`), so
    torch and MONAI are imported once for them.

    ``runs``: ``[split, run]`` numbers, one pair per run; ``split_tsvs``, ``state_dirs`` (None: each run's
    beside its model, :func:`braindl.derivatives.run_state_dir`), ``pretrained`` (or None) and each of
    ``out``'s :data:`RUN_OUTPUTS` list one file per run, in the same order (a single path stands for a
    one-run list). The lists are checked against each other before the first run.
    Each run equals a call of :func:`train_run` on it alone: its seed, data and checkpoint are its own.
    A run's checkpoint is kept until the last run is done: a job stopped on a later run (and its outputs
    removed by Snakemake) resumes the finished runs from their last epoch instead of training them again.
    ``on_epoch_end(index, epoch)``: after each epoch of the ``index``-th run. Returns the summaries."""
    pairs = [tuple(int(x) for x in pair) for pair in runs]
    lists = job_file_lists({"split": split_tsvs, **{f"output {k}": out.get(k) for k in RUN_OUTPUTS},
                            **({} if state_dirs is None else {"state_dir": state_dirs}),
                            **({} if pretrained is None else {"pretrained": pretrained})},
                           "training runs of one job", runs=len(pairs))
    if state_dirs is None:
        lists["state_dir"] = [derivatives.run_state_dir(model) for model in lists["output model"]]
    summaries = []
    for i, (split, run) in enumerate(pairs):
        (log or progress)(f"{task} split {split} run {run} ({i + 1} of {len(pairs)} in this job)")
        hook = None if on_epoch_end is None else (lambda epoch, i=i: on_epoch_end(i, epoch))
        summaries.append(train_run(
            pack_npy, index_tsv, lists["split"][i], task, settings, split, run,
            {k: lists[f"output {k}"][i] for k in RUN_OUTPUTS}, lists["state_dir"][i],
            pretrained=lists["pretrained"][i] if pretrained is not None else None, threads=threads,
            on_epoch_end=hook, log=log, checkpoint_s=checkpoint_s, keep_state=True))
    for state_dir in lists["state_dir"]:
        shutil.rmtree(state_dir, ignore_errors=True)
    return summaries


def load_model(path) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from its checkpoint (``weights_only``)."""
    ck = torch.load(str(path), map_location="cpu", weights_only=True)
    model = models.build_model(ck["model_name"], ck["input_shape"], ck["n_outputs"], ck["dropout"],
                               **ck.get("arch", {}))
    model.load_state_dict(ck["model"])
    return model.eval(), ck
