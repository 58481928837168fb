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
from insilico.analysis import orientation_selectivity, tuning_curve
from insilico.experiments.spec import ExperimentError, Spec, load, parse
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


def _sf_curves(rec: xr.DataArray, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if "sf_cpd" not in rec.coords or len(np.unique(rec.sf_cpd.values)) < 3:
        raise ExperimentError(f"metric {metric} needs stimuli of >= 3 spatial frequencies (sf_cpd)")
    c = tuning_curve(rec, "sf_cpd")["mean"]
    v = c.values  # sf x neuroid
    peak = v.max(axis=0)
    return c["sf_cpd"].values, v, peak > 0


def _sf_selectivity(rec: xr.DataArray) -> np.ndarray:
    """Spatial-frequency selectivity per responsive neuroid: 1 - least / largest response
    over the tested frequencies (0 = flat, 1 = silent at some frequency)."""
    _, v, live = _sf_curves(rec, "sf_selectivity")
    return 1 - v.min(axis=0)[live] / v.max(axis=0)[live]


def _preferred_sf(rec: xr.DataArray) -> np.ndarray:
    """Preferred spatial frequency (cycles/deg) per responsive neuroid, among those tested."""
    sf, v, live = _sf_curves(rec, "preferred_sf_cpd")
    return sf[v.argmax(axis=0)][live].astype(float)


def _suppression(rec: xr.DataArray) -> np.ndarray:
    """Surround suppression per neuroid: 1 - response at the largest size / peak response."""
    if "size_deg" not in rec.coords or len(np.unique(rec.size_deg.values)) < 3:
        raise ExperimentError("metric suppression_index needs stimuli of >= 3 sizes (size_deg)")
    curves = tuning_curve(rec, "size_deg")["mean"].values
    peak = curves.max(axis=0)
    live = peak > 0
    return 1 - curves[-1, live] / peak[live]


def _rf_error(rec: xr.DataArray) -> np.ndarray:
    """Distance (deg) between each neuroid's RF centre mapped by sparse noise (response-
    weighted centroid of probe positions, relative to blank) and its unit-table RF centre."""
    r = rec.mean(("time_bin",))
    x = r.position_x_deg.values
    y = r.position_y_deg.values
    v = r.values  # presentations x neuroids
    base = np.median(v, axis=0)
    w = np.abs(v - base)
    total = w.sum(axis=0)
    live = total > 0
    cx = (w * x[:, None]).sum(0) / np.where(live, total, 1)
    cy = (w * y[:, None]).sum(0) / np.where(live, total, 1)
    err = np.hypot(cx - r.rf_x_deg.values, cy - r.rf_y_deg.values)
    return err[live]


def _category_dprime(rec: xr.DataArray, labels: str) -> np.ndarray:
    """|d'| per neuroid between the stimuli of the first label and all others."""
    if labels not in rec.coords:
        raise ExperimentError(f"metric category_dprime needs the stimulus parameter {labels!r}")
    r = rec.mean("time_bin").values
    lab_values = _strings(rec[labels].values)
    first = sorted(set(lab_values))[0]
    a, b = r[lab_values == first], r[lab_values != first]
    sd = np.sqrt(0.5 * (a.var(0) + b.var(0))) + 1e-6
    return np.abs(a.mean(0) - b.mean(0)) / sd


RECORD_METRICS = {
    "mean_rate": (_per_stimulus_rate, np.mean, "spikes/s"),
    "median_osi": (_osi, np.median, "OSI"),
    "sf_selectivity": (_sf_selectivity, np.median, "index"),
    "preferred_sf_cpd": (_preferred_sf, np.median, "cycles/deg"),
    "suppression_index": (_suppression, np.median, "fraction"),
    "rf_error_deg": (_rf_error, np.median, "deg"),
}


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
        display = lab.Display(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in s.display.items()}
        )
        rig = lab.Rig(model, display=display, fixation_deg=tuple(s.rig.get("fixation_deg", (0, 0))))
        implants = {}
        for item in s.implants:
            kw = {
                k: tuple(v) if isinstance(v, list) else v
                for k, v in item.items()
                if k not in ("name", "region", "n_sites")
            }
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
            try:
                stimuli[item["name"]] = getattr(stim_mod, item["kind"])(**kw)
            except TypeError as err:
                raise ExperimentError(f"{s.source}: stimuli.{item['name']}: {err}") from None
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
                        kw["at_mm"] = perturb.preferred_site(
                            rig,
                            kw["region"],
                            stimuli[pref["stimuli"]],
                            pref["labels"],
                            pref["prefer"],
                            radius_mm=float(pref.get("radius_mm", 1.0)),
                        )
                    except (ValueError, KeyError) as err:
                        raise ExperimentError(
                            f"{s.source}: condition.{item['name']}: at_mm: {err}"
                        ) from None
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
            eff = perturb.compare(
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
                agg = RECORD_METRICS.get(name, (None, np.mean, ""))[1]
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
        if out.exists() and any(out.iterdir()) and not overwrite and self.spec.sweep is None:
            raise FileExistsError(
                f"output folder {str(out)!r} is not empty; pass overwrite=True (CLI: --overwrite)"
            )
        out.mkdir(parents=True, exist_ok=True)
        if overwrite and (out / "sweep.zarr").exists():  # else a sweep resumes its store
            shutil.rmtree(out / "sweep.zarr")
        torch.manual_seed(self.spec.seed)
        env = self.build()
        results: dict[str, dict[str, MeasureOutput]] = {}
        from tqdm.auto import tqdm

        for m in tqdm(self.spec.measures, desc=self.spec.name, disable=not progress):
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
        predictions = [evaluate(p, results, seed=self.spec.seed) for p in self.spec.predictions]
        (out / "predictions.json").write_text(json.dumps(predictions, indent=2, default=float))
        res = Results(self.spec, out, results, predictions, time.perf_counter() - t0)
        res.conditions = {c: [repr(p) for p in ps] for c, ps in env["conditions"].items()}
        from insilico.experiments.report import write_report

        res.figures = write_report(res, sweep)
        return res


def _store_results(store: Path, spec: Spec, results: dict[str, dict[str, MeasureOutput]]) -> None:
    """One zarr store: a group per measure and condition with its metrics (per item), the
    recording (record measures) or choice probabilities (behave measures)."""
    from recordings.store import _prepare

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
                data = _prepare(mo.data)
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


def evaluate(
    p: dict[str, Any], results: dict[str, dict[str, MeasureOutput]], seed: int = 0
) -> dict:
    """Supported / falsified / inconclusive, from the 95 % bootstrap CI of the statistic
    (a difference against ``versus`` when given, paired over items) and, for ``compare``
    measures, the rank of the effect among matched random controls."""
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
    }
    if metric not in mo.values:
        raise ExperimentError(
            f"prediction {p['name']!r}: metric {metric!r} is not available for "
            f"measure {p['measure']!r} (available: {', '.join(mo.values)})"
        )
    stat = RECORD_METRICS.get(metric, (None, np.mean, ""))[1]
    if isinstance(mo.data, perturb.Effect):
        eff = mo.data
        value, (lo, hi) = eff.effect, eff.ci
        out.update(
            control_effects_mean=float(np.mean(eff.control_effects))
            if len(eff.control_effects)
            else None,
            p_directional=eff.p_directional,
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
        diff = a - b
        value = float(stat(diff)) if stat is not np.median else float(np.median(a) - np.median(b))
        lo, hi = _bootstrap(diff, np.mean if stat is np.mean else stat, seed)
        out.update(versus=p["versus"], value_condition=float(stat(a)), value_versus=float(stat(b)))
    else:
        vals = mo.values[metric]
        value = float(stat(vals))
        lo, hi = _bootstrap(vals, stat, seed)
    verdict = _verdict(p["_op"], p["_threshold"], lo, hi)
    if "beats_controls" in p and isinstance(mo.data, perturb.Effect):
        needed = 1 - float(p["beats_controls"])
        out["controls_criterion"] = f"directional p <= {needed:.3g}"
        if verdict == "supported" and mo.data.p_directional > needed:
            verdict = "inconclusive" if mo.data.p_directional < 0.5 else "falsified"
    out.update(value=float(value), ci=[float(lo), float(hi)], verdict=verdict)
    return out
