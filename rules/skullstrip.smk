# Skull stripping of every variant's image with the native brain mask its
# registration carried onto it (braindl.skullstrip), with a QC figure per scan;
# the QC rows of all variants are gathered, flagged, and exclusions decided per
# scan across variants (braindl.qc).


rule skullstrip:
    input:
        unpack(
            lambda wc: {
                **{
                    k: p
                    for k, p in reg_paths(wc.reg, wc.subject, wc.session).items()
                    if k in MODALITIES or k.endswith(("_json", "_mask"))
                },
                **{f"native_{m}_json": ext_paths(wc.subject, wc.session)[f"{m}_json"] for m in MODALITIES},
            }
        ),
    output:
        **strip_paths(),
    params:
        modalities=MODALITIES,
        dpi=config["qc"]["dpi"],
        code=code_hash("skullstrip"),
    log:
        f"{STRIP}/logs/sub-{{subject}}_ses-{{session}}_desc-{{reg}}.log",
    conda:
        ENV
    resources:
        mem_mb=1500,
    script:
        "../workflow_scripts/skullstrip.py"


rule qc_table:
    input:
        rows=[strip_paths(v, sub, ses)["qc"] for v in VARIANTS for sub, ses in session_pairs()],
        manifest=ancient(MANIFEST),
    output:
        **{v: qc_table(v) for v in VARIANTS},
        scans=captioned(QC_SCANS, "qc", "Preprocessing quality control"),
    params:
        settings=canonical({k: v for k, v in config["qc"].items() if k != "dpi"}),
        participants=PARTICIPANTS_DIGEST,
        code=code_hash("qc"),
    log:
        f"{QC}/logs/qc.log",
    conda:
        ENV
    script:
        "../workflow_scripts/qc_table.py"
