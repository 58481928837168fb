"""Shared fixtures: a tiny model for fast tests, the real offline model for integration."""

from __future__ import annotations

import os
import tempfile

import pytest

# unit measurements cache and offline mode, set before anything imports insilico
_CACHE = tempfile.mkdtemp(prefix="insilico-test-cache-")
os.environ.setdefault("INSILICO_CACHE", _CACHE)
os.environ["INSILICO_OFFLINE"] = "1"

import insilico as lab  # noqa: E402


@pytest.fixture(scope="session")
def tiny():
    return lab.load_model("tiny")


@pytest.fixture(scope="session")
def tiny_rig(tiny):
    return lab.Rig(tiny, display=lab.Display(distance_cm=57, width_cm=53, resolution=(1920, 1080)))


@pytest.fixture(scope="session")
def effnet():
    return lab.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def effnet_rig(effnet):
    return lab.Rig(
        effnet, display=lab.Display(distance_cm=57, width_cm=53, resolution=(1920, 1080))
    )
