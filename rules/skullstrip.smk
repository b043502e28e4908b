# Skull stripping of every variant's image by thresholding the brain prior the
# registration carried into it (braindl.skullstrip), with a QC figure per scan;
# the QC rows of a variant are gathered and outliers flagged (braindl.qc).


rule skullstrip:
    input:
        unpack(
            lambda wc: {
                k: p
                for k, p in reg_paths(wc.reg, wc.subject, wc.session).items()
                if k in MODALITIES or k.endswith(("_json", "_prior"))
            }
        ),
    output:
        **strip_paths(),
    params:
        modalities=MODALITIES,
        settings=canonical(config["skullstrip"]),
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
        rows=lambda wc: [strip_paths(wc.reg, sub, ses)["qc"] for sub, ses in session_pairs()],
    output:
        captioned(qc_table(), "qc", "Preprocessing quality control"),
    params:
        settings=canonical({k: v for k, v in config["qc"].items() if k != "dpi"}),
        code=code_hash("qc"),
    log:
        f"{QC}/logs/desc-{{reg}}_qc.log",
    conda:
        ENV
    script:
        "../workflow_scripts/qc_table.py"
