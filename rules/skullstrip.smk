# The QC rows of all variants' skull stripping (rule strip_crop, rules/crop.smk) are gathered, flagged,
# and exclusions decided per scan across variants (braindl.qc).


include: "common/skullstrip.smk"


rule qc_table:
    input:
        rows=[strip_paths(mods, v, sub, ses)["qc"] for v in VARIANTS for (sub, ses), mods in SESSION_MODS.items()],
        manifest=ancient(MANIFEST),
        lists=[modality_sessions_path(m) for m in MODALITIES],
    output:
        **{v: qc_table(v) for v in VARIANTS},
        scans=captioned(QC_SCANS, "qc", "Preprocessing quality control"),
    params:
        settings=canonical({k: v for k, v in config["qc"].items() if k != "dpi"}),
        code=script_code("qc_table.py"),
    log:
        f"{QC}/logs/qc.log",
    conda:
        ENV
    script:
        "../workflow_scripts/qc_table.py"
