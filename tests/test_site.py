"""The leaderboard site, built from result files alone: offline, every entry, excluded files with
their reasons, the ranks and their bootstrap intervals."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bonesr_bench.cli import app
from bonesr_bench.leaderboard.site import build, rank_intervals

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "leaderboard" / "results"
runner = CliRunner()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    return build(RESULTS, out)


def test_site_has_every_entry_and_works_offline(site):
    import plotly.offline

    committed = sorted(p.stem for p in RESULTS.glob("*.json"))
    assert sorted(site.entries + site.references) == committed and not site.excluded
    index = (site.out / "index.html").read_text()
    for e in committed:
        assert (site.out / "entries" / f"{e}.html").is_file()
        assert f'href="entries/{e}.html"' in index
    assert (site.out / "assets" / "plotly.min.js").read_text() == plotly.offline.get_plotlyjs()
    for page in [site.out / "index.html", *(site.out / "entries").glob("*.html")]:
        html = page.read_text()
        # nothing is fetched from elsewhere: every src/href is local, a fragment or data
        for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
            assert not re.match(r"(https?:)?//", ref), (page.name, ref)
    assert site.fingerprint in index  # provenance footer


def test_main_table_ranks_and_best_values_follow_the_results(site):
    data = json.loads((site.out / "data.json").read_text())
    rows = [r for r in data["rows"] if r["kind"] == "entry"]
    by_psnr = sorted(rows, key=lambda r: -r["psnr_db"])
    assert [r["psnr_rank"]["rank"] for r in by_psnr] == list(range(1, len(rows) + 1))
    by_bio = sorted(rows, key=lambda r: r["bio_err_vs_hr"])
    assert [r["bio_rank"]["rank"] for r in by_bio] == list(range(1, len(rows) + 1))
    index = (site.out / "index.html").read_text()
    best = by_psnr[0]
    assert f'class="best">{best["psnr_db"]:.2f}' in index
    refs = {r["entry"] for r in data["rows"] if r["kind"] == "reference"}
    assert refs == {"hr-scan", "lr-scan"}
    # every result's own gallery crop is on the page
    for f in RESULTS.glob("*.json"):
        for png in json.loads(f.read_text())["gallery"]["images"].values():
            assert png in index


def _write(path: Path, obj) -> None:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_bad_and_outdated_files_are_listed_never_dropped_silently(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    good = json.loads((results / "fsrcnn.json").read_text())
    _write(results / "garbage.json", "{not json")
    _write(results / "old-schema.json", {**good, "schema_version": "0", "entry": "old"})
    _write(results / "other-split.json", {**good, "entry": "other",
                                          "split": {**good["split"], "fingerprint": "a" * 64}})
    _write(results / "failed.json", {**good, "entry": "broken", "status": "failed",
                                     "reason": "the model raised", "aggregates": None,
                                     "summary": {"verdict": "failed", "sentence": "x"}})
    r = runner.invoke(app, ["leaderboard", "build", "--results", str(results), "--out",
                            str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    n = len(list(RESULTS.glob("*.json"))) - 2  # the committed entries, less the two references
    assert f"{n} entries, 2 reference rows, 4 excluded" in r.output
    index = (tmp_path / "site" / "index.html").read_text()
    for name, why in [("garbage.json", "not a valid result"), ("old-schema.json", "schema"),
                      ("other-split.json", "another split"), ("failed.json", "failed run")]:
        assert re.search(rf"<code>{re.escape(name)}</code>: [^<]*{why}", index), name
    assert not (tmp_path / "site" / "entries" / "other.html").exists()


def test_empty_results_folder_builds_and_missing_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    report = build(tmp_path / "empty", tmp_path / "site")
    assert report.entries == [] and (tmp_path / "site" / "index.html").is_file()
    r = runner.invoke(app, ["leaderboard", "build", "--results", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such folder" in r.output


def test_rank_intervals_separated_and_tied_entries():
    rng = np.random.default_rng(1)
    specimens = [f"s{i}" for i in range(12)]
    base = rng.normal(20, 1, len(specimens))
    values = {  # a constant per-specimen offset: paired, so the order never changes
        "a": dict(zip(specimens, base + 2, strict=True)),
        "b": dict(zip(specimens, base + 1, strict=True)),
        "c": dict(zip(specimens, base, strict=True)),
    }
    r = rank_intervals(values, higher_is_better=True)
    assert {e: (k["rank"], k["interval"]) for e, k in r.items()} == {
        "a": (1, [1, 1]), "b": (2, [2, 2]), "c": (3, [3, 3])}
    assert r["a"]["leader"] and not r["b"]["tied_with_leader"]
    # two entries that differ by noise only cannot be told apart
    noisy = {"x": dict(zip(specimens, base + rng.normal(0, 1, 12), strict=True)),
             "y": dict(zip(specimens, base + rng.normal(0, 1, 12), strict=True))}
    r = rank_intervals(noisy, higher_is_better=False)
    assert all(k["tied_with_leader"] for k in r.values())
    assert all(k["interval"] == [1, 2] for k in r.values())


def test_validate_fails_on_a_bad_result_file(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    r = runner.invoke(app, ["leaderboard", "validate", "--results", str(results)])
    assert r.exit_code == 0 and "0 invalid" in r.output
    _write(results / "bad.json", {"schema_version": "1"})
    r = runner.invoke(app, ["leaderboard", "validate", "--results", str(results)])
    assert r.exit_code == 1 and "bad.json" in r.output and "1 invalid" in r.output


def test_the_publishing_workflow_tests_validates_builds_and_deploys():
    wf = (ROOT / ".github" / "workflows" / "leaderboard.yml").read_text()
    steps = ["bash .ci/run", "bonesr-bench leaderboard validate", "bonesr-bench leaderboard build",
             "actions/upload-pages-artifact", "actions/deploy-pages"]
    assert [wf.index(s) for s in steps] == sorted(wf.index(s) for s in steps)
    assert "branches: [main]" in wf
    pr = (ROOT / ".github" / "workflows" / "submission.yml").read_text()
    assert "pull_request" in pr and "--split mini" in pr and "--device cpu" in pr
