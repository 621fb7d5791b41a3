"""Installed from a wheel, without a checkout: the harness's reference baseline is inside the
package, and what needs a checkout says so before running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment (the machine's packages visible, no network) with the wheel
    built from this checkout installed; (its bonesr-bench, an empty folder, environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp / "dist"), str(ROOT)], check=True,
                   timeout=300, capture_output=True)
    (wheel,) = (tmp / "dist").glob("bonesr_bench-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300, capture_output=True)
    empty = tmp / "elsewhere"
    empty.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": ""}
    return venv, empty, env


def test_the_wheel_is_what_runs(installed):
    venv, empty, env = installed
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import bonesr_bench, sys; "
                            "print(bonesr_bench.__file__)"], cwd=empty, env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(venv)), where  # not the checkout's editable install


def test_an_installed_wheel_scores_bicubic_on_the_mini_split(installed):
    venv, empty, env = installed
    r = subprocess.run([str(venv / "bin" / "bonesr-bench"), "evaluate", "bicubic", "--split",
                        "mini", "--json"], cwd=empty, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["status"] == "scored" and res["model"]["name"] == "bicubic"
    assert (empty / "runs" / "bicubic@synth-v2-mini" / "result.json").is_file()
    # not a terminal: plain progress lines with counts, not an empty log
    assert "building the split" in r.stderr and "running the model" in r.stderr


def test_what_needs_a_checkout_says_so_before_running(installed):
    venv, empty, env = installed
    r = subprocess.run([str(venv / "bin" / "bonesr-bench"), "evaluate", "baselines/fsrcnn.py",
                        "--split", "mini"], cwd=empty, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "no such file" in r.stderr and "checkout" in r.stderr
    assert not list(empty.glob("runs/fsrcnn*"))  # nothing written
    r = subprocess.run([str(venv / "bin" / "bonesr-bench"), "leaderboard", "build"], cwd=empty,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no such folder" in r.stderr and "checkout" in r.stderr
