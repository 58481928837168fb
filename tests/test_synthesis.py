import json

import numpy as np
import pytest
import torch

import insilico as lab
import stimuli
from stimuli.synthesis import DisplayConstraints, drive, l2, read_manifest, silence
from stimuli.synthesis.display_io import read_png


@pytest.fixture(scope="module")
def rig():
    return lab.Rig(lab.load_model("tiny"))


@pytest.fixture(scope="module")
def v4(rig):
    return rig.implant("V4", n_sites=16, at_deg=(1, 1), seed=0)


@pytest.fixture(scope="module")
def reference():
    return stimuli.natural(64, size_deg=4, seed=1)


@pytest.fixture(scope="module")
def live(rig, v4, reference):
    """The two sites that respond most to the natural images (tiny's ReLU units can be dead)."""
    rec = rig.record(reference.with_position((1, 1)), v4, progress=False)
    order = np.argsort(-rec.mean(("presentation", "time_bin")).values)
    return v4.sites[[int(v4.site_numbers[k]) for k in order[:2]]]


def _run(rig, targets, objective, reference, **kw):
    args = dict(
        n_per_target=2,
        size_deg=4,
        position_deg=(1, 1),
        steps=40,
        seed=0,
        reference=reference,
        progress=False,
    )
    args.update(kw)
    return rig.synthesize(targets, objective=objective, **args)


def test_drive_raises_and_silence_lowers(rig, live, reference):
    targets = live
    up = _run(rig, targets, "drive", reference)
    assert (up.trajectory[-1] > up.trajectory[0]).all()
    # measured on the displayed image, the best image drives each target above the median
    # natural crop of the reference (held to the same display budget), and above a blank
    natural = rig.record(reference.with_position((1, 1)), targets, progress=False)
    median_natural = natural.mean("time_bin").median("presentation").values
    blank = rig.record(
        stimuli.blank(size_deg=4, position_deg=(1, 1)), targets, progress=False
    ).values.ravel()
    assert (up.targets["synthesized"].to_numpy() > median_natural).all()
    assert (up.targets["synthesized"].to_numpy() > blank).all()
    down = _run(rig, targets, "silence", reference)
    assert (down.trajectory[-1] >= down.trajectory[0]).all()  # objective = -rate goes up
    assert (down.trajectory[-1] > down.trajectory[0]).any()
    assert (down.table["drive"] <= up.table["drive"].min()).all()


def test_one_hot_raises_softmax_share(rig, v4, live, reference):
    res = _run(rig, live, "one_hot", reference)
    per_target = res.trajectory.reshape(len(res.trajectory), 2, 2)  # steps, target, replicate
    assert (per_target[-1].max(1) > per_target[0].max(1)).all()
    assert res.trajectory[-1].mean() > res.trajectory[0].mean() + 0.5
    assert {"score", "response"} <= set(res.table.columns)
    assert res.attrs["population"][:3] == list(v4.neuroid_ids[:3])  # the whole array


def test_constraints_hold_exactly(rig, v4, reference):
    res = _run(rig, v4.sites[[2]], "drive", reference, rms_contrast=0.1, n_per_target=3)
    h = res.images.shape[-1]
    c = DisplayConstraints((h, h), 4.0, 0.5, 0.1, edge_deg=0.25)
    m = c.measure(res.images - 0.5)
    assert torch.allclose(m["mean_luminance"], torch.full_like(m["mean_luminance"], 0.5), atol=1e-5)
    assert (m["rms_contrast"] <= 0.1 + 1e-5).all()
    assert (m["min"] >= 0).all() and (m["max"] <= 1).all()
    assert (m["outside_aperture"] == 0).all()
    # every snapshot along the way met them too
    snaps = torch.from_numpy(res.snapshots.astype(np.float32)).flatten(0, 1)
    ms = c.measure(snaps)
    assert (ms["rms_contrast"] <= 0.1 + 2e-3).all() and (ms["outside_aperture"] == 0).all()


def test_same_seed_same_images(rig, v4, reference):
    a = _run(rig, v4.sites[[1]], "drive", reference, steps=10)
    b = _run(rig, v4.sites[[1]], "drive", reference, steps=10)
    c = _run(rig, v4.sites[[1]], "drive", reference, steps=10, seed=1)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_pixel_param_match_and_composed_objective(rig, v4, reference):
    ids = list(v4.neuroid_ids)
    goal = np.full(len(ids), 20.0)
    res = _run(
        rig, v4.sites[[0]], "match", reference, param="pixel", goal=goal, steps=30, n_per_target=1
    )
    assert res.trajectory[-1, 0] > res.trajectory[0, 0]
    composed = drive() - 0.1 * silence() + 0.01 * l2()
    assert "drive targets" in composed.description and "L2" in composed.description
    res2 = _run(rig, v4.sites[[0]], composed, reference, steps=10, n_per_target=1)
    assert res2.attrs["objective"] == composed.description


def test_population_targets_and_chunking(rig, v4, reference):
    pops = {"left": list(v4.neuroid_ids[:4]), "right": list(v4.neuroid_ids[4:8])}
    res = _run(rig, pops, "drive", reference, steps=8, batch_size=2, n_per_target=2)
    assert list(res.targets["target"]) == ["left", "right"]
    assert len(res) == 4 and res.trajectory.shape == (8, 4)


def test_save_open_and_export(rig, v4, reference, tmp_path):
    res = _run(rig, v4.sites[[3, 11]], "drive", reference, steps=10)
    path = res.save(tmp_path / "drive.zarr")
    back = stimuli.synthesis.open_result(path)
    assert torch.equal(back.images, res.images)
    assert back.table.equals(res.table) and back.targets.equals(res.targets)
    assert np.array_equal(back.trajectory, res.trajectory)
    assert back.attrs["model"] == "tiny" and back.attrs["steps"] == 10
    with pytest.raises(FileExistsError, match="overwrite"):
        res.save(path)
    display = lab.Display(distance_cm=57, width_cm=53, resolution=(1920, 1080))
    for bits in (8, 10, 16):
        out = tmp_path / f"session{bits}"
        manifest = res.export(out, display=display, gamma_correct=True, bit_depth=bits)
        assert read_manifest(out).equals(manifest)
        meta = json.loads((out / "manifest.json").read_text())
        assert len(meta["stimuli"]) == len(res)
        png = read_png(out / manifest["file"].iloc[0])
        expected = 4.0 * display.ppd(1.0)
        assert abs(png.shape[1] - expected) <= 1 and png.shape[0] == png.shape[1]
        assert png.dtype == (np.uint8 if bits == 8 else np.uint16)
        assert int(png.max()) <= 2**bits - 1 and meta["stimuli"][0]["bit_depth"] == bits
        assert np.array_equal(png, res.display_values(display, True, bits)[0])  # exact codes back
        corner = png[0, 0] / (2**bits - 1)
        assert np.allclose(corner, 0.5 ** (1 / display.gamma), atol=1.5 / 255)  # background
    # files are named by image number and requested site; the manifest names the site
    assert list(manifest["file"])[:3] == [
        "000_site03_drive_r0.png",
        "001_site03_drive_r1.png",
        "002_site11_drive_r0.png",
    ]
    assert list(manifest["site"]) == [3, 3, 11, 11]
    assert isinstance(meta["display"], dict) and meta["display"]["distance_cm"] == 57
    assert meta["predictions_measured_on_display"] is None or isinstance(
        meta["predictions_measured_on_display"], dict
    )
    with pytest.raises(ValueError, match=r"bit_depth must be 8, 10, 12 or 16, got 8\.7"):
        res.export(tmp_path / "bad", display=display, bit_depth=8.7)
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    with pytest.raises(ValueError, match=r"bit_depth must be 8, 10, 12 or 16, got 8\.7"):
        lab.Display(bit_depth=8.7)
    # overwrite replaces only a store this library wrote, never a user's folder
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("data")
    with pytest.raises(FileExistsError, match="not a store written by insilico-lab"):
        res.save(mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "data"
    res.save(path, overwrite=True)  # its own store: replaced


def test_ten_bit_display_end_to_end(v4, reference, tmp_path):
    """Display(bit_depth=10) used to fail in display_io ('got None'); now synthesis measures
    on 10-bit codes (1024 levels) and exports them in a 16-bit PNG with an sBIT chunk."""
    display = lab.Display(bit_depth=10)
    rig10 = lab.Rig(lab.load_model("tiny"), display=display)
    res = _run(rig10, v4.sites[[3]], "drive", reference, steps=4)
    codes = res.display_values(display)
    assert codes.dtype == np.uint16 and codes.max() <= 1023
    # finer than 8 bits: some codes are not multiples of 4 (an 8-bit image upscaled would be)
    assert (codes % 4 != 0).any()
    shown = res.displayed_luminance(display)
    assert np.allclose(shown, (codes / 1023.0) ** display.gamma, atol=1e-6)
    manifest = res.export(tmp_path / "ten", display=display)
    assert (manifest["bit_depth"] == 10).all()
    raw = (tmp_path / "ten" / manifest["file"].iloc[0]).read_bytes()
    assert b"sBIT" in raw
    assert np.array_equal(read_png(tmp_path / "ten" / manifest["file"].iloc[0]), codes[0])


def test_bad_input(rig, v4, reference):
    with pytest.raises(ValueError, match="not a unit of V4"):
        rig.synthesize(["V4.999.0.0"], steps=2, progress=False)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        rig.synthesize(v4, steps=0)
    with pytest.raises(ValueError, match="larger than the model's field of view"):
        rig.synthesize(v4, size_deg=12, steps=2)
    with pytest.raises(ValueError, match=r"rms_contrast must be in \(0, 1\]"):
        rig.synthesize(v4, rms_contrast=1.5, steps=2)
    with pytest.raises(ValueError, match="unknown objective 'excite'"):
        rig.synthesize(v4, objective="excite", steps=2)
    with pytest.raises(ValueError, match="needs goal"):
        rig.synthesize(v4, objective="match", steps=2, reference=reference, progress=False)


def _permuted_v4(rig, tmp_path):
    """tiny with V4's channels permuted (IT's input permuted to match): another network
    whose V4 unit ``V4.j.r.c`` is the original's ``V4.perm[j].r.c``."""
    state = {k: v.clone() for k, v in rig.model.network.state_dict().items()}
    perm = torch.randperm(state["v4.0.weight"].shape[0], generator=torch.Generator().manual_seed(3))
    state["v4.0.weight"], state["v4.0.bias"] = state["v4.0.weight"][perm], state["v4.0.bias"][perm]
    state["it.0.weight"] = state["it.0.weight"][:, perm]
    torch.save(state, tmp_path / "tiny_permuted.pt")
    return lab.Rig(lab.load_model("tiny", weights=tmp_path / "tiny_permuted.pt")), perm


def test_transfer_to_another_network_matches_by_rf_and_response(rig, v4, reference, tmp_path):
    """A neuroid id names an unrelated unit on another network: transfer matches each unit by
    RF position and calibration responses. On tiny with V4's channels permuted the match
    must find the permuted channel (matching by id would pick the wrong one)."""
    other, perm = _permuted_v4(rig, tmp_path)
    assert other.model.weights_id != rig.model.weights_id
    inverse = torch.argsort(perm).numpy()
    res = _run(rig, v4.sites[[3]], "drive", reference, steps=2, transfer=[other])
    assert res.attrs["transfer_modes"] == {"tiny": "rf_matched"}
    match = res.attrs["transfer_match"]["tiny"]
    assert [m["target"] for m in match] == list(res.attrs["population"])
    for m in match:
        region, ch, r, c = m["target"].split(".")
        assert m["matched"] == f"{region}.{inverse[int(ch)]}.{r}.{c}", m
        assert m["r"] > 0.99 and m["rf_offset_deg"] <= 1.0 and m["n_candidates"] > 1
    assert int(perm[0]) != 0  # the permutation moves channels: by id would be wrong
    for col in ("ratio", "beats_natural", "ratio_unconstrained"):
        assert f"transfer_tiny_{col}" in res.targets
    # the matched units answer as the targets do: transferred responses equal the source's
    assert np.allclose(res.targets["transfer_tiny_synthesized"], res.targets["synthesized"], 1e-3)
    with pytest.raises(ValueError, match="has its RF within 1e-06 deg of"):
        _run(
            rig,
            v4.sites[[3]],
            "drive",
            reference,
            steps=2,
            transfer=[other],
            transfer_tolerance_deg=1e-6,
        )
    # the same network (same weights) still transfers by id, and says so
    same = lab.Rig(lab.load_model("tiny"))
    res = _run(rig, v4.sites[[3]], "drive", reference, steps=2, transfer=[same])
    assert res.attrs["transfer_modes"] == {"tiny": "by_id_same_network"}
    assert "transfer_tiny_ratio" in res.targets


def test_equated_natural_crops_meet_the_synthesis_budget():
    """Measured on the rendered images: aperture (background outside), mean luminance =
    background per channel, RMS contrast = the budget (below only where the gamut binds),
    display quantisation (10-bit codes, gamma 2.2)."""
    display = stimuli.Display(bit_depth=10)
    eq = stimuli.natural_equated(16, size_deg=4, seed=1, rms_contrast=0.2, display=display)
    lum, alpha = eq.images()
    assert alpha is None and len(eq) == 16 and eq.kind == "natural_equated"
    h = lum.shape[-1]
    c = DisplayConstraints((h, h), 4.0, 0.5, 0.2, edge_deg=0.25)
    m = c.measure(lum - 0.5)
    assert torch.allclose(m["mean_luminance"], torch.full_like(m["mean_luminance"], 0.5), atol=2e-3)
    assert (m["outside_aperture"] < 2e-3).all()
    gamut_bound = (m["max"] > 0.995) | (m["min"] < 0.005)
    assert ((m["rms_contrast"] - 0.2).abs() < 2e-3)[~gamut_bound].all()
    assert (m["rms_contrast"] < 0.2 + 2e-3).all() and (~gamut_bound).sum() >= 4
    codes = lum.pow(1 / display.gamma) * 1023
    assert torch.allclose(codes, codes.round(), atol=2e-3)  # on the 10-bit code grid
    # the plain crops are not held to it: full gamut, no aperture, their own mean
    plain = stimuli.natural(16, size_deg=4, seed=1).images()[0]
    assert (plain.mean(dim=(1, 2, 3)) - 0.5).abs().max() > 0.05
    keep = stimuli.natural_equated(16, size_deg=4, seed=1, rms_contrast=0.2, low_contrast="keep")
    assert (c.measure(keep.images()[0] - 0.5)["rms_contrast"] <= m["rms_contrast"] + 2e-3).all()
    with pytest.raises(ValueError, match="low_contrast must be one of"):
        stimuli.natural_equated(4, size_deg=4, low_contrast="up")
    with pytest.raises(ValueError, match="rms_contrast must be in"):
        stimuli.natural_equated(4, size_deg=4, rms_contrast=0)


def test_synthesis_reports_equated_and_unconstrained_comparisons(rig, live, reference):
    """The equated comparison is the default; the unconstrained one is reported beside it.
    The equated crops drive less (same budget, no full gamut), so the same image's ratio
    against them is at least its ratio against the plain crops."""
    res = _run(rig, live, "drive", reference, n_per_target=1)
    t = res.targets
    assert res.attrs["reference_equated"] and res.attrs["reference"]["equated_fingerprint"]
    assert (t["best_natural"] < t["best_natural_unconstrained"]).all()
    assert (t["ratio"] >= t["ratio_unconstrained"]).all()
    assert (t["beats_natural"] == (t["synthesized"] > t["best_natural"])).all()
    assert "against equated natural crops; unconstrained crops:" in res.print_summary()
    plain = _run(rig, live, "drive", reference, n_per_target=1, equate_reference=False)
    assert np.allclose(plain.targets["best_natural"], t["best_natural_unconstrained"], rtol=1e-4)


@pytest.mark.parametrize(
    "name, px, grid",
    [("efficientnet_lite1", 240, (60, 30, 15, 8)), ("efficientnet_lite2", 260, (65, 33, 17, 9))],
)
def test_held_out_lite_networks_label_a_cat(name, px, grid):
    """Lite1/Lite2 (separately trained wheels, exact key match) call chelsea a cat (281-285)
    like Lite0, and their regions sit at the same output strides 4/8/16/32."""
    import skimage.data
    import torch.nn.functional as F

    assert name in set(lab.models()["name"])
    model = lab.load_model(name)
    assert model.input_size == px and model.weights_id.startswith("sha256:")
    img = torch.tensor(skimage.data.chelsea() / 255.0, dtype=torch.float32).permute(2, 0, 1)[None]
    x = (F.interpolate(img, size=(px, px), mode="bilinear", antialias=True) - 0.5) / 0.5
    seen = {}
    hooks = [
        model.network.get_submodule(r.layer).register_forward_hook(
            lambda m, i, o, k=k: seen.__setitem__(k, o.shape[-1])
        )
        for k, r in model.commitment.regions.items()
    ]
    with torch.no_grad():
        label = int(model.network(x).argmax())
    for h in hooks:
        h.remove()
    assert 281 <= label <= 285
    assert tuple(seen[k] for k in ("V1", "V2", "V4", "IT")) == grid


def test_synthesis_progress_raises_no_torch_warning(tiny_rig):
    """Every synthesis used to print torch's 'requires_grad=True to a scalar' warning."""
    import warnings

    arr = tiny_rig.implant("V4", n_sites=2, at_deg=(0, 0), seed=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*requires_grad=True to a scalar.*")
        tiny_rig.synthesize(arr.sites[[0]], steps=2, size_deg=4, progress=True)


def test_fourier_colour_mixing_is_the_colour_matrix():
    """The Fourier image's colours are the decorrelated spectrum mixed by the normalised
    colour matrix C: pixel (r, g, b) = C @ (x0, x1, x2), computed per pixel by hand."""
    from stimuli.synthesis.params import _COLOR_NORM, COLOR_CORRELATION_SVD_SQRT, FourierParam

    p = FourierParam(2, (12, 10), torch.Generator().manual_seed(0))
    # the image: 1/f-scaled spectrum, orthonormal inverse FFT times sqrt(h w) / 4, from scratch
    freq = torch.sqrt(torch.fft.rfftfreq(10)[None, :] ** 2 + torch.fft.fftfreq(12)[:, None] ** 2)
    spec = torch.view_as_complex(p.spectrum) / freq.clamp(min=1 / 12) / (12 * 10) ** 0.5
    x = torch.fft.irfft2(spec, s=p.shape, norm="ortho") * (12 * 10) ** 0.5 / 4.0
    c = COLOR_CORRELATION_SVD_SQRT / _COLOR_NORM
    want = torch.einsum("ck,nkhw->nchw", c, x)
    torch.testing.assert_close(p(), want, rtol=1e-5, atol=1e-6)
