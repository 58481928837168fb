import numpy as np
import pytest
import torch
from PIL import Image

import stimuli


def test_gratings_factorial_table_and_ids():
    g = stimuli.gratings(
        size_deg=3, position_deg=(1.5, -1.0), orientation_deg=range(0, 180, 15), sf_cpd=[1, 2, 4]
    )
    assert len(g) == 36
    table = g.parameters
    for col in (
        "stimulus_id",
        "size_deg",
        "position_x_deg",
        "position_y_deg",
        "orientation_deg",
        "sf_cpd",
        "phase_deg",
        "contrast",
        "waveform",
        "aperture",
        "edge_deg",
    ):
        assert col in table.columns
    assert table["stimulus_id"].is_unique
    assert set(table["orientation_deg"]) == set(range(0, 180, 15))
    # content-addressed: the same grating gets the same id in another set
    g2 = stimuli.gratings(size_deg=3, position_deg=(1.5, -1.0), orientation_deg=30, sf_cpd=2)
    assert g2.ids[0] in set(g.ids)


def test_grating_orientation_and_frequency():
    # orientation 0: luminance varies along x only (vertical bars), 2 cycles/deg
    g = stimuli.gratings(size_deg=4, orientation_deg=[0, 90], sf_cpd=2, aperture="none", ppd=32)
    rgb, alpha = g.images()
    assert alpha is None
    vertical, horizontal = rgb[0, 0], rgb[1, 0]
    assert torch.allclose(vertical, vertical[0:1].expand_as(vertical), atol=1e-5)  # columns
    assert torch.allclose(horizontal, horizontal[:, 0:1].expand_as(horizontal), atol=1e-5)
    assert vertical[0].std() > 0.3 and horizontal[:, 0].std() > 0.3
    spectrum = torch.fft.rfft(vertical[0] - vertical[0].mean()).abs()
    cycles = int(spectrum.argmax())  # cycles across the 4 deg image
    assert cycles == 8


def test_grating_aperture_and_contrast():
    g = stimuli.gratings(size_deg=2, contrast=0.5, mean=0.5, edge_deg=0.2, ppd=40)
    rgb, alpha = g.images()
    assert alpha.shape == (1, 1, 80, 80)
    assert alpha[0, 0, 40, 40] == 1 and alpha[0, 0, 0, 0] == 0
    assert 0.25 - 1e-6 <= rgb.min() and rgb.max() <= 0.75 + 1e-6


def test_gabor_envelope():
    g = stimuli.gabors(sigma_deg=0.5, sf_cpd=2, contrast=1)
    rgb, _ = g.images()
    img = rgb[0, 0]
    assert (img[0] - 0.5).abs().max() < 0.02  # envelope ~0 at the border (3 sigma)
    assert (img - 0.5).abs().max() > 0.4


def test_noise_is_seeded_per_stimulus_and_has_rms_contrast():
    w = stimuli.white_noise(6, size_deg=2, seed=3, contrast=0.2)
    a, _ = w.images()
    b, _ = w[[2, 3]].images()  # a subset renders identically
    assert torch.equal(a[2:4], b)
    assert not torch.equal(a[0], a[1])
    rms = (a[:, 0].std(dim=(-2, -1)) / a[:, 0].mean(dim=(-2, -1))).mean()
    assert rms == pytest.approx(0.2, rel=0.1)
    p = stimuli.pink_noise(4, size_deg=2, seed=0, contrast=0.2)
    img = p.images()[0][:, 0]
    spec = torch.fft.rfft2(img - img.mean()).abs().mean(0)
    assert spec[1, 1] > 4 * spec[16, 16]  # 1/f: low frequencies dominate


def test_natural_crops_are_reproducible():
    n1 = stimuli.natural(20, size_deg=4, seed=1)
    n2 = stimuli.natural(20, size_deg=4, seed=1)
    assert list(n1.ids) == list(n2.ids)
    a, _ = n1.images(slice(0, 5))
    b, _ = n2.images(slice(0, 5))
    assert torch.equal(a, b)
    assert a.std() > 0.05
    assert not np.array_equal(stimuli.natural(20, 4, seed=2).ids, n1.ids)


def test_blank():
    b = stimuli.blank(size_deg=2, luminance=[0.2, 0.8])
    rgb, _ = b.images()
    assert torch.allclose(rgb[0], torch.full_like(rgb[0], 0.2))


def test_from_arrays_linearises_and_validates():
    imgs = np.full((3, 10, 12, 3), 128, dtype=np.uint8)
    s = stimuli.from_arrays(imgs, size_deg=2)
    rgb, _ = s.images()
    assert rgb.shape == (3, 3, 10, 12)
    assert rgb[0, 0, 0, 0].item() == pytest.approx((128 / 255) ** 2.2, rel=1e-5)
    assert s.ppd[0] == pytest.approx(6.0)
    with pytest.raises(ValueError, match="shape"):
        stimuli.from_arrays(np.zeros((3, 10, 12, 2), np.uint8), size_deg=2)
    with pytest.raises(ValueError, match="dtype"):
        stimuli.from_arrays(np.zeros((3, 10, 12, 3), np.int32), size_deg=2)
    bad = np.zeros((2, 4, 4, 3), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        stimuli.from_arrays(bad, size_deg=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stimuli.from_arrays(np.full((1, 4, 4, 3), 2.0, np.float32), size_deg=2)


def test_from_folder(tmp_path):
    for k in range(3):
        Image.fromarray(np.full((16, 20, 3), 40 * k, np.uint8)).save(tmp_path / f"im{k}.png")
    s = stimuli.from_folder(tmp_path, size_deg=3)
    assert list(s.ids) == ["im0.png", "im1.png", "im2.png"]
    assert s.shape_px == (16, 20)
    rgb, _ = s[[1]].images()
    assert rgb[0, 0, 0, 0].item() == pytest.approx((40 / 255) ** 2.2, rel=1e-5)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match="size_px"):
        stimuli.from_folder(tmp_path, size_deg=3)
    assert stimuli.from_folder(tmp_path, size_deg=3, size_px=(16, 16)).shape_px == (16, 16)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        stimuli.from_folder(tmp_path / "nope", size_deg=3)


@pytest.mark.parametrize("size", [0, -1, float("nan"), "big"])
def test_bad_sizes(size):
    with pytest.raises(ValueError, match="size_deg"):
        stimuli.gratings(size_deg=size)
    with pytest.raises(ValueError, match="size_deg"):
        stimuli.natural(3, size_deg=size)


def test_bad_parameters():
    with pytest.raises(ValueError, match="contrast"):
        stimuli.gratings(size_deg=2, contrast=1.5)
    with pytest.raises(ValueError, match="Nyquist"):
        stimuli.gratings(size_deg=2, sf_cpd=40, ppd=32)
    with pytest.raises(ValueError, match="position_deg"):
        stimuli.gratings(size_deg=2, position_deg=(1, float("inf")))
    with pytest.raises(ValueError, match="n must be"):
        stimuli.natural(0, size_deg=2)


def test_natural_sources_concat_and_blend():
    cats = stimuli.natural(6, size_deg=4, seed=1, sources=["chelsea"])
    others = stimuli.natural(6, size_deg=4, seed=2, exclude=["chelsea"])
    assert set(cats.meta["source"]) == {"chelsea"} and "chelsea" not in set(others.meta["source"])
    # the default pool is unchanged by the new arguments
    assert list(stimuli.natural(8, 4, seed=5).ids) == list(
        stimuli.natural(8, 4, seed=5, sources=None, exclude=[]).ids
    )
    both = stimuli.concat({"cat": cats, "other": others})
    assert list(both.meta["set"]) == ["cat"] * 6 + ["other"] * 6
    x, _ = both[[1, 8]].images()
    assert torch.allclose(x[0], cats[1].images()[0][0]) and torch.allclose(
        x[1], others[2].images()[0][0]
    )
    mix = stimuli.blend(cats, others, weight=0.3)
    xm, _ = mix.images()
    expect = 0.3 * cats.images()[0] + 0.7 * others.images()[0]
    assert torch.allclose(xm, expect, atol=1e-6)
    assert set(mix.meta["a_source"]) == {"chelsea"}
    # gratings carry an aperture alpha; concatenated with photographs, those get alpha 1
    grat = stimuli.gratings(size_deg=4, orientation_deg=[0, 90])
    _, alpha = stimuli.concat([grat, cats[:2]]).images()
    assert alpha is not None and float(alpha[2:].min()) == 1.0 and float(alpha[:2].min()) < 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: stimuli.natural(3, 4, sources=["dog"]), "unknown natural image 'dog'"),
        (lambda: stimuli.natural(3, 4, sources="chelsea"), "must be a list"),
        (lambda: stimuli.natural(3, 4, sources=["moon"], exclude=["moon"]), "leave no"),
        (
            lambda: stimuli.blend(stimuli.natural(3, 4), stimuli.natural(2, 4)),
            "equal length, got 3 and 2",
        ),
        (
            lambda: stimuli.blend(stimuli.natural(2, 4), stimuli.natural(2, 2)),
            "one pixel shape",
        ),
        (
            lambda: stimuli.blend(stimuli.natural(2, 4), stimuli.natural(2, 4), 2),
            r"weight must be a number in \[0, 1\], got 2",
        ),
        (lambda: stimuli.concat([]), "non-empty"),
    ],
)
def test_natural_concat_blend_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_natural_halves_share_no_source_pixel():
    """Train/test sets from opposite halves of each photograph cannot overlap."""
    from stimuli.photographs import _sample_image

    left = stimuli.natural(40, 2.0, seed=1, half="left")
    right = stimuli.natural(40, 2.0, seed=2, half="right")
    for name, t in left.meta.groupby("source"):
        w = _sample_image(name).shape[-1]
        assert (t["left"] + t["crop_px"] <= w // 2).all()
    for name, t in right.meta.groupby("source"):
        w = _sample_image(name).shape[-1]
        assert (t["left"] >= w // 2).all()
    full = stimuli.natural(40, 2.0, seed=1)
    widths = np.array([_sample_image(n).shape[-1] for n in full.meta["source"]])
    assert (full.meta["left"] + full.meta["crop_px"] > widths // 2).any()
    with pytest.raises(ValueError, match="half must be"):
        stimuli.natural(4, 2.0, half="top")


def test_image_and_photo_inputs_are_not_misread():
    """One (32, 32, 3) image used to become 32 grey images; sources=[] meant every photo."""
    one = stimuli.from_arrays(np.random.default_rng(0).random((32, 32, 3)), size_deg=2)
    assert len(one) == 1 and one.shape_px == (32, 32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        stimuli.from_arrays(np.full((2, 8, 8), np.inf), size_deg=2)
    with pytest.raises(ValueError, match=r"sources=\[\] names no photograph"):
        stimuli.natural(2, 2.0, sources=[])


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: stimuli.gratings(size_deg=2, orientation_deg=float("nan")), "orientation_deg"),
        (lambda: stimuli.gratings(size_deg=2, phase_deg=[0, float("inf")]), "phase_deg"),
        (lambda: stimuli.gratings(size_deg=2, edge_deg=float("nan")), "edge_deg"),
        (lambda: stimuli.pink_noise(2, size_deg=2, exponent=float("nan")), "exponent"),
    ],
)
def test_non_finite_parameters_are_one_line(make, name):
    """NaN/inf parameters used to give NaN images and NaN results with no error."""
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        make()


def test_contact_sheet_shows_the_stimuli(tmp_path):
    import matplotlib.pyplot as plt

    g = stimuli.gratings(size_deg=2, orientation_deg=[0, 45, 90], contrast=[0.2, 0.8])
    fig = g.show(n=4, path=tmp_path / "sheet.png", label="orientation_deg")
    assert (tmp_path / "sheet.png").stat().st_size > 5_000
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4 and shown[1].get_title().startswith("0")
    # the images are the stimuli, gamma-encoded on the grey background: the high-contrast
    # grating spans a wider range than the low-contrast one
    lo, hi = (np.ptp(ax.images[0].get_array()) for ax in shown[:2])
    assert hi > 2 * lo
    plt.close(fig)
    with pytest.raises(ValueError, match="label 'nope' is not a column"):
        g.show(label="nope")


def test_natural_render_threaded_equals_one_crop_at_a_time():
    """The batched renderer (crops cut on several threads, float conversion per crop,
    channels-last) gives exactly the pixels of cropping and resizing one crop at a time."""
    import torch
    import torch.nn.functional as F

    from stimuli.photographs import _sample_image

    s = stimuli.natural(9, size_deg=2.0, seed=3, ppd=24)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = s.render(None).values
    finally:
        torch.set_num_threads(before)
    for k, r in enumerate(s.meta.itertuples(index=False)):
        crop = _sample_image(r.source)[:, :, r.top : r.top + r.crop_px, r.left : r.left + r.crop_px]
        small = F.interpolate(
            crop.contiguous(memory_format=torch.channels_last),
            size=s.shape_px,
            mode="bilinear",
            antialias=True,
        )[0]
        want = (small.flip(-1) if r.flip else small).float() / 255.0
        assert torch.equal(got[k], want), k


def test_from_folder_threaded_decode_is_exact(tmp_path):
    """Images decoded on several threads into channels-last floats equal PIL's pixels / 255
    exactly, in file order, and a corrupt file is still named in one line."""
    import torch

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(7, 12, 10, 3), dtype=np.uint8)
    for k, p in enumerate(pixels):
        Image.fromarray(p).save(tmp_path / f"im{k}.png")
    s = stimuli.from_folder(tmp_path, size_deg=2, encoding="linear")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = s.render(None)
    finally:
        torch.set_num_threads(before)
    want = torch.from_numpy(pixels.astype(np.float32) / np.float32(255)).permute(0, 3, 1, 2)
    assert got.in_range and torch.equal(got.values, want)
    (tmp_path / "im3.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*im3\.png"):
        stimuli.from_folder(tmp_path, size_deg=2).render(None)
