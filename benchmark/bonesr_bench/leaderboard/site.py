"""The leaderboard page: a static site rendered from the committed result JSONs alone.

``build(results_dir, out_dir)`` reads every ``*.json`` in ``results_dir``, keeps the results that
validate against the schema, are scored (or are the HR/LR reference rows) and were scored on the
leaderboard's split (the canonical fingerprint of its split when one is committed, else the most
common one; a rebuild that ``data verify`` calls comparable counts as that split), lists every
other file as excluded with its reason, and writes ``index.html``, one ``entries/<entry>.html``
per entry, ``data.json`` (what the page shows) and ``assets/`` (the
page's script and style, and plotly.js itself: the site needs no network). Figures are plotly
figure specifications built here as plain dicts and drawn in the browser.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np

from bonesr_bench import __version__
from bonesr_bench.evaluation import result
from bonesr_bench.leaderboard import load_results, table_one
from bonesr_bench.models.sandbox import describe, is_confined
from bonesr_bench.params import PARAMS as REGISTRY
from bonesr_bench.params import SCORES, SHOWN_KEYS

__all__ = ["BuildReport", "build", "rank_intervals"]

TEMPLATES = files("bonesr_bench") / "data" / "site"
REFERENCE_LABELS = {"hr-scan": "HR scan", "lr-scan": "LR scan"}
#: Per-specimen comparison figures shown at once (the others through the selector).
SHOWN_PARAMS = SHOWN_KEYS
#: Every parameter of a result: (key, label, unit, digits shown), from the registry.
PARAMS = tuple((k, p.label, p.unit, p.digits) for k, p in REGISTRY.items())
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]


@dataclass
class BuildReport:
    out: Path
    entries: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    fingerprint: str | None = None


# ----------------------------------------------------------------------------------------------
# Numbers


def _per_specimen(res: dict, key: str) -> dict[str, float]:
    out = {}
    for row in res["specimens"]:
        v = row.get(key)
        if v is not None and np.isfinite(v):
            out[row["specimen"]] = float(v)
    return out


def rank_intervals(values: dict[str, dict[str, float]], *, higher_is_better: bool,
                   n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Bootstrap rank intervals over specimens (resampled together for every entry, so the
    comparison is paired). ``values[entry][specimen]``. Returns per entry: rank of the mean,
    (lo, hi) rank interval, and whether its paired difference with the leader's is within the
    interval of zero (cannot be told apart from the leader)."""
    entries = list(values)
    specimens = sorted(set.intersection(*(set(v) for v in values.values()))) if values else []
    if not entries or not specimens:
        return {}
    m = np.array([[values[e][s] for s in specimens] for e in entries])  # (entries, specimens)
    sign = -1.0 if higher_is_better else 1.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(specimens), (n_resamples, len(specimens)))
    means = m[:, idx].mean(axis=2)  # (entries, resamples)
    ranks = (sign * means).argsort(axis=0).argsort(axis=0) + 1
    tail = (1 - level) / 2
    point = (sign * m.mean(1)).argsort().argsort() + 1
    leader = int(np.argmin(sign * m.mean(1)))
    out = {}
    for i, e in enumerate(entries):
        diff = sign * (means[i] - means[leader])
        lo_d, hi_d = np.quantile(diff, [tail, 1 - tail])
        out[e] = {"rank": int(point[i]),
                  "interval": [int(np.floor(np.quantile(ranks[i], tail))),
                               int(np.ceil(np.quantile(ranks[i], 1 - tail)))],
                  "tied_with_leader": bool(i == leader or lo_d <= 0 <= hi_d),
                  "leader": bool(i == leader)}
    return out


def _mean(agg: dict | None, key: str):
    s = (agg or {}).get(key) or {}
    return s.get("mean")


def _ci(agg: dict | None, key: str):
    s = (agg or {}).get(key) or {}
    return s.get("ci95", [None, None])


def _row(res: dict) -> dict:
    agg = res["aggregates"]
    model = res.get("model") or {}
    timings = res.get("timings") or {}
    params = {}
    for key, *_ in PARAMS:
        p = agg["params"][key]
        params[key] = {"value": p["entry"]["mean"], "sd": p["entry"]["sd"],
                       "rel_err_vs_hr": (p.get("entry_rel_err_vs_hr") or {}).get("mean"),
                       "rel_err_vs_truth": (p.get("entry_rel_err_vs_truth") or {}).get("mean")}
    return {
        "entry": res["entry"], "kind": "reference" if res["status"] == "reference" else "entry",
        "label": REFERENCE_LABELS.get(res["entry"], res["entry"]),
        "name": model.get("name") or REFERENCE_LABELS.get(res["entry"], res["entry"]),
        "psnr_db": _mean(agg, "psnr_db"), "psnr_ci": _ci(agg, "psnr_db"),
        "ssim": _mean(agg, "ssim"), "ssim_ci": _ci(agg, "ssim"),
        "bio_err_vs_hr": _mean(agg, "bio_err_vs_hr"), "bio_ci": _ci(agg, "bio_err_vs_hr"),
        "bio_err_vs_truth": _mean(agg, "bio_err_vs_truth"),
        "bio_truth_ci": _ci(agg, "bio_err_vs_truth"),
        "verdict": res["summary"]["verdict"], "sentence": res["summary"]["sentence"],
        "n_parameters": model.get("n_parameters"),
        "slices_per_s": timings.get("slices_per_s_model"),
        "device": (res.get("run") or {}).get("device"),
        "created": res["created"][:10], "version": res["code"]["bonesr_bench"],
        "commit": (res["code"].get("git_commit") or "")[:10], "params": params,
        # what held the model's worker (references ran no model)
        "sandbox": None if res["status"] == "reference" else describe(
            (res.get("run") or {}).get("sandbox")),
        "confined": res["status"] == "reference" or is_confined(
            (res.get("run") or {}).get("sandbox")),
    }


# ----------------------------------------------------------------------------------------------
# Figures (plotly specifications as plain dicts)


#: Colours by entry, the same in every figure of a build (set by :func:`build`).
_PALETTE: dict[str, str] = {}
FIXED_COLOURS = {"hr-scan": "#222222", "lr-scan": "#d62728"}


def _colour(entry: str) -> str:
    if entry in FIXED_COLOURS:
        return FIXED_COLOURS[entry]
    if entry not in _PALETTE:
        free = [c for c in COLOURS if c not in FIXED_COLOURS.values()]
        _PALETTE[entry] = free[len(_PALETTE) % len(free)]
    return _PALETTE[entry]


#: The gap chart's height and margins (px); its labels are placed for the narrowest plotting area
#: it is drawn in (px; a wider one only moves them further apart) and plotly's 12 px font.
GAP_HEIGHT, GAP_MARGIN, GAP_MIN_WIDTH = 460, {"t": 30, "b": 80}, 640
LABEL_CHAR_PX, LABEL_HEIGHT_PX, LABEL_STEP_PX = 7.5, 18, 20


def _label_offsets(points: list[tuple[float, float, str]], x_range, y_range,
                   fixed: list[tuple[float, float, float, float]]) -> list[int]:
    """Per point (x, y, label) in data units, its label's vertical offset in pixels (positive is
    above the point): the nearest of ±20, ±40, ... px at which the label's box meets no label
    placed before it, no other point's marker and none of the ``fixed`` boxes (pixels from the
    plotting area's top left corner), in a plotting area of ``GAP_MIN_WIDTH`` × (height less
    margins) px (else the offset where it meets the fewest)."""
    width = GAP_MIN_WIDTH
    height = GAP_HEIGHT - GAP_MARGIN["t"] - GAP_MARGIN["b"]

    def px(x, y):
        return ((x - x_range[0]) / (x_range[1] - x_range[0]) * width,
                (1 - (y - y_range[0]) / (y_range[1] - y_range[0])) * height)

    centres = [px(x, y) for x, y, _ in points]
    taken = list(fixed)
    out = [0] * len(points)
    # lowest points first: their labels go just above them, the ones above stack higher
    for i in sorted(range(len(points)), key=lambda i: -centres[i][1]):
        cx, cy = centres[i]
        half = (LABEL_CHAR_PX * len(points[i][2]) + 6) / 2
        markers = [(mx - 7, my - 7, mx + 7, my + 7) for j, (mx, my) in enumerate(centres)
                   if j != i]
        best = None
        for k in range(1, 13):
            for d in (k * LABEL_STEP_PX, -k * LABEL_STEP_PX):
                box = (cx - half, cy - d - LABEL_HEIGHT_PX / 2, cx + half,
                       cy - d + LABEL_HEIGHT_PX / 2)
                hits = sum(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                           for b in taken + markers)
                if best is None or hits < best[0]:
                    best = (hits, d, box)
                if hits == 0:
                    break
            if best[0] == 0:
                break
        out[i] = best[1]
        taken.append(best[2])
    return out


def _gap_figure(rows: list[dict], lr_err: float | None, metric: str) -> dict:
    key, ci, title = {"psnr": ("psnr_db", "psnr_ci", "PSNR (dB)"),
                      "ssim": ("ssim", "ssim_ci", "SSIM")}[metric]
    traces, points = [], []
    xs = [r[key] for r in rows if r[key] is not None]
    for r in rows:
        if r["kind"] != "entry" or r[key] is None or r["bio_err_vs_hr"] is None:
            continue
        x, y = r[key], 100 * r["bio_err_vs_hr"]
        points.append((x, y, r["label"], _colour(r["entry"])))
        traces.append({
            "type": "scatter", "mode": "markers", "name": r["label"], "x": [x], "y": [y],
            "marker": {"size": 12, "color": _colour(r["entry"])},
            "error_x": {"type": "data", "symmetric": False, "array": [r[ci][1] - x],
                        "arrayminus": [x - r[ci][0]]},
            "error_y": {"type": "data", "symmetric": False,
                        "array": [100 * r["bio_ci"][1] - y],
                        "arrayminus": [y - 100 * r["bio_ci"][0]]},
            "hovertemplate": f"{r['label']}<br>{title} %{{x:.3f}}<br>biological error %{{y:.1f}} %"
                             "<extra></extra>"})
    lo, hi = (min(xs), max(xs)) if xs else (0, 1)
    pad = 0.15 * (hi - lo) if hi > lo else 0.5 if metric == "psnr" else 0.02
    x0, x1 = lo - pad, hi + pad
    ymax = max([1.0] + [100 * (r["bio_ci"][1] or 0) * 1.1 for r in rows
                        if r["kind"] == "entry" and r["bio_ci"][1] is not None])
    shapes, annotations, fixed = [], [], []
    if lr_err is not None:
        y_lr = 100 * lr_err
        ymax = max(ymax, y_lr * 1.6)
        caption = "looks better, is not biologically better than the LR scan"
        lr_label = f"LR scan: {y_lr:.1f} %"
        shapes = [
            {"type": "rect", "xref": "x", "yref": "y", "x0": x0, "x1": x1, "y0": y_lr,
             "y1": ymax, "fillcolor": "rgba(214, 39, 40, 0.10)", "line": {"width": 0},
             "layer": "below"},
            {"type": "line", "xref": "x", "yref": "y", "x0": x0, "x1": x1, "y0": y_lr,
             "y1": y_lr, "line": {"color": "#d62728", "dash": "dash", "width": 2}}]
        annotations = [
            {"x": x0, "y": ymax, "xref": "x", "yref": "y", "xanchor": "left", "yanchor": "top",
             "showarrow": False, "font": {"color": "#a31515"}, "text": caption},
            {"x": x1, "y": y_lr, "xref": "x", "yref": "y", "xanchor": "right",
             "yanchor": "bottom", "showarrow": False, "font": {"color": "#d62728"},
             "text": lr_label}]
        height = GAP_HEIGHT - GAP_MARGIN["t"] - GAP_MARGIN["b"]
        lr_px = (1 - y_lr / ymax) * height
        fixed = [(0, 0, LABEL_CHAR_PX * len(caption) + 6, LABEL_HEIGHT_PX),  # the captions
                 (GAP_MIN_WIDTH - LABEL_CHAR_PX * len(lr_label) - 6, lr_px - LABEL_HEIGHT_PX,
                  GAP_MIN_WIDTH, lr_px + 2), (0, lr_px - 1, GAP_MIN_WIDTH, lr_px + 1)]  # line
    # each entry's name on a leader line, where it meets no other name, marker or caption
    offsets = _label_offsets([p[:3] for p in points], (x0, x1), (0, ymax), fixed)
    for (x, y, label, colour), d in zip(points, offsets, strict=True):
        annotations.append({
            "x": x, "y": y, "xref": "x", "yref": "y", "text": label, "showarrow": True,
            "ax": 0, "ay": -d, "arrowhead": 0, "arrowwidth": 1, "arrowcolor": colour,
            "standoff": 7, "font": {"color": colour}, "bgcolor": "rgba(255, 255, 255, 0.85)"})
    return {"data": traces, "layout": {
        "xaxis": {"title": {"text": f"{title} (higher looks better)"}, "range": [x0, x1]},
        "yaxis": {"title": {"text": "biological error vs HR (%), lower is better"},
                  "range": [0, ymax]},
        "shapes": shapes, "annotations": annotations, "showlegend": False,
        "margin": GAP_MARGIN, "height": GAP_HEIGHT}}


def _box_figure(results: list[dict], key: str, title: str) -> dict:
    traces = []
    for res in results:
        vals = [row[key] for row in res["specimens"] if row.get(key) is not None]
        if vals:
            traces.append({"type": "box", "name": REFERENCE_LABELS.get(res["entry"],
                                                                      res["entry"]),
                           "y": vals, "boxpoints": "all", "jitter": 0.3,
                           "marker": {"color": _colour(res["entry"])}})
    return {"data": traces, "layout": {"yaxis": {"title": {"text": title}}, "showlegend": False,
                                       "margin": {"t": 30}, "height": 360}}


def _versus_hr_figure(results: list[dict], key: str, label: str) -> dict:
    traces, lo, hi = [], np.inf, -np.inf
    for res in results:
        x, y, names = [], [], []
        for row in res["specimens"]:
            hr = res["references"].get(row["specimen"], {}).get("hr", {}).get(key)
            v = row["values"].get(key)
            if hr is None or v is None:
                continue
            x.append(hr)
            y.append(v)
            names.append(row["specimen"])
        if x:
            lo, hi = min(lo, *x, *y), max(hi, *x, *y)
            traces.append({"type": "scatter", "mode": "markers",
                           "name": REFERENCE_LABELS.get(res["entry"], res["entry"]), "x": x,
                           "y": y, "text": names,
                           "marker": {"color": _colour(res["entry"]), "size": 8},
                           "hovertemplate": "%{text}: HR %{x:.3g}, entry %{y:.3g}"})
    if np.isfinite(lo):
        traces.append({"type": "scatter", "mode": "lines", "name": "y = x", "x": [lo, hi],
                       "y": [lo, hi], "line": {"color": "#888", "dash": "dot"},
                       "hoverinfo": "skip"})
    # the title below the modebar (which sits in the top 25 px), the legend below the x axis's
    # title (a bottom margin that holds ticks, axis title and two rows of legend)
    return {"data": traces, "layout": {
        "title": {"text": label, "yref": "paper", "y": 1, "yanchor": "bottom", "pad": {"b": 8}},
        "xaxis": {"title": {"text": f"HR {label}"}},
        "yaxis": {"title": {"text": f"entry {label}"}}, "height": 430,
        "margin": {"t": 58, "b": 110, "r": 24},
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "yref": "container", "y": 0,
                   "yanchor": "bottom"}}}


def _rank_figure(ranks: dict, rows_by_entry: dict) -> dict:
    entries = sorted(ranks, key=lambda e: ranks[e]["rank"])
    return {"data": [{
        "type": "scatter", "mode": "markers", "x": [ranks[e]["rank"] for e in entries],
        "y": [rows_by_entry[e]["label"] for e in entries],
        "error_x": {"type": "data", "symmetric": False,
                    "array": [ranks[e]["interval"][1] - ranks[e]["rank"] for e in entries],
                    "arrayminus": [ranks[e]["rank"] - ranks[e]["interval"][0] for e in entries]},
        "marker": {"size": 12, "color": ["#2ca02c" if ranks[e]["tied_with_leader"] else "#555"
                                         for e in entries]}}],
        # a row of 46 px per entry (two at least), margins that just hold the axis and the
        # modebar (the top 25 px)
        "layout": {"xaxis": {"title": {"text": "rank by biological error (95 % bootstrap "
                                                "interval)", "standoff": 8}, "dtick": 1,
                             "range": [0.6, len(entries) + 0.4]},
                   "yaxis": {"autorange": "reversed", "automargin": True},
                   "height": 80 + 46 * max(2, len(entries)),
                   "margin": {"t": 30, "b": 50, "r": 24}}}


def _entry_figures(res: dict) -> dict:
    names = [row["specimen"] for row in res["specimens"]]
    bio = [None if row.get("bio_err_vs_hr") is None else 100 * row["bio_err_vs_hr"]
           for row in res["specimens"]]
    lr = [None if row.get("lr_bio_err_vs_hr") is None else 100 * row["lr_bio_err_vs_hr"]
          for row in res["specimens"]]
    figs = {"bio": {"data": [
        {"type": "bar", "name": res["entry"], "x": names, "y": bio,
         "marker": {"color": _colour(res["entry"])}},
        {"type": "bar", "name": "LR scan", "x": names, "y": lr, "marker": {"color": "#d62728"}}],
        "layout": {"barmode": "group", "yaxis": {"title": {"text": "biological error vs HR (%)"}},
                   "height": 340, "margin": {"t": 20}}}}
    rel = []
    for key, label, _unit, _d in PARAMS:
        vals = [100 * row["rel_err_vs_hr"][key] for row in res["specimens"]
                if row["rel_err_vs_hr"].get(key) is not None]
        if vals:
            rel.append({"type": "box", "name": label, "y": vals, "boxpoints": "all",
                        "marker": {"color": COLOURS[0]}})
    figs["rel"] = {"data": rel, "layout": {"yaxis": {"title": {"text": "relative error vs HR "
                                                                       "(%)"}},
                                           "showlegend": False, "height": 360,
                                           "margin": {"t": 20}}}
    if res["specimens"][0].get("psnr_db") is not None:
        figs["psnr"] = {"data": [{"type": "bar", "x": names,
                                  "y": [row["psnr_db"] for row in res["specimens"]],
                                  "marker": {"color": COLOURS[2]}}],
                        "layout": {"yaxis": {"title": {"text": "PSNR (dB)"}}, "height": 300,
                                   "margin": {"t": 20}}}
    for key in ("bv_tv_pct", "tb_th_um", "conn_d_per_mm3", "ct_po_pct"):
        label = next(lab for k, lab, _u, _d in PARAMS if k == key)
        figs[f"vs_{key}"] = _versus_hr_figure([res], key, label)
    return figs


# ----------------------------------------------------------------------------------------------
# Build


def _provenance(results: dict[str, dict], fp: str | None) -> dict:
    any_res = next(iter(results.values()), {})  # all kept results share one split
    split, conventions = any_res.get("split", {}), any_res.get("conventions", {})
    return {
        "split": split.get("id"), "split_version": split.get("version"), "fingerprint": fp,
        "metrics": conventions.get("metrics", {}).get("version"),
        "morphometry": conventions.get("morphometry", {}).get("version"),
        "package": __version__, "commit": result.git_commit(),
        "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _best(rows: list[dict]) -> dict:
    """Per score the best entry's value (by the registry's direction), per parameter the
    smallest |relative error| against HR; NaN where no entry has it (equal to nothing)."""
    best = {key: float("nan") for key in (*SCORES, *(k for k, *_ in PARAMS))}
    ent_rows = [r for r in rows if r["kind"] == "entry"]
    for key, p in SCORES.items():
        vals = [r[key] for r in ent_rows if r[key] is not None]
        if vals:
            best[key] = min(vals) if p.lower_is_better else max(vals)
    for key, *_ in PARAMS:
        errs = [abs(r["params"][key]["rel_err_vs_hr"]) for r in ent_rows
                if r["params"][key]["rel_err_vs_hr"] is not None]
        if errs:
            best[key] = min(errs)
    return best


def _figures(rows, by_entry, entries, ordered, refs, bio_ranks) -> dict:
    lr_err = by_entry.get("lr-scan", {}).get("bio_err_vs_hr")
    return {
        "gap_psnr": _gap_figure(rows, lr_err, "psnr"),
        "gap_ssim": _gap_figure(rows, lr_err, "ssim"),
        "box_psnr": _box_figure(entries, "psnr_db", "PSNR (dB), per specimen"),
        "box_ssim": _box_figure(entries, "ssim", "SSIM, per specimen"),
        "ranks": _rank_figure(bio_ranks, by_entry) if bio_ranks else None,
        "versus": {key: _versus_hr_figure(ordered[1:] if refs[:1] else ordered, key, label)
                   for key, label, _u, _d in PARAMS},
    }


def _gallery(results: dict, entries: list[dict]) -> list[dict]:
    out = []
    for label, res, image in (("HR scan", results.get("hr-scan"), "hr"),
                              ("LR scan (21 µm)", results.get("lr-scan"), "lr"),
                              ("true geometry", results.get("hr-scan"), "truth"),
                              *((r["entry"], r, "sr") for r in entries)):
        png = ((res or {}).get("gallery") or {}).get("images", {}).get(image)
        out.append({"label": label, "png": png})
    return out


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined)
    env.filters["pct"] = lambda v, d=1: "–" if v is None else f"{100 * v:.{d}f}"
    env.filters["num"] = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"
    env.filters["signed_pct"] = lambda v: "–" if v is None else f"{100 * v:+.1f}"
    env.filters["tojson_safe"] = lambda v: json.dumps(v).replace("</", "<\\/")
    return env


def _write(out: Path, index: str, pages: dict[str, str], data: dict) -> None:
    """The site written to a staging folder, then put in place of ``out``."""
    import plotly.offline

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "assets").mkdir(parents=True)
    (tmp / "entries").mkdir()
    (tmp / "assets" / "plotly.min.js").write_text(plotly.offline.get_plotlyjs())
    for asset in ("site.js", "site.css"):
        (tmp / "assets" / asset).write_text((TEMPLATES / asset).read_text())
    (tmp / "index.html").write_text(index)
    for entry, html in pages.items():
        (tmp / "entries" / f"{entry}.html").write_text(html)
    (tmp / "data.json").write_text(json.dumps(data, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def build(results_dir: str | Path = "leaderboard/results",
          out_dir: str | Path = "leaderboard/site") -> BuildReport:
    """Render the site; see the module docstring. Never raises on a bad result file. Steps:
    load the results, order them (HR, entries by PSNR, LR), rank, figures, render, write."""
    results, excluded, fp = load_results(results_dir)
    _PALETTE.clear()
    out = Path(out_dir)
    entries = [r for r in results.values() if r["status"] == "scored"]
    entries.sort(key=lambda r: -(_mean(r["aggregates"], "psnr_db") or -1e9))
    refs = [results[e] for e in ("hr-scan", "lr-scan") if e in results]
    ordered = refs[:1] + entries + refs[1:]
    rows = [_row(r) for r in ordered]
    by_entry = {r["entry"]: r for r in rows}
    report = BuildReport(out, entries=[r["entry"] for r in entries],
                         references=[r["entry"] for r in refs], excluded=excluded,
                         fingerprint=fp)

    # ranks: by PSNR and by biology, points and bootstrap intervals (entries only)
    psnr_ranks = rank_intervals({r["entry"]: _per_specimen(r, "psnr_db") for r in entries},
                                higher_is_better=True)
    bio_ranks = rank_intervals({r["entry"]: _per_specimen(r, "bio_err_vs_hr") for r in entries},
                               higher_is_better=False)
    for r in rows:
        r["psnr_rank"] = psnr_ranks.get(r["entry"])
        r["bio_rank"] = bio_ranks.get(r["entry"])

    env = _environment()
    provenance = _provenance(results, fp)
    common = {"provenance": provenance, "params": PARAMS}
    index = env.get_template("index.html").render(
        rows=rows, best=_best(rows), figures=_figures(rows, by_entry, entries, ordered, refs,
                                                      bio_ranks),
        shown=SHOWN_PARAMS, gallery=_gallery(results, entries),
        gspec=next((r["gallery"] for r in ordered if r.get("gallery")), None),
        table=table_one(results) or [["parameter"]], excluded=excluded, bio_ranks=bio_ranks,
        root=".", n_entries=len(entries), **common)
    pages = {res["entry"]: env.get_template("entry.html").render(
        row=by_entry[res["entry"]], res=res, figures=_entry_figures(res), root="..",
        manifest=json.dumps(res.get("model"), indent=1),
        code=json.dumps({**res["code"], "split": res["split"], "environment": res["environment"],
                         "run": res.get("run"), "timings": res.get("timings")}, indent=1),
        **common) for res in ordered}
    _write(out, index, pages, {"rows": rows, "excluded": excluded, "provenance": provenance})
    return report
