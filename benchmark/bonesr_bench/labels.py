"""Display labels and units of the bone parameters (keys of `bonesr-bench morphometry --json`);
no heavy imports, so the CLI starts fast."""

#: (label, unit) of every parameter, for tables and figures
PARAM_LABELS = {
    "bv_tv_pct": ("BV/TV", "%"), "tb_th_um": ("Tb.Th", "µm"), "tb_th_sd_um": ("Tb.Th SD", "µm"),
    "tb_sp_um": ("Tb.Sp", "µm"), "tb_sp_sd_um": ("Tb.Sp SD", "µm"),
    "tb_n_per_mm": ("Tb.N", "1/mm"), "conn_d_per_mm3": ("Conn.D", "1/mm³"),
    "da_bonej": ("DA (BoneJ, 1 - λmin/λmax)", ""), "da_ratio": ("DA (ratio, CTAn/Scanco)", ""),
    "smi": ("SMI", ""), "ct_th_um": ("Ct.Th", "µm"), "ct_po_pct": ("Ct.Po (total)", "%"),
    "ct_po_closed_pct": ("Ct.Po (closed)", "%"), "ct_po_open_pct": ("Ct.Po (open)", "%"),
    "po_n": ("Po.N", ""), "po_mean_volume_um3": ("mean pore volume", "µm³"),
}
