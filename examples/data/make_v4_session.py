"""Write ``v4_session.nc``: a small "real" V4 recording for the README and tests.

The responses come from a network the default model is not: 16 V4 sites of
``efficientnet_lite1`` (separately trained weights), an array at (1, 1) deg, 300 natural
crops (``stimuli.natural(300, size_deg=8, seed=7)``) x 2 Poisson repeats, 100 ms bins.
Only what a lab would export is kept: responses (spikes/s), ``stimulus_id``,
``repetition``, anonymous ``neuroid_id`` s — no model coordinates.

Run: python examples/data/make_v4_session.py
"""

from pathlib import Path

import xarray as xr

import insilico as lab

N_STIMULI, SEED, REPEATS = 300, 7, 2


def stimuli():
    """The stimulus set the session showed (regenerate it to map the sites)."""
    return lab.stimuli.natural(N_STIMULI, size_deg=8, seed=SEED)


def main() -> Path:
    animal = lab.Rig(lab.load_model("efficientnet_lite1"))
    sites = animal.implant("V4", n_sites=16, at_deg=(1.0, 1.0), seed=0)
    rec = animal.record(stimuli(), sites, repeats=REPEATS, noise="poisson", seed=1, progress=False)
    out = xr.DataArray(
        rec.values[:, :, 0].astype("float32"),
        dims=("presentation", "neuroid"),
        coords={
            "stimulus_id": ("presentation", [str(v) for v in rec.stimulus_id.values]),
            "repetition": ("presentation", rec.repetition.values),
            "neuroid_id": ("neuroid", [f"v4_site{k:02d}" for k in range(len(sites))]),
        },
        name="response",
        attrs={
            "units": "spikes/s",
            "source": "efficientnet_lite1 V4 (held-out network), examples/data/make_v4_session.py",
            "stimuli": f"stimuli.natural({N_STIMULI}, size_deg=8, seed={SEED})",
        },
    )
    path = Path(__file__).with_name("v4_session.nc")
    out.to_netcdf(path)
    return path


if __name__ == "__main__":
    print(main())
