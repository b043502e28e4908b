# Cropping to a template-space box and intensity normalisation (braindl.crop),
# per session and variant. The box of each modality comes from crop.preset.


rule crop:
    input:
        unpack(
            lambda wc: {
                **{m: strip_paths(wc.reg, wc.subject, wc.session)[f"{m}_brain"] for m in MODALITIES},
                **{f"{m}_mask": reg_paths(wc.reg, wc.subject, wc.session)[f"{m}_mask"] for m in MODALITIES},
            }
        ),
    output:
        **crop_paths(),
    params:
        modalities=MODALITIES,
        settings=crop_settings(),
        aligned=lambda wc: wc.reg != "none",
        code=code_hash("crop"),
    log:
        f"{CROP}/logs/sub-{{subject}}_ses-{{session}}_desc-{{reg}}.log",
    conda:
        ENV
    resources:
        mem_mb=1500,
    script:
        "../workflow_scripts/crop.py"
