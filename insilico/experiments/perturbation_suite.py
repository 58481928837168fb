"""The IT perturbation suite: nine qualitative benchmarks of primate IT perturbation results
(Schrimpf et al. 2024's nine, as the unmerged Brain-Score branch registers them), run on one
brain model; ``run_suite`` returns one table row per benchmark.

Sources, in-vivo values and offline substitutions: ``suites/perturbation.toml``. Every
benchmark reads the perturbed region (IT) with a decoder fitted on the intact model, applies
each perturbation to cached activations (exact, see ``suite_tasks``) and passes when its
effect is significant (p < 0.05) in the published direction. ``dose_scale=0`` runs the same
suite with every dose at zero: the null, which only a "no change" benchmark may pass.
"""

from __future__ import annotations

import time
import tomllib
from importlib import resources
from itertools import combinations

import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm.auto import tqdm

from insilico.analysis.selectivity import best_site
from insilico.experiments.suite_tasks import (
    ALPHA,
    LATERAL_SIZE_DEG,
    LATERAL_X_DEG,
    TARGET_ACCURACY,
    SuiteRig,
    decoder,
    detection_task,
    face_pairs,
    logistic_fit,
    mantel,
    mean_change,
    noisy_objects,
    p_correct,
    psychometric_shift,
    significant_correlation,
    task_dprime,
)
from perturb import Microstimulation, Muscimol, Optogenetic
from rigs.behavior import fit_decoder
from rigs.rig import Rig
from stimuli import concat, faces

#: signal levels of the noisy face images (Brain-Score's packaging of Afraz et al. 2006)
AFRAZ2006_LEVELS = (0.0, 0.15, 0.25, 0.4, 0.5, 0.8)
OBJECTS = ["astronaut", "camera", "chelsea", "coffee", "rocket"]


def references() -> list[dict]:
    """The nine benchmarks' sources and in-vivo values (``suites/perturbation.toml``)."""
    text = (resources.files("insilico.experiments") / "suites" / "perturbation.toml").read_text()
    return tomllib.loads(text)["benchmark"]


def _row(name: str, passed: bool, value: str, p: float, n: int, extra: str = "") -> dict:
    return {
        "benchmark": name,
        "verdict": "pass" if passed else "fail",
        "model_effect": value,
        "p": p,
        "n": n,
        "note": extra,
    }


def afraz2006(s: SuiteRig, rng: np.random.Generator) -> list[dict]:
    """Face detection in noise: the observer is trained to call a face a face at any signal
    above 0 and noise or a non-face 'non-face'; the psychometric curve is P('face') of the
    face images against their signal level, its 50 % point fitted (logit-linear)."""
    levels = np.array(AFRAZ2006_LEVELS)
    train = faces("train", 4.0, list(levels), seed=11)
    test = faces("test", 4.0, list(levels), seed=12)
    m = train.meta
    dec = decoder(s, train, np.where((m["category"] == "face") & (m["signal"] > 0), "face", "no"))
    face = int(np.flatnonzero(dec.classes == "face")[0])
    lv = test.meta["signal"].to_numpy()
    is_face = (test.meta["category"] == "face").to_numpy()

    def curve(rates) -> np.ndarray:
        pf = dec.probabilities(rates).numpy()[:, face]
        return np.array([pf[is_face & (lv == v)].mean() for v in levels])

    base = curve(s.rates(test))
    sites = s.sites(86, rng)
    shifts, dps = [], []
    for at, hemi, dp in sites:
        stim = Microstimulation(s.region, at, s.dose(50.0), 200.0, 50.0, hemisphere=hemi)
        shifts.append(psychometric_shift(levels, base, curve(s.rates(test, stim))))
        dps.append(dp)
    r, p = significant_correlation(np.array(dps), np.array(shifts))
    a0, b0 = logistic_fit(levels, base)
    note = f"intact 50 % point at signal {-a0 / b0:.3f}; mean shift {np.nanmean(shifts):+.4f}"
    return [
        _row(
            "Afraz2006-shift_significant", r > 0 and p < ALPHA, f"r = {r:+.2f}", p, len(sites), note
        )
    ]


def afraz2015(s: SuiteRig, rng: np.random.Generator) -> list[dict]:
    dec, contra, ipsi, level = detection_task(s)
    truth_c, truth_i = contra.meta["category"], ipsi.meta["category"]
    base_c = p_correct(dec, s.rates(contra), truth_c)
    base_i = p_correct(dec, s.rates(ipsi), truth_i)

    def change(stim, truth, base, perturbation) -> float:
        """Mean change of P(correct) over the images of ``stim`` under ``perturbation``."""
        return float((p_correct(dec, s.rates(stim, perturbation), truth) - base).mean())

    face_sites = s.sites(17, rng, "left", face=True)
    other_sites = s.sites(23, rng, "left", face=False)
    d_c, d_i, dps = [], [], []
    for at, hemi, dp in face_sites + other_sites:
        light = Optogenetic(s.region, at, s.dose(12.0), "suppress", hemisphere=hemi)
        d_c.append(change(contra, truth_c, base_c, light))
        d_i.append(change(ipsi, truth_i, base_i, light))
        dps.append(dp)
    nf = len(face_sites)
    note = (
        f"task at signal {level}; intact contra {base_c.mean():.3f}, ipsi "
        f"{base_i.mean():.3f}; {nf} face-selective sites found"
    )
    mc, pc = mean_change(np.array(d_c[:nf]))
    mi, pi = mean_change(np.array(d_i[:nf]))
    r, pr = significant_correlation(np.array(dps), np.array(d_c))
    rows = [
        _row(
            "Afraz2015.optogenetics-contra_accuracy_significant",
            mc < 0 and pc < ALPHA,
            f"{100 * mc:+.2f} points",
            pc,
            nf,
            note,
        ),
        _row(
            "Afraz2015.optogenetics-ipsi_accuracy_insignificant",
            pi >= ALPHA,
            f"{100 * mi:+.2f} points",
            pi,
            nf,
            note,
        ),
        _row(
            "Afraz2015.optogenetics-delta_accuracy_correlated",
            r < 0 and pr < ALPHA,
            f"r = {r:+.2f}",
            pr,
            len(dps),
            note,
        ),
    ]
    # muscimol: 6 face-selective and 6 other sites
    face6 = sorted(face_sites, key=lambda t: -t[2])[:6]
    deltas = {}
    for label, group in (("face", face6), ("other", other_sites[:6])):
        injections = [Muscimol(s.region, at, s.dose(1.0), hemisphere=h) for at, h, _ in group]
        deltas[label] = np.array([change(contra, truth_c, base_c, inj) for inj in injections])
    fa, ot = deltas["face"], deltas["other"]
    ok = len(fa) >= 2 and len(ot) >= 2 and not np.allclose(np.r_[fa, ot], fa[0])
    p = float(stats.ttest_ind(fa, ot, equal_var=False).pvalue) if ok else 1.0
    rows.append(
        _row(
            "Afraz2015.muscimol-delta_accuracy_significant",
            p < ALPHA and fa.mean() < 0 if len(fa) else False,
            f"face {100 * fa.mean():+.2f}, other {100 * ot.mean():+.2f} points"
            if len(fa) and len(ot)
            else "too few face-selective or other sites",
            p,
            len(fa) + len(ot),
            note,
        )
    )
    return rows


def moeller2017(s: SuiteRig, rng: np.random.Generator) -> list[dict]:
    """Same/different identity: a logistic observer on the correlation of the two faces' IT
    population responses (fitted on intact training pairs); the stimulation acts while the
    second face is shown (assumed from the paper's design; its protocol figure was not
    checked here)."""

    def similarity(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """The observer's decision variable: correlation of the two population responses."""
        z1 = r1 - r1.mean(1, keepdim=True)
        z2 = r2 - r2.mean(1, keepdim=True)
        return ((z1 * z2).sum(1) / (z1.norm(dim=1) * z2.norm(dim=1)).clamp(min=1e-9))[:, None]

    def observer():
        f1, f2, y = face_pairs(s, "train", 600, 0)
        feats = similarity(s.rates_of(f1), s.rates_of(f2))
        return fit_decoder(feats, y, s.region, s.model.name, folds=5), face_pairs(s, "test", 500, 1)

    dec, (t1, t2, ty) = s.memo("moeller2017", observer)
    # the face-patch centre: highest mean face d' within 1 mm, left hemisphere
    centre, purity = best_site(s.table, s.dprime(), "left", 1.0)
    stim = Microstimulation(s.region, centre, s.dose(300.0), 150.0, 200.0, hemisphere="left")
    r1 = s.rates_of(t1)  # the first face is never stimulated
    base = p_correct(dec, similarity(r1, s.rates_of(t2)), ty)
    pert = p_correct(dec, similarity(r1, s.rates_of(t2, stim)), ty)

    out = {}
    for label in ("same", "diff"):
        k = ty == label
        d = pert[k] - base[k]
        p = float(stats.ttest_rel(pert[k], base[k]).pvalue) if not np.allclose(d, 0) else 1.0
        out[label] = (base[k].mean(), pert[k].mean(), p)
    ok = (
        out["same"][1] < out["same"][0]
        and out["same"][2] < ALPHA
        and out["diff"][1] > out["diff"][0]
        and out["diff"][2] < ALPHA
    )
    value = (
        f"same {100 * out['same'][0]:.1f} -> {100 * out['same'][1]:.1f} %, different "
        f"{100 * out['diff'][0]:.1f} -> {100 * out['diff'][1]:.1f} %"
    )
    # specificity (not part of the verdict, as in Brain-Score): the same stimulation at 10
    # random left-hemisphere sites, the drop of 'same' accuracy
    same = ty == "same"
    drops = []
    for at, hemi, _ in s.sites(10, rng, "left"):
        ctrl = Microstimulation(s.region, at, s.dose(300.0), 150.0, 200.0, hemisphere=hemi)
        p_ctrl = p_correct(dec, similarity(r1, s.rates_of(t2, ctrl)), ty)
        drops.append(base[same].mean() - p_ctrl[same].mean())
    drop = base[same].mean() - pert[same].mean()
    note = (
        f"intact {100 * (base > 0.5).mean():.0f} % correct; "
        f"patch centre {centre[0]:.2f}, {centre[1]:.2f} mm, purity {purity:.2f}; 'same' "
        f"drop {100 * drop:.1f} points vs {100 * np.median(drops):.1f} (median of 10 random "
        f"sites; larger than {sum(d < drop for d in drops)}/10)"
    )
    return [
        _row(
            "Moeller2017.experiment1-same_decrease_different_increase",
            ok,
            value,
            max(out["same"][2], out["diff"][2]),
            len(ty),
            note,
        )
    ]


def rajalingham2019(s: SuiteRig, rng: np.random.Generator) -> list[dict]:
    def objs(x: float, half: str, signal: float, seed: int):
        return noisy_objects(OBJECTS, 24, LATERAL_SIZE_DEG, (x, 0.0), signal, half, seed)

    labels_of = np.repeat(OBJECTS, 24)
    tasks = list(combinations(range(len(OBJECTS)), 2))

    def task_dprimes(probs: np.ndarray) -> np.ndarray:
        out = []
        for a, b in tasks:
            pa = probs[labels_of == OBJECTS[a]][:, [a, b]]
            pb = probs[labels_of == OBJECTS[b]][:, [a, b]]
            out.append(task_dprime(pa[:, 0] / (pa.sum(1) + 1e-12), pb[:, 0] / (pb.sum(1) + 1e-12)))
        return np.array(out)

    def calibrated():
        """Decoder, signal level, test sets and intact task d's (fitted once)."""
        signals = (0.15, 0.25, 0.35, 0.5, 0.7)
        train = concat(
            [
                objs(x, "left", sg, 60 + 7 * k)
                for k, (x, sg) in enumerate(
                    (x, sg) for x in (LATERAL_X_DEG, -LATERAL_X_DEG) for sg in signals
                )
            ]
        )
        dec = decoder(s, train, np.tile(labels_of, 2 * len(signals)))
        accs = {
            sg: p_correct(dec, s.rates(objs(LATERAL_X_DEG, "left", sg, 90)), labels_of).mean()
            for sg in signals
        }
        signal = min(signals, key=lambda v: abs(accs[v] - TARGET_ACCURACY))
        test = {
            side: objs(x, "right", signal, 95)
            for side, x in (("right", LATERAL_X_DEG), ("left", -LATERAL_X_DEG))
        }
        cls = [list(dec.classes).index(o) for o in OBJECTS]
        probs = {k: dec.probabilities(s.rates(v)).numpy()[:, cls] for k, v in test.items()}
        return dec, cls, signal, accs[signal], test, {k: task_dprimes(v) for k, v in probs.items()}

    dec, cls, signal, acc, test, base = s.memo("rajalingham2019", calibrated)
    sites = s.sites(20, rng, "left") + s.sites(20, rng, "right")
    contra, ipsi, hemis, xy = [], [], [], []
    for at, hemi, _ in sites:
        inj = Muscimol(s.region, at, s.dose(1.0), hemisphere=hemi)
        field = {"left": "right", "right": "left"}[hemi]  # the contralateral hemifield
        other = "left" if field == "right" else "right"
        for side, store in ((field, contra), (other, ipsi)):
            probs = dec.probabilities(s.rates(test[side], inj)).numpy()[:, cls]
            store.append(task_dprimes(probs) - base[side])
        hemis.append(hemi)
        xy.append(at)
    contra, ipsi = np.array(contra), np.array(ipsi)
    glob = (contra + ipsi).mean(1) / 2
    mg, pg = mean_change(glob)
    ml, pl = mean_change(contra.mean(1) - ipsi.mean(1))
    rs, ps = [], []
    for hemi in ("left", "right"):
        k = np.flatnonzero(np.array(hemis) == hemi)
        pts = np.array(xy)[k]
        dist = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1))
        with np.errstate(invalid="ignore", divide="ignore"):  # a site without effect: 0
            sim = np.nan_to_num(np.corrcoef(contra[k]))
        r, p = mantel(dist, sim, seed=len(k))
        rs.append(r)
        ps.append(p)
    r_sp, p_sp = float(np.mean(rs)), float(min(1.0, 2 * min(ps)))  # Bonferroni over sheets
    note = f"objects at signal {signal} (intact accuracy {acc:.3f}); {len(sites)} sites"
    return [
        _row(
            "Rajalingham2019-global_deficits_significant",
            mg < 0 and pg < ALPHA,
            f"delta d' {mg:+.3f}",
            pg,
            len(sites),
            note,
        ),
        _row(
            "Rajalingham2019-lateral_deficit_difference",
            ml < 0 and pl < ALPHA,
            f"contra {contra.mean():+.3f} vs ipsi {ipsi.mean():+.3f}",
            pl,
            len(sites),
            note,
        ),
        _row(
            "Rajalingham2019-spatial_correlation_significant",
            r_sp < 0 and all(r < 0 for r in rs) and p_sp < ALPHA,
            f"r(distance, similarity) = {rs[0]:+.2f} / {rs[1]:+.2f}",
            p_sp,
            len(sites),
            note,
        ),
    ]


BENCHMARKS = {
    "Afraz2006": afraz2006,
    "Afraz2015": afraz2015,
    "Moeller2017": moeller2017,
    "Rajalingham2019": rajalingham2019,
}


def suite_rig(rig: Rig, dose_scale: float = 1.0, only: list[str] | None = None) -> SuiteRig:
    """The suite's view of ``rig`` (IT activations cached), after checking ``only`` names
    papers of ``BENCHMARKS`` and the model has an IT sheet (one-line errors)."""
    unknown = sorted(set(only or ()) - set(BENCHMARKS))
    if unknown:
        raise ValueError(
            f"unknown benchmark {unknown[0]!r}; expected one of {', '.join(BENCHMARKS)}"
        )
    if "IT" not in rig.model.regions:
        raise ValueError(f"model {rig.model.name!r} has no IT sheet; the suite perturbs IT")
    return SuiteRig(rig, "IT", dose_scale)


def suite_table(
    s: SuiteRig, seed: int = 1, only: list[str] | None = None, progress: bool = False
) -> pd.DataFrame:
    """One draw of sites (``seed``) of the benchmarks on ``s``: one row per benchmark with the
    verdict, the model's effect, its p, the in-vivo value beside it and the seconds taken."""
    refs = {r["name"]: r for r in references()}
    rows = []
    for name in tqdm(only or list(BENCHMARKS), desc="perturbation suite", disable=not progress):
        t0 = time.perf_counter()
        got = BENCHMARKS[name](s, np.random.default_rng(seed))
        for row in got:
            row["seconds"] = (time.perf_counter() - t0) / len(got)
        rows += got
    table = pd.DataFrame(rows)
    table.insert(0, "model", s.model.name)
    table.insert(1, "arrangement", s.model.region_units(s.region).arrangement)
    table["in_vivo"] = [refs[b]["in_vivo"] for b in table["benchmark"]]
    table["prediction"] = [refs[b]["prediction"] for b in table["benchmark"]]
    return table


def run_suite(
    rig: Rig,
    dose_scale: float = 1.0,
    seed: int = 1,
    progress: bool = True,
    only: list[str] | None = None,
) -> pd.DataFrame:
    """Run the nine benchmarks (``only``: a subset of papers, keys of ``BENCHMARKS``) on
    ``rig``'s model for one draw of sites; see :func:`suite_table`. For verdicts over several
    draws against a null sheet use ``insilico.experiments.suite_verdicts.run_draws``."""
    return suite_table(suite_rig(rig, dose_scale, only), seed, only, progress)
