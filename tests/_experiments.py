"""What the experiment tests share: a small experiment file (BASE), the same with a sweep
(SWEEP), and fewer bootstrap resamples (an autouse fixture: import it into a test module)."""

import pytest

from insilico.experiments import stats


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    """The machinery, not the precision, is under test here: fewer bootstrap resamples and
    shuffles keep the suite fast (the shipped defaults are 400 and 40)."""
    monkeypatch.setattr(stats, "N_BOOT_RECORD", 100)
    monkeypatch.setattr(stats, "N_SHUFFLES", 12)


BASE = """
name = "test"
seed = 0

[model]
name = "tiny"

[[implant]]
name = "v1"
region = "V1"
n_sites = 16
at_deg = [1.0, -1.0]

[[stimuli]]
name = "gratings"
kind = "gratings"
size_deg = 3.0
position_deg = [1.0, -1.0]
orientation_deg = { start = 0, stop = 180, step = 30 }

[[condition]]
name = "lesion"
perturbations = [{ type = "Lesion", region = "V1" }]

[[measure]]
name = "tuning"
kind = "record"
stimuli = "gratings"
targets = "v1"
conditions = ["control", "lesion"]
"""


SWEEP = (
    BASE
    + """
[sweep]
measure = "tuning"

[sweep.parameters]
"implant.v1.at_deg" = [[1.0, -1.0], [-1.0, 1.0]]
"stimuli.gratings.contrast" = [0.5, 1.0]
"""
)
