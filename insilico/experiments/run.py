"""Running an experiment: build the rig, run every measure under every condition, compute
metrics, evaluate predictions against their statistics, store everything in one zarr store."""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

import insilico as lab
import perturb
import stimuli as stim_mod
from insilico.analysis import (
    Effect,
    compare,
    orientation_selectivity,
    preferred_site,
    tuning_curve,
    unit_dprime,
)
from insilico.experiments import stats
from insilico.experiments.spec import ExperimentError, Spec, load, located, parse
from recordings.format import json_attrs
from stimuli.synthesis.result import SynthesisResult

N_BOOT = 2000


def _strings(values: Any) -> np.ndarray:
    """Labels of any dtype (object, <U, numpy StringDType) as an object array of str."""
    return np.asarray([str(v) for v in np.asarray(values, dtype=object).ravel()], dtype=object)


# metrics: per-item values (stimuli or neuroids) and how to summarise them --------------------
def _per_stimulus_rate(rec: xr.DataArray) -> np.ndarray:
    """Mean rate (spikes/s) per stimulus: over neuroids, repetitions and time bins."""
    r = rec.mean(("neuroid", "time_bin"))
    return r.groupby(r["stimulus_index"]).mean().values


def _osi(rec: xr.DataArray) -> np.ndarray:
    if "orientation_deg" not in rec.coords:
        raise ExperimentError("metric median_osi needs stimuli with an orientation_deg parameter")
    curves = tuning_curve(rec, "orientation_deg")
    osi, _ = orientation_selectivity(curves["mean"].values, curves["orientation_deg"].values)
    responsive = curves["mean"].values.max(axis=0) > 0
    return osi[responsive]


def _curves(rec: xr.DataArray, param: str, mask: np.ndarray | None = None):
    """(levels, mean response per level and neuroid) over the presentations in ``mask``."""
    r = rec.mean("time_bin").values if "time_bin" in rec.dims else rec.values
    levels_all = np.asarray(rec[param].values, dtype=float)
    if mask is None:
        mask = np.ones(len(levels_all), dtype=bool)
    levels = np.unique(levels_all)
    return levels, np.stack([r[(levels_all == lv) & mask].mean(axis=0) for lv in levels])


def _sf_curves(rec: xr.DataArray, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if "sf_cpd" not in rec.coords or len(np.unique(rec.sf_cpd.values)) < 3:
        raise ExperimentError(f"metric {metric} needs stimuli of >= 3 spatial frequencies (sf_cpd)")
    sf, v = _curves(rec, "sf_cpd")
    return sf, v, v.max(axis=0) > 0


def _sf_selectivity(rec: xr.DataArray) -> np.ndarray:
    """Spatial-frequency selectivity per responsive neuroid: 1 - response at the worst / at
    the best tested frequency (0 = flat, 1 = silent at some frequency). Cross-validated:
    best and worst are chosen on even repetitions and measured on odd ones (a single
    repetition falls back to one set), so noise alone gives ~0, not a positive index."""
    _sf_curves(rec, "sf_selectivity")
    halves = stats.repeat_halves(rec)
    if halves is None:
        _, v = _curves(rec, "sf_cpd")
        best, worst = v.argmax(axis=0), v.argmin(axis=0)
        measured = v
    else:
        _, choose = _curves(rec, "sf_cpd", halves[0])
        _, measured = _curves(rec, "sf_cpd", halves[1])
        best, worst = choose.argmax(axis=0), choose.argmin(axis=0)
    cols = np.arange(measured.shape[1])
    hi, lo = measured[best, cols], measured[worst, cols]
    live = hi > 0
    return 1 - lo[live] / hi[live]


def _preferred_sf(rec: xr.DataArray) -> np.ndarray:
    """Preferred spatial frequency (cycles/deg) per responsive neuroid, among those tested."""
    sf, v, live = _sf_curves(rec, "preferred_sf_cpd")
    return sf[v.argmax(axis=0)][live].astype(float)


def _suppression(rec: xr.DataArray) -> np.ndarray:
    """Surround suppression per neuroid: 1 - response at the largest size / response at the
    preferred size. Cross-validated: the preferred size is chosen on even repetitions and
    both responses are measured on odd ones, so Poisson noise on a flat size-tuning curve
    gives ~0 (choosing and measuring the peak on the same trials made it positive)."""
    if "size_deg" not in rec.coords or len(np.unique(rec.size_deg.values)) < 3:
        raise ExperimentError("metric suppression_index needs stimuli of >= 3 sizes (size_deg)")
    halves = stats.repeat_halves(rec)
    if halves is None:
        _, measured = _curves(rec, "size_deg")
        peak = measured.argmax(axis=0)
    else:
        _, choose = _curves(rec, "size_deg", halves[0])
        _, measured = _curves(rec, "size_deg", halves[1])
        peak = choose.argmax(axis=0)
    cols = np.arange(measured.shape[1])
    at_peak = measured[peak, cols]
    live = at_peak > 0
    return 1 - measured[-1, live] / at_peak[live]


def _rf_centres(rec: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = rec.mean(("time_bin",))
    x = r.position_x_deg.values
    y = r.position_y_deg.values
    v = r.values  # presentations x neuroids
    w = np.abs(v - np.median(v, axis=0))
    total = w.sum(axis=0)
    live = total > 0
    cx = (w * x[:, None]).sum(0) / np.where(live, total, 1)
    cy = (w * y[:, None]).sum(0) / np.where(live, total, 1)
    return cx, cy, live


def _rf_error(rec: xr.DataArray) -> np.ndarray:
    """Distance (deg) between each neuroid's RF centre mapped by sparse noise (response-
    weighted centroid of probe positions, relative to blank) and its unit-table RF centre."""
    cx, cy, live = _rf_centres(rec)
    err = np.hypot(cx - rec.rf_x_deg.values, cy - rec.rf_y_deg.values)
    return err[live]


def _rf_gain_over_guess(rec: xr.DataArray) -> np.ndarray:
    """Per neuroid, how much closer (deg) the sparse-noise RF centre is to the true one than
    the null guess — the centre of the probe grid, for every site: guess error - mapped error.
    (The array sits at the grid centre, so the guess alone was within 0.165 deg.)"""
    cx, cy, live = _rf_centres(rec)
    gx = float(np.mean(rec.position_x_deg.values))
    gy = float(np.mean(rec.position_y_deg.values))
    tx, ty = rec.rf_x_deg.values, rec.rf_y_deg.values
    gain = np.hypot(gx - tx, gy - ty) - np.hypot(cx - tx, cy - ty)
    return gain[live]


def _rate_above_blank(rec: xr.DataArray) -> np.ndarray:
    """Per non-blank stimulus: mean rate (spikes/s, over neuroids and repetitions) minus the
    mean rate to the blank presentations (``set`` == "blank", e.g. ``concat`` of the stimuli
    and a blank): what the stimuli add to the spontaneous rate."""
    if "set" not in rec.coords or "blank" not in set(_strings(rec["set"].values)):
        raise ExperimentError("metric rate_above_blank needs a 'blank' set (concat with a blank)")
    r = rec.mean(("neuroid", "time_bin")).values
    is_blank = _strings(rec["set"].values) == "blank"
    stim = np.asarray(rec["stimulus_index"].values)
    base = r[is_blank].mean()
    per = [r[(stim == s) & ~is_blank].mean() for s in np.unique(stim[~is_blank])]
    return np.asarray(per) - base


def _category_dprime(rec: xr.DataArray, labels: str) -> np.ndarray:
    """|d'| per neuroid between the stimuli of the first label and all others."""
    if labels not in rec.coords:
        raise ExperimentError(f"metric category_dprime needs the stimulus parameter {labels!r}")
    r = rec.mean("time_bin").values
    lab_values = _strings(rec[labels].values)
    first = sorted(set(lab_values))[0]
    return np.abs(unit_dprime(r[lab_values == first], r[lab_values != first]))


RECORD_METRICS = {
    "mean_rate": (_per_stimulus_rate, np.mean, "spikes/s"),
    "rate_above_blank": (_rate_above_blank, np.mean, "spikes/s"),
    "median_osi": (_osi, np.median, "OSI"),
    "sf_selectivity": (_sf_selectivity, np.median, "index"),
    "preferred_sf_cpd": (_preferred_sf, np.median, "cycles/deg"),
    "suppression_index": (_suppression, np.median, "fraction"),
    "rf_error_deg": (_rf_error, np.median, "deg"),
    "rf_gain_over_guess_deg": (_rf_gain_over_guess, np.median, "deg"),
}
#: statistic of metrics computed outside RECORD_METRICS (the claim names it: "median |d'|")
OTHER_STATS = {"category_dprime": np.median}
#: fraction of matched controls a perturbation effect must beat when a prediction does not say
DEFAULT_BEATS_CONTROLS = 0.95
#: computed nulls: metric -> (presentation label to shuffle, labels to shuffle within)
SHUFFLE_NULLS = {"median_osi": ("orientation_deg", ("sf_cpd", "phase_deg"))}


def _held_out_rigs(rig: Any, m: dict[str, Any]) -> list[Any]:
    """The rig of a synthesize measure's ``held_out`` network (same display), if any."""
    name = m.get("held_out")
    if name is None:
        return []
    if not isinstance(name, str) or not name:
        raise ExperimentError(f"measure {m['name']}: held_out must be a model name, got {name!r}")
    return [lab.Rig(lab.load_model(name), display=rig.display)]


def _synthesis_output(res: SynthesisResult, m: dict[str, Any]) -> MeasureOutput:
    """Per-target metrics of a synthesize measure. With ``held_out`` (another network), the
    images are scored there: ``beats_natural``/``ratio`` are the held-out network's (against
    the equated natural crops), ``*_optimised`` the optimised model's own; ``*_unconstrained``
    compare with the plain full-gamut crops."""
    t = res.targets
    mo = MeasureOutput(data=res)
    held = m.get("held_out")
    pre = "" if held is None else f"transfer_{held}_"
    for col in ("beats_natural", "ratio", "beats_natural_unconstrained", "ratio_unconstrained"):
        mo.values[col] = t[pre + col].to_numpy(dtype=float)
        if held is not None:
            mo.values[f"{col}_optimised"] = t[col].to_numpy(dtype=float)
    if held is not None:
        match = res.attrs.get("transfer_match", {}).get(held)
        if match:
            mo.values["transfer_match_r"] = np.array([r["r"] for r in match], dtype=float)
            mo.values["transfer_rf_offset_deg"] = np.array(
                [r["rf_offset_deg"] for r in match], dtype=float
            )
    return mo


@dataclass
class MeasureOutput:
    """What one measure produced under one condition: per-item values of each metric."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    data: Any = None  # recording / behaviour / SynthesisResult / Effect


@dataclass
class Results:
    """Everything a run produced; ``predictions`` holds the verdicts."""

    spec: Spec
    out: Path
    measures: dict[str, dict[str, MeasureOutput]]
    predictions: list[dict[str, Any]]
    seconds: float
    figures: list[str] = field(default_factory=list)
    #: condition -> its perturbations as applied (sites chosen by preference resolved)
    conditions: dict[str, list[str]] = field(default_factory=dict)

    def verdicts(self) -> dict[str, str]:
        return {p["name"]: p["verdict"] for p in self.predictions}


class Experiment:
    """A whole experiment as a Python object: ``Experiment.from_toml(path).run(out)``."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    @classmethod
    def from_toml(cls, path: str | Path) -> Experiment:
        return cls(load(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<experiment>") -> Experiment:
        return cls(parse(text, source))

    def with_model(self, name: str) -> Experiment:
        """A copy run on another model (e.g. ``"tiny"`` for a quick check)."""
        spec = copy.deepcopy(self.spec)
        spec.model = {**spec.model, "name": name}
        spec.model.pop("weights", None)
        return Experiment(spec)

    def with_parameters(self, params: dict[str, Any]) -> Experiment:
        """A copy with sweep parameters applied (``condition.NAME[.i].key = value``)."""
        spec = copy.deepcopy(self.spec)
        for path, value in params.items():
            tables = {
                "condition": spec.conditions,
                "measure": spec.measures,
                "implant": spec.implants,
                "stimuli": spec.stimuli,
            }
            kind, _, tail = path.partition(".")
            name, _, key = tail.partition(".")
            rest = key.split(".") if key else []
            if kind not in tables or not rest:
                raise ExperimentError(
                    f"parameter {path!r}: expected KIND.NAME.KEY with KIND one of "
                    f"{', '.join(tables)} (conditions: condition.NAME.INDEX.KEY)"
                )
            item = next((t for t in tables[kind] if t["name"] == name), None)
            if item is None:
                raise ExperimentError(
                    f"parameter {path!r} refers to {kind} {name!r}, which is not defined "
                    f"(defined: {', '.join(t['name'] for t in tables[kind]) or 'none'})"
                )
            if kind == "condition" and len(rest) == 2:
                n = len(item["perturbations"])
                if not rest[0].isdigit() or int(rest[0]) >= n:
                    raise ExperimentError(
                        f"parameter {path!r}: perturbation index {rest[0]!r} is not in 0..{n - 1}"
                    )
                item["perturbations"][int(rest[0])][rest[1]] = value
            else:
                item[rest[-1]] = value
        return Experiment(spec)

    # building -----------------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        s = self.spec
        model = lab.load_model(
            s.model["name"], weights=s.model.get("weights"), device=s.model.get("device", "cpu")
        )
        with located(s.where("display")):
            display = lab.Display(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in s.display.items()}
            )
        with located(s.where("rig")):
            fixation = tuple(s.rig.get("fixation_deg", (0, 0)))
            rig = lab.Rig(model, display=display, fixation_deg=fixation)
        implants = {}
        for item in s.implants:
            kw = {
                k: tuple(v) if isinstance(v, list) else v
                for k, v in item.items()
                if k not in ("name", "region", "n_sites")
            }
            with located(s.where("implant", item["name"])):
                implants[item["name"]] = rig.implant(item["region"], item["n_sites"], **kw)
        stimuli = {}
        for item in s.stimuli:
            kw = {k: v for k, v in item.items() if k not in ("name", "kind")}
            if "position_deg" in kw:
                pos = kw["position_deg"]
                kw["position_deg"] = (
                    [tuple(p) for p in pos] if pos and isinstance(pos[0], list) else tuple(pos)
                )
            if item["kind"] == "blend":
                kw["a"], kw["b"] = stimuli[kw["a"]], stimuli[kw["b"]]
            elif item["kind"] == "concat":
                kw["sets"] = {name: stimuli[name] for name in kw["sets"]}
            with located(s.where("stimuli", item["name"])):
                stimuli[item["name"]] = getattr(stim_mod, item["kind"])(**kw)
        conditions = {"control": []}
        for item in s.conditions:
            ps = []
            for p in item.get("perturbations", []):
                kw = {
                    k: tuple(v) if isinstance(v, list) else v for k, v in p.items() if k != "type"
                }
                if isinstance(kw.get("at_mm"), dict):  # the site preferring a label
                    pref = kw["at_mm"]
                    try:
                        kw["at_mm"] = preferred_site(
                            rig,
                            kw["region"],
                            stimuli[pref["stimuli"]],
                            pref["labels"],
                            pref["prefer"],
                            radius_mm=float(pref.get("radius_mm", 1.0)),
                        )
                    except (ValueError, KeyError) as err:
                        raise ExperimentError(
                            f"{s.where('condition', item['name'])}: at_mm: {err}"
                        ) from None
                with located(s.where("condition", item["name"])):
                    ps.append(getattr(perturb, p["type"])(**kw))
            conditions[item["name"]] = ps
        return {
            "model": model,
            "rig": rig,
            "implants": implants,
            "stimuli": stimuli,
            "conditions": conditions,
        }

    # running -----------------------------------------------------------------------------
    def run_measure(self, env: dict[str, Any], m: dict[str, Any]) -> dict[str, MeasureOutput]:
        rig = env["rig"]
        seed = int(m.get("seed", self.spec.seed))
        conds = m.get("conditions", ["control"])
        out: dict[str, MeasureOutput] = {}
        targets = m.get("targets")
        if isinstance(targets, str) and targets in env["implants"]:
            targets = env["implants"][targets]
        if m["kind"] == "record":
            st = env["stimuli"][m["stimuli"]]
            for c in conds:
                with rig.perturb(*env["conditions"][c]):
                    rec = rig.record(
                        st,
                        targets,
                        repeats=int(m.get("repeats", 1)),
                        noise=m.get("noise"),
                        seed=seed,
                        progress=False,
                    )
                mo = MeasureOutput(data=rec)
                for name, (fn, _, _) in RECORD_METRICS.items():
                    try:
                        mo.values[name] = fn(rec)
                    except ExperimentError:
                        pass
                if "labels" in m:
                    mo.values["category_dprime"] = _category_dprime(rec, m["labels"])
                out[c] = mo
        elif m["kind"] == "behave":
            st = env["stimuli"][m["stimuli"]]
            task = m["task"]
            if task != "imagenet":
                train = env["stimuli"][m["train"]]
                task = rig.fit_task(train, m["labels"], region=m.get("region", "IT"), seed=seed)
            truth = _strings(st.meta[m["labels"]]) if "labels" in m else None
            for c in conds:
                with rig.perturb(*env["conditions"][c]):
                    beh = rig.behave(st, task=task)
                mo = MeasureOutput(data=beh)
                if truth is not None:
                    mo.values["accuracy"] = (_strings(beh.label.values) == truth).astype(float)
                if "choice" in m:
                    mo.values["p_choice"] = beh.sel(choice=str(m["choice"])).values
                out[c] = mo
        elif m["kind"] == "synthesize":
            st = env["stimuli"][m["reference"]]
            sel = targets.sites[list(m["sites"])] if "sites" in m else targets
            for c in conds:
                with rig.perturb(*env["conditions"][c]):
                    res = rig.synthesize(
                        sel,
                        objective=m.get("objective", "drive"),
                        steps=int(m.get("steps", 128)),
                        size_deg=m.get("size_deg"),
                        position_deg=tuple(m.get("position_deg", (0, 0))),
                        reference=st,
                        seed=seed,
                        n_per_target=int(m.get("n_per_target", 1)),
                        rms_contrast=float(m.get("rms_contrast", 0.25)),
                        transfer=_held_out_rigs(rig, m),
                        progress=False,
                    )
                out[c] = _synthesis_output(res, m)
        elif m["kind"] == "compare":
            st = env["stimuli"][m["stimuli"]]
            (p,) = env["conditions"][m["perturbation"]] or [None]
            if p is None:
                raise ExperimentError(
                    f"measure {m['name']}: condition {m['perturbation']!r} "
                    "has no perturbation to compare"
                )
            task = m.get("task")
            if task not in (None, "imagenet"):
                task = rig.fit_task(
                    env["stimuli"][m["train"]], m["labels"], region=m.get("region", "IT"), seed=seed
                )
            labels = (
                _strings(st.meta[m["labels"]])
                if m.get("readout", "behaviour") == "behaviour"
                else None
            )
            eff = compare(
                rig,
                st,
                p,
                readout=m.get("readout", "behaviour"),
                task=task,
                labels=labels,
                choice=m.get("choice"),
                targets=targets,
                controls=int(m.get("controls", 20)),
                seed=seed,
                progress=False,
            )
            mo = MeasureOutput(data=eff)
            mo.values["effect"] = np.array([eff.effect])
            mo.summary.update(
                effect=eff.effect,
                ci_low=eff.ci[0],
                ci_high=eff.ci[1],
                p_directional=eff.p_directional,
                p_value=eff.p_value,
            )
            out[m["perturbation"]] = mo
        for mo in out.values():
            for name, vals in mo.values.items():
                # the statistic the predictions use (median |d'|, median OSI, ...)
                agg = RECORD_METRICS.get(name, (None, OTHER_STATS.get(name, np.mean), ""))[1]
                if len(vals):
                    mo.summary.setdefault(name, float(agg(vals)))
        return out

    def run(
        self,
        out: str | Path | None = None,
        overwrite: bool = False,
        workers: int | None = None,
        scheduler: str | None = None,
        progress: bool = True,
    ) -> Results:
        """Run everything, write ``out/results.zarr``, ``out/predictions.json`` and
        ``out/report.md`` (+ figures) into ``out`` (default ``runs/NAME``); return the Results.
        A ``[sweep]`` runs its tasks on a local Dask cluster of ``workers`` processes, or on
        ``scheduler`` (an address)."""
        t0 = time.perf_counter()
        if workers or scheduler:
            if self.spec.sweep is None:
                raise ExperimentError(
                    f"{self.spec.name} has no [sweep]: workers={workers!r}/scheduler="
                    f"{scheduler!r} would have nothing to run"
                )
            from insilico.experiments.sweep import require_distributed

            require_distributed(workers, scheduler)  # before anything runs
        out = Path("runs") / self.spec.name if out is None else Path(out)
        _check_output_folder(out, self.spec, overwrite)  # before anything is touched
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_MARKER).write_text(json.dumps(_run_identity(self.spec)))
        if overwrite and (out / "sweep.zarr").exists():  # else a sweep resumes its store
            shutil.rmtree(out / "sweep.zarr")
        torch.manual_seed(self.spec.seed)
        env = self.build()
        results: dict[str, dict[str, MeasureOutput]] = {}
        from tqdm.auto import tqdm

        for m in tqdm(self.spec.measures, desc=self.spec.name, disable=not progress):
            with located(self.spec.where("measure", m["name"])):
                results[m["name"]] = self.run_measure(env, m)
        store = out / "results.zarr"
        if store.exists():
            shutil.rmtree(store)
        _store_results(store, self.spec, results)
        sweep = None
        if self.spec.sweep is not None:
            from insilico.experiments.sweep import run_sweep

            sweep = run_sweep(
                self, out / "sweep.zarr", workers=workers, scheduler=scheduler, progress=progress
            )
        labels = {m["name"]: m.get("labels") for m in self.spec.measures}
        predictions = [
            evaluate(p, results, seed=self.spec.seed, labels=labels.get(p["measure"]))
            for p in self.spec.predictions
        ]
        (out / "predictions.json").write_text(json.dumps(predictions, indent=2, default=float))
        res = Results(self.spec, out, results, predictions, time.perf_counter() - t0)
        res.conditions = {c: [repr(p) for p in ps] for c, ps in env["conditions"].items()}
        from insilico.experiments.report import write_report

        res.figures = write_report(res, sweep)
        return res


#: written into every run folder: which experiment (and spec) the folder's results belong to
RUN_MARKER = ".insilico-run.json"
#: what a run writes into its folder (anything else there is a user's and is never touched)
RUN_OUTPUTS = {"results.zarr", "sweep.zarr", "report.md", "predictions.json", "figures", RUN_MARKER}


def _run_identity(spec: Spec) -> dict[str, Any]:
    body = {k: v for k, v in spec.__dict__.items() if k not in ("source", "table_lines")}
    blob = json.dumps(body, sort_keys=True, default=str)
    import hashlib

    return {"experiment": spec.name, "spec": hashlib.sha256(blob.encode()).hexdigest()[:16]}


def _check_output_folder(out: Path, spec: Spec, overwrite: bool) -> None:
    """Refuse, before writing anything, a folder holding files a run did not write (never
    deleted, even with overwrite) or another experiment's run (replaced only with overwrite);
    a sweep resumes only its own run's folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"output {str(out)!r} exists and is not a folder")
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    foreign = sorted(entries - RUN_OUTPUTS)
    if foreign:
        raise FileExistsError(
            f"output folder {str(out)!r} holds files a run did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new folder"
        )
    try:
        mine = json.loads((out / RUN_MARKER).read_text())
    except (OSError, ValueError):
        mine = None
    same = mine == _run_identity(spec)
    if overwrite:
        return
    if spec.sweep is not None and same:
        return  # the same sweep resumes its store
    what = f"a run of {mine.get('experiment')!r}" if isinstance(mine, dict) else "an earlier run"
    raise FileExistsError(
        f"output folder {str(out)!r} holds {what}; pass overwrite=True (CLI: --overwrite) to "
        "replace it"
    )


def _store_results(store: Path, spec: Spec, results: dict[str, dict[str, MeasureOutput]]) -> None:
    """One zarr store: a group per measure and condition with its metrics (per item), the
    recording (record measures) or choice probabilities (behave measures)."""
    from recordings.store import as_zarr_dataset

    root = xr.Dataset(
        attrs=json_attrs(
            {"experiment": spec.name, "source": spec.source, "insilico_version": lab.__version__}
        )
    )
    root.to_zarr(store, mode="w-", consolidated=False)
    for mname, by_cond in results.items():
        for cname, mo in by_cond.items():
            ds = xr.Dataset(
                {
                    f"metric__{k}": (f"item_{k}", np.asarray(v, dtype=float))
                    for k, v in mo.values.items()
                },
                attrs=json_attrs({"summary": mo.summary}),
            )
            if isinstance(mo.data, xr.DataArray):
                data = as_zarr_dataset(mo.data)
                data[next(iter(data.data_vars))].attrs = {}
                ds = xr.merge([ds, data], combine_attrs="override")
            elif isinstance(mo.data, SynthesisResult):
                # the images themselves, as a synthesis store: the group opens with
                # SynthesisResult.open / insilico view, and exports to a real rig
                syn = mo.data.to_dataset()
                syn.attrs.update(ds.attrs)
                ds = xr.merge([syn, ds], combine_attrs="override")
            ds.to_zarr(store, group=f"{mname}/{cname}", mode="w-", consolidated=False)


def _bootstrap(values: np.ndarray, stat, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(N_BOOT, len(values)))
    stats = np.array([stat(values[i]) for i in idx]) if stat is not np.mean else values[idx].mean(1)
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def _verdict(op: str, thr: float, lo: float, hi: float) -> str:
    if op in (">", ">="):
        ok = lo > thr if op == ">" else lo >= thr
        bad = hi < thr if op == ">=" else hi <= thr
    else:
        ok = hi < thr if op == "<" else hi <= thr
        bad = lo > thr if op == "<=" else lo >= thr
    return "supported" if ok else "falsified" if bad else "inconclusive"


def _record_metric(metric: str, m_labels: str | None):
    """(per-item metric function of a recording, its statistic) or None."""
    if metric in RECORD_METRICS:
        fn, stat, _ = RECORD_METRICS[metric]
        return fn, stat
    if metric == "category_dprime" and m_labels:
        return (lambda rec: _category_dprime(rec, m_labels)), OTHER_STATS[metric]
    return None


def _computed_null(metric: str, mo: MeasureOutput, labels: str | None, stat, seed: int):
    """(null value, its 95th percentile, description) computed from the data, or None."""
    rec = mo.data
    if not isinstance(rec, xr.DataArray):
        return None
    if metric in SHUFFLE_NULLS:
        label, within = SHUFFLE_NULLS[metric]
        if label not in rec.coords:
            return None
        within = tuple(w for w in within if w in rec.coords)
        fn = RECORD_METRICS[metric][0]
        null = stats.label_shuffle_null(rec, label, fn, stat, seed, within)
        what = f"{label} shuffled within {', '.join(within) or 'all'}"
    elif metric == "category_dprime" and labels:
        null = stats.label_shuffle_null(
            rec, labels, lambda r: _category_dprime(r, labels), stat, seed
        )
        what = f"{labels} labels shuffled"
    elif metric == "accuracy" and labels and "choice" in rec.dims:
        chance = 1.0 / rec.sizes["choice"]
        return chance, chance, f"chance, 1/{rec.sizes['choice']} classes"
    else:
        return None
    if not len(null):
        return None
    return float(np.median(null)), float(np.percentile(null, 95)), what


def evaluate(
    p: dict[str, Any],
    results: dict[str, dict[str, MeasureOutput]],
    seed: int = 0,
    labels: str | None = None,
) -> dict:
    """Supported / falsified / inconclusive, from the 95 % interval of the statistic and the
    prediction's null.

    Intervals: recordings are bootstrapped hierarchically (stimuli, repetitions within
    stimuli, sites) with the metric recomputed per resample; a ``versus`` difference is
    bootstrapped as the same statistic as its value (paired items); 0/1 values (accuracy
    per stimulus, beats-natural per target) get the exact Clopper–Pearson interval; ``compare``
    measures carry their own (stimuli resampled) plus matched controls. A null computed from
    the data (shuffled labels, chance) must also be cleared: a prediction whose interval does
    not clear the null's 95th percentile is at best inconclusive. ``labels``: the measure's
    label coordinate (category d', decoding)."""
    by_cond = results[p["measure"]]
    cond = p.get("condition", next(iter(by_cond)))
    if cond not in by_cond:
        raise ExperimentError(
            f"prediction {p['name']!r}: measure {p['measure']!r} did not run "
            f"condition {cond!r} (ran: {', '.join(by_cond)})"
        )
    mo = by_cond[cond]
    metric = p["metric"]
    out = {
        "name": p["name"],
        "claim": p.get("claim", ""),
        "measure": p["measure"],
        "metric": metric,
        "condition": cond,
        "expect": p["expect"],
        "null": p.get("null", ""),
    }
    if metric not in mo.values:
        raise ExperimentError(
            f"prediction {p['name']!r}: metric {metric!r} is not available for "
            f"measure {p['measure']!r} (available: {', '.join(mo.values)})"
        )
    rec_metric = _record_metric(metric, labels)
    stat = rec_metric[1] if rec_metric else OTHER_STATS.get(metric, np.mean)
    null = None
    if isinstance(mo.data, Effect):
        eff = mo.data
        value, (lo, hi) = eff.effect, eff.ci
        out.update(
            control_effects_mean=float(np.mean(eff.control_effects))
            if len(eff.control_effects)
            else None,
            p_directional=eff.p_directional,
            interval="bootstrap over stimuli",
        )
    elif "versus" in p:
        other = by_cond.get(p["versus"])
        if other is None:
            raise ExperimentError(
                f"prediction {p['name']!r}: measure {p['measure']!r} did not "
                f"run condition {p['versus']!r}"
            )
        a, b = mo.values[metric], other.values[metric]
        if len(a) != len(b):
            raise ExperimentError(
                f"prediction {p['name']!r}: {metric} has different items in "
                f"{cond!r} and {p['versus']!r}"
            )
        value = float(stat(a) - stat(b))
        lo, hi = stats.paired_bootstrap(a, b, stat, N_BOOT, seed)
        out.update(
            versus=p["versus"],
            value_condition=float(stat(a)),
            value_versus=float(stat(b)),
            interval="paired bootstrap of the same statistic",
        )
    else:
        vals = np.asarray(mo.values[metric], dtype=float)
        value = float(stat(vals))
        if stat is np.mean and stats.is_binary(vals):
            lo, hi = stats.clopper_pearson(int(vals.sum()), len(vals))
            out["interval"] = f"Clopper-Pearson, {int(vals.sum())}/{len(vals)}"
        elif rec_metric and isinstance(mo.data, xr.DataArray):
            lo, hi = stats.bootstrap_record(mo.data, rec_metric[0], stat, seed)
            out["interval"] = "hierarchical bootstrap: stimuli, repetitions, sites"
        else:
            lo, hi = _bootstrap(vals, stat, seed)
            out["interval"] = "bootstrap over items"
        null = _computed_null(metric, mo, labels, stat, seed)
    verdict = _verdict(p["_op"], p["_threshold"], lo, hi)
    if null is not None:
        null_value, null_95, what = null
        out.update(null_value=null_value, null_95=null_95, null_computed=what)
        clears = lo > null_95 if p["_op"] in (">", ">=") else hi < null_value
        if verdict == "supported" and not clears:
            verdict = "inconclusive"
    if isinstance(mo.data, Effect) and len(mo.data.control_effects):
        # a perturbation effect is judged against its matched controls, always (its null);
        # beats_controls sets how many it must beat (default 95 %)
        eff = mo.data
        if eff.affected_units is not None and eff.control_affected_units is not None:
            out.update(
                affected_units=int(eff.affected_units),
                control_affected_mean=float(np.mean(eff.control_affected_units)),
            )
        needed = 1 - float(p.get("beats_controls", DEFAULT_BEATS_CONTROLS))
        out["controls_criterion"] = f"directional p <= {needed:.3g}"
        if verdict == "supported" and mo.data.p_directional > needed:
            verdict = "inconclusive" if mo.data.p_directional < 0.5 else "falsified"
    out.update(value=float(value), ci=[float(lo), float(hi)], verdict=verdict)
    return out
