# Skull stripping, cropping to a template-space box and intensity normalisation (braindl.skullstrip,
# braindl.crop), per session and variant. The box of each modality comes from crop.preset.


include: "common/crop.smk"


# one job per session and variant after its registration: skull stripping with the native brain mask its
# registration carried onto it (braindl.skullstrip; a QC figure per scan and the session's QC rows), then the
# crop and normalisation of the stripped images (braindl.crop), in one process
for _mods in MODALITY_SETS:

    rule:
        name:
            f"strip_crop{set_suffix(_mods)}"
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
            **crop_paths(_mods),
        params:
            modalities=list(_mods),
            dpi=config["qc"]["dpi"],
            settings=crop_settings(),
            aligned=lambda wc: wc.reg != "none",
            code=script_code("strip_crop.py"),
        group:
            "session"
        log:
            f"{CROP}/logs/sub-{{subject}}_ses-{{session}}_desc-{{reg}}.log",
        conda:
            ENV
        resources:
            mem_mb=1500,
        script:
            "../workflow_scripts/strip_crop.py"
