"""Automatic region masks from the HR scan (periosteal/endosteal surfaces, cortical envelope,
trabecular VOI) against the known regions of a synthetic v1 specimen."""

from __future__ import annotations

import numpy as np
import pytest

from bonesr_bench.split.regions import NoCortexError, auto_regions, dice

from conftest import random_structure, read_roi, tibia_section


@pytest.fixture(scope="module")
def specimen():
    """The v1 split's first test specimen (seed 2000), generated and scanned here (~15 s):
    (segmented HR scan, true bone, known regions)."""
    from bonesr_bench.scoring.segmentation import segment
    from bonesr_bench.split import SEGMENTATION, SPLITS
    from bonesr_bench.split.synth.scanner import scan_pair
    from bonesr_bench.split.synth.specimen import draw_params, generate

    c = SPLITS["v1"]
    spec = generate(draw_params(2000), shape=c.hr_shape, voxel_um=c.hr_voxel_um)
    hr, _ = scan_pair(spec.fraction, hr_voxel_um=c.hr_voxel_um, seed=2000, device="cpu")
    return segment(hr, SEGMENTATION), spec.truth > 0, spec.regions


def test_masks_from_the_segmented_hr_scan_match_the_known_regions(specimen):
    hr_bone, _, regions = specimen
    auto = auto_regions(hr_bone, 10.5)
    assert dice(auto == 1, regions == 1) >= 0.95  # trabecular VOI (measured 0.988)
    assert dice(auto == 2, regions == 2) >= 0.95  # cortical envelope (measured 0.977)
    assert set(np.unique(auto)) == {0, 1, 2}


def test_masks_of_the_true_geometry(specimen):
    _, truth, regions = specimen
    auto = auto_regions(truth, 10.5)
    assert dice(auto == 1, regions == 1) >= 0.95 and dice(auto == 2, regions == 2) >= 0.95


def test_masks_of_an_analytic_section_with_pores_and_plates_joining_the_cortex():
    bone, regions = tibia_section()
    auto = auto_regions(bone, 10.5)
    assert dice(auto == 1, regions == 1) >= 0.95  # measured 0.981
    assert dice(auto == 2, regions == 2) >= 0.95  # measured 0.991 (pores filled, plates cut)


@pytest.mark.parametrize("volume", ["empty", "solid", "random", "bonebox"])
def test_a_volume_without_a_cortex_around_marrow_is_refused(volume):
    bone = {"empty": lambda: np.zeros((8, 20, 20), bool),
            "solid": lambda: np.ones((8, 20, 20), bool),
            "random": lambda: random_structure((24, 48, 48), 3.0, 0.3, seed=0),
            "bonebox": lambda: read_roi("isodata_04216_roi_0.nrrd")}[volume]()
    with pytest.raises(NoCortexError, match="no cort"):
        auto_regions(bone, 50.0 if volume == "bonebox" else 10.5)


def test_dice():
    assert dice(np.ones(4, bool), np.ones(4, bool)) == 1.0
    assert dice(np.array([1, 0], bool), np.array([0, 1], bool)) == 0.0
