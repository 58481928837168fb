"""The same extraction job through insilico-lab and through Brain-Score, ratio of speeds.

Job: EfficientNet-Lite0 (same weights), layer ``_blocks.3`` (all 40x28x28 units), N PNG
images of 224x224 px shown filling the model's 8 degrees, batch size and threads equal.
insilico-lab runs in this process (``rig.record`` on ``stimuli.from_folder``; the layer is
committed as region V1 through a commitment file); Brain-Score runs ``peer_brainscore.py``
in its own virtual environment (see that file for its set-up).

    python tests/benchmarks/bench_peer_brainscore.py --images DIR [--peer-python PATH]

With no ``--images`` it writes 256 crops of the skimage sample images to a temporary folder.
insilico-lab tunes glibc's allocator in its own process (insilico/brain/allocator.py); the
peer is run twice, as installed and with the same allocator settings given through
``MALLOC_*`` environment variables, so the report separates that effect from the rest.
Prints JSON (target: ratio >= 2.5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import insilico as lab

sys.path.insert(0, str(Path(__file__).parent))
from _common import ALLOCATOR_ENV, write_result

HERE = Path(__file__).parent


def write_pngs(folder: Path, n: int) -> None:
    from PIL import Image

    stim = lab.stimuli.natural(n, size_deg=8, seed=0, ppd=28)
    values, _ = stim.images()
    pixels = (values.clamp(0, 1) ** (1 / 2.2) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    for k, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"img_{k:04d}.png")


def ours(images: Path, layer: str, batch_size: int, threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    from importlib import resources

    source = (
        resources.files("insilico.brain") / "commitments" / "efficientnet_lite0.toml"
    ).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "efficientnet_lite0_bench.toml"
        path.write_text(source.replace('layer = "_blocks.2"', f'layer = "{layer}"'))
        model = lab.load_model(str(path))
    rig = lab.Rig(model)
    stim = lab.stimuli.from_folder(images, size_deg=model.visual_degrees)
    model.region_units("V1")  # unit table measured/cached outside the timing
    rig.record(stim[:8], "V1", batch_size=batch_size, progress=False)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rec = rig.record(stim, "V1", batch_size=batch_size, progress=False)
        times.append(time.perf_counter() - t0)
    return {
        "seconds": min(times),
        "images_per_s": len(stim) / min(times),
        "shape": [rec.sizes["presentation"], rec.sizes["neuroid"]],
        "seconds_all": times,
    }


def peer(
    python: str,
    images: Path,
    layer: str,
    batch_size: int,
    threads: int,
    repeats: int,
    env: dict | None = None,
) -> dict:
    cmd = [
        python,
        str(HERE / "peer_brainscore.py"),
        "--images",
        str(images),
        "--layer",
        layer,
        "--batch-size",
        str(batch_size),
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=None)
    p.add_argument("--n", type=int, default=256, help="images to write when --images is absent")
    p.add_argument("--layer", default="_blocks.3")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peer-python", default="/work/peers/brainscore/bin/python")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        images = args.images
        if images is None:
            images = Path(tmp)
            write_pngs(images, args.n)
        a = ours(images, args.layer, args.batch_size, args.threads, args.repeats)
        b = peer(args.peer_python, images, args.layer, args.batch_size, args.threads, args.repeats)
        c = peer(
            args.peer_python,
            images,
            args.layer,
            args.batch_size,
            args.threads,
            args.repeats,
            env=ALLOCATOR_ENV,
        )
    result = {
        "job": {
            "layer": args.layer,
            "n_images": a["shape"][0],
            "units": a["shape"][1],
            "batch_size": args.batch_size,
            "threads": args.threads,
        },
        "insilico_img_per_s": round(a["images_per_s"], 1),
        "brainscore_img_per_s": b["images_per_s"],
        "brainscore_tuned_allocator_img_per_s": c["images_per_s"],
        "ratio": round(a["images_per_s"] / b["images_per_s"], 2),
        "ratio_vs_tuned_allocator_peer": round(a["images_per_s"] / c["images_per_s"], 2),
        "brainscore_version": b.get("version"),
    }
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
