import json
import re

import pytest

import recordings
from insilico.cli import main
from insilico.cli.values import parse_value


def test_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "_blocks.2" in out


def test_record_and_summary(tmp_path, capsys):
    out = tmp_path / "v1.zarr"
    args = (
        "record --model tiny --region V1 --n-sites 9 --at-deg=1,-1 --stimuli gratings "
        "--set size_deg=3 --set position_deg=1,-1 --set orientation_deg=0:180:45 "
        "--repeats 2 --noise poisson --quiet --out"
    )
    argv = [*args.split(), str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "8 presentations x 9 neuroids" in text
    rec = recordings.open(out)
    assert sorted(set(rec.orientation_deg.values)) == [0, 45, 90, 135]
    # rerunning the same command resumes (here: finds it complete), no error
    assert main(argv) == 0


RECORD = "record --model tiny --region V1 --stimuli gratings --out x.zarr --set size_deg=2"


@pytest.mark.parametrize(
    "argv, message",
    [
        (RECORD.replace("tiny", "nope"), "unknown model 'nope'; known models:"),
        (RECORD.replace("V1", "MT"), "no region 'MT'"),
        (RECORD.replace("size_deg=2", "size_deg=-2"), "size_deg must be a positive"),
        (RECORD + " --set position_deg=30,0", "outside the model's field of view"),
        (RECORD.replace("gratings", "folder") + " --set path=/no/such/dir", "does not exist"),
        (RECORD + " --set bogus=1", "bogus"),
        ("demo --at-deg a,b", "--at-deg must be two numbers"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv.split()) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("insilico: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.zarr").exists()


def test_existing_output_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "taken.zarr"
    out.mkdir()
    base = "record --model tiny --region V1 --stimuli blank --set size_deg=2 --quiet".split()
    base += ["--out", str(out)]
    assert main(base) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*base, "--overwrite"]) == 0


def test_overwrite_of_the_working_directory_is_refused(tmp_path, capsys, monkeypatch):
    """`record --out . --overwrite` used to delete the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.tex").write_text("chapter 1")
    argv = "record --model tiny --region V1 --stimuli blank --set size_deg=2 --quiet".split()
    for out in (".", str(tmp_path)):
        assert main([*argv, "--out", out, "--overwrite"]) == 2
        err = capsys.readouterr().err.strip()
        assert "working directory" in err and len(err.splitlines()) == 1
    assert (tmp_path / "thesis.tex").read_text() == "chapter 1"


def test_demo_on_tiny_model(tmp_path, capsys):
    argv = [*"demo --model tiny --n-sites 16 --repeats 2 --quiet --out".split(), str(tmp_path)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "median OSI" in text
    assert (tmp_path / "v1_tuning.png").stat().st_size > 10_000
    rec = recordings.open(tmp_path / "v1_orientation.zarr")
    assert rec.sizes["neuroid"] == 16


def test_value_parsing():
    assert parse_value("0:180:45") == [0, 45, 90, 135]
    assert parse_value("1,2,4") == [1, 2, 4]
    assert parse_value("0.5") == 0.5 and parse_value("sine") == "sine"


def test_synthesize_command(tmp_path, capsys):
    out, exported = tmp_path / "drive.zarr", tmp_path / "session"
    args = (
        "synthesize --model tiny --region V4 --n-sites 16 --at-deg=1,1 --sites 3,5 "
        "--objective drive --size-deg 4 --position-deg=1,1 --steps 10 --reference 30 --quiet"
    )
    argv = [*args.split(), "--out", str(out), "--export", str(exported)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "drive on 2 targets of tiny" in text and "beats_natural" in text
    import stimuli

    res = stimuli.synthesis.open_result(out)
    assert len(res) == 2 and (exported / "manifest.csv").exists()
    assert sorted(p.name for p in exported.glob("*.png")) == [
        "000_site03_drive_r0.png",
        "001_site05_drive_r0.png",
    ]
    # insilico export: the same store for another display (10-bit), from a TOML file
    rig_toml = tmp_path / "rig.toml"
    rig_toml.write_text("[display]\ndistance_cm = 70\nwidth_cm = 60\nbit_depth = 10\n")
    again = tmp_path / "session10"
    assert main(["export", str(out), "--out", str(again), "--display", str(rig_toml)]) == 0
    assert "exported  2 PNGs (10-bit" in capsys.readouterr().out
    meta = json.loads((again / "manifest.json").read_text())
    assert meta["display"]["distance_cm"] == 70 and meta["stimuli"][0]["site"] == 3
    assert main(["export", str(out), "--out", str(again)]) == 2  # not empty, no --overwrite
    assert "not empty" in capsys.readouterr().err
    rig_toml.write_text("[display]\ndistance = 70\n")
    assert main(["export", str(out), "--out", str(tmp_path / "e"), "--display", str(rig_toml)]) == 2
    assert "unknown keys ['distance']" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing.zarr"), "--out", str(tmp_path / "e")]) == 2
    assert "no synthesis result" in capsys.readouterr().err
    assert main([*args.replace("3,5", "99").split(), "--out", str(tmp_path / "x.zarr")]) == 2
    assert "sites [99] are not in this array" in capsys.readouterr().err
    # --at-deg and --at-mm place the array one way or the other, as in record
    assert main([*args.split(), "--at-mm=1,1", "--out", str(tmp_path / "y.zarr")]) == 2
    assert "give at_deg or at_mm, not both" in capsys.readouterr().err


def test_view_without_a_display_is_one_line(tmp_path, capsys, monkeypatch):
    """Without an X server Qt aborted with a misleading message."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", str(tmp_path / "none.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no display" in err and "xvfb-run" in err and len(err.splitlines()) == 1


def test_every_option_has_help_and_sites_means_site_numbers(tmp_path, capsys):
    """`record --sites 9` used to be a count while `synthesize --sites 3,17` was a list."""
    from insilico.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    for name, parser in sub.items():
        for action in parser._actions:
            assert action.help, f"insilico {name} {action.option_strings or action.dest}"
        for example in re.findall(r"--sites[ =](\S+)", parser.description or ""):
            assert "," in example, f"insilico {name}: --sites {example} in an example is a count"
    for name in ("record", "synthesize", "run"):
        options = {o for a in sub[name]._actions for o in a.option_strings}
        assert {"--seed", "--device"} <= options, name
    out = tmp_path / "r.zarr"
    argv = "record --model tiny --region V1 --n-sites 9 --sites 2,5 --stimuli blank --quiet"
    assert main([*argv.split(), "--set", "size_deg=2", "--out", str(out)]) == 0
    import recordings

    assert list(recordings.open(out).site.values) == [2, 5]
    assert (
        main(
            [
                "record",
                "--model",
                "tiny",
                "--region",
                "V1",
                "--sites",
                "2",
                "--stimuli",
                "blank",
                "--out",
                str(tmp_path / "x.zarr"),
            ]
        )
        == 2
    )
    assert "give --n-sites too" in capsys.readouterr().err


def test_demo_osi_is_cross_validated_against_its_null():
    """Poisson noise alone gives OSI > 0; the demo's cross-validated OSI of untuned sites
    stays at its shuffle null, and tuned sites clear it."""
    import numpy as np

    from insilico.demo import _cv_tuning

    rng = np.random.default_rng(0)
    orientations, sfs = np.arange(0, 180, 15.0), np.array([1.0, 2.0])
    ori = np.repeat(np.tile(orientations, 2), 6)
    sf = np.repeat(np.repeat(sfs, len(orientations)), 6)
    rep = np.tile(np.arange(6), 2 * len(orientations))
    tuned = 5 + 40 * np.exp(np.cos(np.deg2rad(2 * (ori - 60))) - 1)
    rates = np.c_[np.full((len(ori), 20), 10.0), np.repeat(tuned[:, None], 20, axis=1)]
    values = rng.poisson(rates * 0.1) / 0.1
    odd = rep % 2 == 1
    _, _, _, osi, pref = _cv_tuning(values, ori, sf, ~odd, odd, orientations, sfs)
    assert np.median(osi[:20]) < 0.2 and np.median(osi[20:]) > 0.25
    assert np.all(np.abs(pref[20:] - 60) < 15)
    shuffled = rng.permutation(ori)
    null = _cv_tuning(values, shuffled, sf, ~odd, odd, orientations, sfs)[3]
    assert np.median(osi[20:]) > np.percentile(null, 95) > np.median(osi[:20]) - 0.1
