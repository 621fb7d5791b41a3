"""The one registry of what a result reports: every bone parameter (the keys of
`bonesr-bench morphometry --json`) and every score, with its label, unit, digits and direction.

Tables (the terminal summary, `data info`, Table I), the site and the scoring all read it; no
heavy imports, so the CLI starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Param", "PARAMS", "SCORES", "BIO_KEYS", "SUMMARY_KEYS", "TABLE_ONE_KEYS", "INFO_KEYS",
           "SHOWN_KEYS", "param", "label_unit"]


@dataclass(frozen=True)
class Param:
    """One reported quantity.

    ``digits``: decimals shown; ``lower_is_better``: True for errors, False for PSNR/SSIM, None
    for a bone parameter (there the best is the HR scan's value); ``short``: the label in
    Table I where it differs; ``percent``: a fraction shown times 100 (scores)."""

    key: str
    label: str
    unit: str
    digits: int
    lower_is_better: bool | None = None
    short: str | None = None
    percent: bool = False

    @property
    def table_label(self) -> str:
        name = self.short or self.label
        return f"{name} ({self.unit})" if self.unit else name


#: every bone parameter, in the order morphometry returns them (trabecular, then cortical)
PARAMS: dict[str, Param] = {p.key: p for p in (
    Param("bv_tv_pct", "BV/TV", "%", 1),
    Param("tb_th_um", "Tb.Th", "µm", 1),
    Param("tb_th_sd_um", "Tb.Th SD", "µm", 1),
    Param("tb_sp_um", "Tb.Sp", "µm", 0),
    Param("tb_sp_sd_um", "Tb.Sp SD", "µm", 0),
    Param("tb_n_per_mm", "Tb.N", "1/mm", 2),
    Param("conn_d_per_mm3", "Conn.D", "1/mm³", 1),
    Param("da_bonej", "DA (BoneJ, 1 - λmin/λmax)", "", 2),
    Param("da_ratio", "DA (ratio, CTAn/Scanco)", "", 2, short="DA (ratio)"),
    Param("smi", "SMI", "", 2),
    Param("ct_th_um", "Ct.Th", "µm", 0),
    Param("ct_po_pct", "Ct.Po (total)", "%", 2, short="Ct.Po"),
    Param("ct_po_closed_pct", "Ct.Po (closed)", "%", 2),
    Param("ct_po_open_pct", "Ct.Po (open)", "%", 2),
    Param("po_n", "Po.N", "", 0),
    Param("po_mean_volume_um3", "mean pore volume", "µm³", 0),
)}
#: the scores of an entry (aggregates of a result)
SCORES: dict[str, Param] = {p.key: p for p in (
    Param("psnr_db", "PSNR", "dB", 2, lower_is_better=False),
    Param("ssim", "SSIM", "", 3, lower_is_better=False),
    Param("bio_err_vs_hr", "bio. error vs HR", "%", 1, lower_is_better=True, percent=True),
    Param("bio_err_vs_truth", "bio. error vs truth", "%", 1, lower_is_better=True, percent=True),
)}

#: parameters averaged into the biological error
BIO_KEYS = ("bv_tv_pct", "tb_th_um", "tb_sp_um", "da_ratio", "conn_d_per_mm3", "ct_th_um",
            "ct_po_pct")
#: rows of the study's Table I: its five, then the rest we measure
TABLE_ONE_KEYS = ("tb_th_um", "bv_tv_pct", "tb_sp_um", "da_ratio", "conn_d_per_mm3",
                  "tb_n_per_mm", "smi", "ct_th_um", "ct_po_pct", "po_n")
#: rows of `evaluate`'s terminal summary
SUMMARY_KEYS = ("bv_tv_pct", "tb_th_um", "tb_sp_um", "tb_n_per_mm", "da_ratio",
                "conn_d_per_mm3", "smi", "ct_th_um", "ct_po_pct", "po_n")
#: columns of `data info`
INFO_KEYS = ("bv_tv_pct", "tb_th_um", "tb_sp_um", "conn_d_per_mm3", "da_ratio", "ct_th_um",
             "ct_po_pct")
#: per-specimen figures the site shows at once (the others through its selector)
SHOWN_KEYS = ("bv_tv_pct", "tb_th_um", "conn_d_per_mm3")


def param(key: str) -> Param:
    """The registry entry of a bone parameter or a score."""
    return PARAMS.get(key) or SCORES[key]


def label_unit(key: str) -> tuple[str, str]:
    p = param(key)
    return p.label, p.unit
