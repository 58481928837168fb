import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stimuli import Display


def test_atan_geometry_exact():
    d = Display(distance_cm=57, width_cm=53, resolution=(1920, 1080))
    # right edge of the screen: X = 26.5 cm minus half a pixel
    pitch = 53 / 1920
    x, y = d.px_to_deg(1919, (1080 - 1) / 2)
    assert x == pytest.approx(math.degrees(math.atan((26.5 - pitch / 2) / 57)), abs=1e-9)
    assert y == pytest.approx(0.0, abs=1e-9)
    # the small-angle shortcut would be wrong by more than 0.5 deg there
    assert abs(x - (26.5 - pitch / 2) / 57 * 180 / math.pi) > 0.5
    # y grows upwards
    assert d.px_to_deg(960, 0)[1] > 0 > d.px_to_deg(960, 1079)[1]


@given(
    u=st.floats(-500, 2500, allow_nan=False),
    v=st.floats(-500, 1500, allow_nan=False),
)
def test_px_deg_round_trip(u, v):
    d = Display(distance_cm=40, width_cm=60, resolution=(1920, 1200))
    x, y = d.px_to_deg(u, v)
    u2, v2 = d.deg_to_px(x, y)
    assert u2 == pytest.approx(u, abs=1e-6) and v2 == pytest.approx(v, abs=1e-6)


def test_ppd_grows_with_eccentricity_on_a_flat_screen():
    d = Display()
    assert d.ppd(0) < d.ppd(10) < d.ppd(20)
    # numerical derivative of deg_to_px
    u0, _ = d.deg_to_px(10 - 1e-4, 0)
    u1, _ = d.deg_to_px(10 + 1e-4, 0)
    assert d.ppd(10) == pytest.approx((u1 - u0) / 2e-4, rel=1e-6)


def test_encode_decode():
    d = Display(gamma=2.2)
    lum = np.linspace(0, 1, 11)
    assert np.allclose(d.decode(d.encode(lum)), lum)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"distance_cm": 0}, "distance_cm"),
        ({"width_cm": -3}, "width_cm"),
        ({"resolution": (1920,)}, "resolution"),
        ({"resolution": (0, 1080)}, "resolution"),
        ({"background": 1.5}, "background"),
        ({"gamma": float("nan")}, "gamma"),
        ({"bit_depth": 7}, "bit_depth"),
    ],
)
def test_bad_display(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Display(**kwargs)
