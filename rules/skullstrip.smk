# Skull stripping of every variant's image with the native brain mask its
# registration carried onto it (braindl.skullstrip), with a QC figure per scan;
# the QC rows of all variants are gathered, flagged, and exclusions decided per
# scan across variants (braindl.qc).


include: "common/skullstrip.smk"


for _mods in MODALITY_SETS:

    rule:
        name:
            f"skullstrip{set_suffix(_mods)}"
        input:
            unpack(
                of_set(
                    _mods,
                    lambda wc, m=_mods: {
                        **{
                            k: p
                            for k, p in reg_paths(wc.reg, m, wc.subject, wc.session).items()
                            if k in m or k.endswith(("_json", "_mask"))
                        },
                        **{f"native_{x}_json": ext_paths(m, wc.subject, wc.session)[f"{x}_json"] for x in m},
                    },
                )
            ),
        output:
            **strip_paths(_mods),
        params:
            modalities=list(_mods),
            dpi=config["qc"]["dpi"],
            code=script_code("skullstrip.py"),
        group:
            "session"
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
