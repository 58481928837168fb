"""Experiment files: the shipped ones validate; a bad key or value is one error line naming
the file, the line and the key, whether the parser or the run meets it."""

import pytest
from _experiments import BASE, SWEEP

from insilico import experiments
from insilico.experiments import Experiment, ExperimentError


def test_every_shipped_experiment_validates():
    shipped = experiments.library()
    assert {
        "v1_orientation_tuning",
        "rf_mapping",
        "size_tuning",
        "it_category",
        "microstim_decision",
        "muscimol_deficit",
        "population_control",
    } <= set(shipped)
    for path in shipped.values():
        spec = experiments.load(path)
        assert spec.predictions, f"{path.name} states no prediction"
        for p in spec.predictions:  # every claim names the null it is checked against
            assert len(p.get("null", "")) > 20, f"{path.name}: {p['name']} states no null"


@pytest.mark.parametrize(
    "edit, message",
    [
        (("n_sites = 16", "n_sites = 16\ncolour = 3"), r":12: implant.colour: unknown key"),
        (("n_sites = 16", 'n_sites = "many"'), r":11: implant.n_sites: must be an integer"),
        (
            ('conditions = ["control", "lesion"]', 'conditions = ["control", "muscimol"]'),
            r":30: measure.conditions: refers to condition 'muscimol', which is not defined",
        ),
        (
            ("size_deg = 3.0", 'size_deg = "64px"'),
            r":17: stimuli.size_deg: must be a number of degrees, got '64px' \(pixels",
        ),
        (("size_deg = 3.0", "size_px = 64"), r":17: stimuli.size_px: sizes are in degrees"),
        (("size_deg = 3.0", "size_deg = -3.0"), r":17: stimuli.size_deg: must be positive"),
        (
            ('stimuli = "gratings"\ntargets', 'stimuli = "bars"\ntargets'),
            r":28: measure.stimuli: refers to stimuli 'bars', which is not defined",
        ),
        (
            (
                "[[condition]]",
                '[[stimuli]]\nname = "mix"\nkind = "blend"\na = "gratings"\nb = "bars"\n'
                "\n[[condition]]",
            ),
            r":25: stimuli.b: refers to stimuli 'bars', which is not defined above it",
        ),
        (
            ('region = "V1" }]', 'region = "V1", at_mm = { prefer = "cat" } }]'),
            r"condition.perturbations: at_mm as a table chooses the site preferring a label",
        ),
        # wrong types: one line naming the key (volume_ul = [1] was a TypeError from '<')
        (
            ('type = "Lesion", region = "V1"', 'type = "Muscimol", region = "V1", volume_ul = [1]'),
            r":23: condition.perturbations: volume_ul must be a number >= 0, got \[1\]",
        ),
        (("seed = 0", "seed = 0\ndisplay = 5"), r":4: display: must be a table \[display\]"),
        (
            ("seed = 0", "seed = 0\n[display]\nbit_depth = 8.7"),
            r":5: display.bit_depth: must be an integer: 8, 10, 12 or 16, got 8.7",
        ),
        (
            ("seed = 0", "seed = 0\n[display]\nresolution = [1920]"),
            r"display.resolution: must be two integers",
        ),
    ],
)
def test_bad_experiment_files(edit, message):
    old, new = edit
    assert old in BASE
    with pytest.raises(ExperimentError, match=message):
        experiments.parse(BASE.replace(old, new, 1), "bad.toml")


@pytest.mark.parametrize(
    "edit, message",
    [
        # values only the library can judge: still one line with the file, line and table
        (("[model]", "[display]\ngamma = -2\n\n[model]"), r"^bad.toml:5: display: gamma must be"),
        (
            ('region = "V1" }]', 'region = "V1", at_mm = "a", radius_mm = 1.0 }]'),
            r"^bad.toml:21: condition.lesion: at_mm must be \(x_mm, y_mm\)",
        ),
        (
            ("orientation_deg = {", "phase_deg = nan\norientation_deg = {"),
            r"^bad.toml:14: stimuli.gratings: .*phase_deg must be a finite number",
        ),
    ],
)
def test_runtime_errors_name_file_and_line(edit, message, tmp_path):
    old, new = edit
    assert old in BASE
    exp = Experiment(experiments.parse(BASE.replace(old, new, 1), "bad.toml"))
    with pytest.raises(ExperimentError, match=message):
        exp.run(tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "results.zarr").exists()


def test_experiment_is_public_and_with_parameters_names_bad_paths():
    import insilico as lab

    exp = lab.Experiment.from_text(BASE)
    changed = exp.with_parameters({"stimuli.gratings.size_deg": 2.0})
    assert changed.spec.stimuli[0]["size_deg"] == 2.0 and exp.spec.stimuli[0]["size_deg"] == 3.0
    with pytest.raises(ExperimentError, match="refers to stimuli 'nope', which is not defined"):
        exp.with_parameters({"stimuli.nope.size_deg": 2.0})
    with pytest.raises(ExperimentError, match="KIND one of"):
        exp.with_parameters({"bogus.x.y": 1})
    with pytest.raises(ExperimentError, match=r"perturbation index '3' is not in 0\.\.0"):
        exp.with_parameters({"condition.lesion.3.region": "V2"})


def test_sweep_parameters_take_ranges_and_name_bad_steps():
    text = SWEEP.replace("[0.5, 1.0]", "{ start = 0.5, stop = 1.5, step = 0.5 }")
    assert text != SWEEP
    spec = experiments.parse(text, "s.toml")
    assert spec.sweep["parameters"]["stimuli.gratings.contrast"] == [0.5, 1.0]
    bad = SWEEP.replace("[0.5, 1.0]", '{ start = 0.5, stop = 1.5, step = "a" }')
    with pytest.raises(ExperimentError, match=r"s.toml:\d+: sweep.parameters: .*step must be a"):
        experiments.parse(bad, "s.toml")
