"""Make docs/viewer.png: a real synthesis on the offline model, shown in napari.

Synthesizes images that drive three V4 sites of EfficientNet-Lite0 (64 steps, about a
minute on 2 CPU cores), saves the store to ``runs/viewer_drive.zarr``, opens it with
``insilico.viewer.view`` and saves a screenshot of the whole window (canvas, sliders,
Responses dock). napari needs a display; on a machine without one:

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "viewer.png"))
    parser.add_argument("--store", default=str(ROOT / "runs" / "viewer_drive.zarr"))
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    os.environ.setdefault("INSILICO_OFFLINE", "1")

    import insilico as lab
    from insilico.viewer import prepare_torch, view

    prepare_torch()  # before napari's OpenGL (see insilico.viewer._compat)
    t0 = time.perf_counter()
    model = lab.load_model(args.model)
    rig = lab.Rig(model)
    v4 = rig.implant("V4", n_sites=32, at_deg=(1.5, -1.0), seed=0)
    res = rig.synthesize(
        v4.sites[[3, 11, 22]],
        objective="drive",
        n_per_target=2,
        size_deg=4,
        position_deg=(1.5, -1.0),
        steps=args.steps,
        seed=0,
        reference=lab.stimuli.natural(64, size_deg=4, seed=1),
        progress=False,
    )
    store = res.save(args.store, overwrite=True)
    print(res.print_summary())
    print(f"synthesis {time.perf_counter() - t0:.1f} s -> {store}")

    from qtpy.QtWidgets import QApplication

    viewer = view(store, show=True)
    viewer.window.resize(1500, 900)
    viewer.dims.set_current_step(0, 2)  # third image (second target, first replicate)
    for _ in range(20):  # let Qt lay the window out and draw
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.reset_view()
    QApplication.processEvents()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(args.out, canvas_only=False, flash=False)
    print(f"saved {args.out}")
    viewer.close()


if __name__ == "__main__":
    main()
