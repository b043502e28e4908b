# Cropping to a template-space box and intensity normalisation (braindl.crop),
# per session and variant. The box of each modality comes from crop.preset.


include: "common/crop.smk"


for _mods in MODALITY_SETS:

    rule:
        name:
            f"crop{set_suffix(_mods)}"
        input:
            unpack(
                of_set(
                    _mods,
                    lambda wc, m=_mods: {
                        **{x: strip_paths(m, wc.reg, wc.subject, wc.session)[f"{x}_brain"] for x in m},
                        **{f"{x}_mask": reg_paths(wc.reg, m, wc.subject, wc.session)[f"{x}_mask"] for x in m},
                    },
                )
            ),
        output:
            **crop_paths(_mods),
        params:
            modalities=list(_mods),
            settings=crop_settings(),
            aligned=lambda wc: wc.reg != "none",
            code=script_code("crop.py"),
        group:
            "session"
        log:
            f"{CROP}/logs/sub-{{subject}}_ses-{{session}}_desc-{{reg}}.log",
        conda:
            ENV
        resources:
            mem_mb=1500,
        script:
            "../workflow_scripts/crop.py"
