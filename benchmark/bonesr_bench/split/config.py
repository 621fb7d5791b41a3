"""What a split is: its configurations (shapes, seeds, protocol) and protocols (how the scans
are made and segmented, per grid). Plain data, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SegmentationParams:
    """TV-Otsu parameters.

    tv_weight : Chambolle TV weight on intensities mapped to [0, 1] (larger = smoother).
    tv_max_iter : iterations of Chambolle's projection algorithm.
    window : (low, high) grey values mapped to 0 and 1 before denoising; None uses the volume's
        0.5th and 99.5th percentiles (a split fixes it, so that every entry is segmented alike).
    """

    tv_weight: float = 0.08
    tv_max_iter: int = 100
    window: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


#: v1's fixed intensity window (1/cm) and TV-Otsu parameters, one set for both grids
SEGMENTATION = SegmentationParams(tv_weight=0.08, tv_max_iter=100, window=(-0.5, 3.5))


@dataclass(frozen=True)
class Protocol:
    """How a synthetic split's scans are made and segmented (one per split version).

    ``segmentation``: TV-Otsu parameters per grid (``hr``: 10.5 µm, ``lr``: 21 µm); entries are
    segmented with the HR grid's, the LR reference row with the LR grid's. ``rule``: how they
    were chosen (rerun with ``bonesr-bench data protocol``). v2 only: ``pose_deg`` /
    ``pose_shift_um``, the largest rotation and shift of the LR acquisition (a separate scan,
    registered onto HR by :func:`split.register.register`, as a split from scans),
    ``pad_slices``, HR slices generated beyond each end of the stack so that the moved LR scan
    still covers it.
    """

    split_id: str
    version: str
    hr_scan: object  # synth.scanner.ScanParams
    lr_scan: object
    segmentation: dict  # grid -> SegmentationParams
    rule: str
    exact: bool = False  # the reproducible CPU scanner path (v2)
    population: str = "v1"  # synth.specimen.POPULATIONS: the specimens' trabecular network
    pose_deg: float = 0.0
    pose_shift_um: float = 0.0
    pad_slices: int = 0

    def record(self) -> dict:
        """The split metadata's ``segmentation`` entry: per grid, the rule, and (for v1
        readers) the HR grid's parameters at the top level."""
        hr = self.segmentation["hr"]
        return {**hr.as_dict(), "window_unit": "1/cm", "rule": self.rule,
                "grids": {g: {"tv_weight": p.tv_weight, "tv_max_iter": p.tv_max_iter}
                          for g, p in self.segmentation.items()}}


def _protocols() -> dict[str, Protocol]:
    from bonesr_bench.split.synth.scanner import HR_SCAN, LR_SCAN, ScanParams

    v1_seg = {"hr": SEGMENTATION, "lr": SEGMENTATION}
    v2_window = (-1.0, 5.0)
    return {
        "v1": Protocol("synth-v1", "1.1", HR_SCAN, LR_SCAN, v1_seg,
                       "one TV weight (0.08) for both grids, chosen by eye on HR"),
        "v2": Protocol(
            "synth-v2", "2.0",
            # calibrated on train specimens against the study's Table I (README, "The v2 split")
            ScanParams("hr", binning=1, n_angles=256, photons=120000.0, blur_sigma_um=5.0,
                       gain_sd=0.004),
            ScanParams("lr", binning=2, n_angles=128, photons=20000.0, blur_sigma_um=7.0,
                       gain_sd=0.004, blur_z_um=12.0, pixel_um=19.0),
            {"hr": SegmentationParams(0.01, 100, v2_window),
             "lr": SegmentationParams(0.0, 100, v2_window)},
            TV_RULE, exact=True, population="v2", pose_deg=2.0, pose_shift_um=21.0,
            pad_slices=14),
    }


#: how v2 chooses the TV weight of each grid (``bonesr-bench data protocol`` reruns it)
TV_RULE = ("per grid, the TV weight among 0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12 that minimises "
           "the mean biological error against the true geometry over the first 8 train "
           "specimens (the grid's scan segmented in its own voxels, the truth on the HR grid)")


@dataclass(frozen=True)
class SplitConfig:
    name: str
    hr_shape: tuple[int, int, int]
    train_seeds: tuple[int, ...]
    test_seeds: tuple[int, ...]
    hr_voxel_um: float = 10.5
    scale: int = 2
    donor: str | None = None  # "bonebox": real ROIs instead of generated specimens (test only)
    protocol: str = "v2"  # key of PROTOCOLS: how the scans are made and segmented

    @property
    def proto(self) -> Protocol:
        return PROTOCOLS[self.protocol]

    @property
    def split_id(self) -> str:
        """The split id: synth-v2, synth-v1, synth-v2-mini, ..."""
        base, name = self.proto.split_id, self.name.removesuffix("-v1")
        return base if name in ("v1", "v2") else f"{base}-{name}"

    def specimens(self, part: str = "all") -> list[tuple[str, str, int]]:
        """(subset, name, seed) for ``part`` in train | test | all."""
        if self.donor == "bonebox":
            from bonesr_bench.split.synth.donor import BONEBOX_ROIS

            if part == "train":
                return []
            return [("test", BONEBOX_ROIS[i], i) for i in self.test_seeds]
        out = []
        if part in ("train", "all"):
            out += [("train", f"s{seed:04d}", seed) for seed in self.train_seeds]
        if part in ("test", "all"):
            out += [("test", f"s{seed:04d}", seed) for seed in self.test_seeds]
        return out


PROTOCOLS = _protocols()


SPLITS = {
    "v2": SplitConfig("v2", (160, 256, 256), tuple(range(1000, 1029)), tuple(range(2000, 2011))),
    "v1": SplitConfig("v1", (160, 256, 256), tuple(range(1000, 1029)), tuple(range(2000, 2011)),
                      protocol="v1"),
    "mini": SplitConfig("mini", (16, 96, 96), (1000, 1001), (2000, 2001)),
    "mini-v1": SplitConfig("mini-v1", (16, 96, 96), (1000, 1001), (2000, 2001), protocol="v1"),
    "bonebox": SplitConfig("bonebox", (160, 192, 192), (), (0, 1, 2), donor="bonebox",
                           protocol="v1"),
}


#: the split that commands use when none is named
DEFAULT_SPLIT = "v2"


def _subsets(part: str) -> set[str]:
    """The subsets that ``part`` (train | test | all) covers."""
    return {"train", "test"} if part == "all" else {part}


def segmentation_params(meta: dict) -> dict[str, SegmentationParams]:
    """TV-Otsu parameters per grid (``hr``, ``lr``) recorded in a split's metadata; a split that
    records one set (v1, older splits from scans) uses it for both grids."""
    seg = meta["segmentation"]
    window = tuple(seg["window"]) if seg.get("window") is not None else None
    top = SegmentationParams(seg["tv_weight"], seg["tv_max_iter"], window)
    grids = seg.get("grids") or {}
    return {g: SegmentationParams(grids[g]["tv_weight"], grids[g]["tv_max_iter"], window)
            if g in grids else top for g in ("hr", "lr")}
