# Registration to the MNI152 2009 template with ANTs (braindl.registration), one job
# per session and variant, all modalities of the session in it. The variant is the
# `reg` wildcard downstream; each variant has its own rule because each writes its
# own transforms: linear an affine, syn warps starting from linear's affine, none an
# identity to the scanner's world. Every variant reads the session's extraction
# outputs (bias-corrected T1w, native brain masks, PET-to-T1w rigid) and carries
# the native masks onto its grid. One rule per variant and set of modalities
# (register_syn, register_syn_T1w ...; see extraction.smk).


include: "common/registration.smk"


for _variant in registration.VARIANTS:
    for _mods in MODALITY_SETS:

        rule:
            name:
                f"register_{_variant}{set_suffix(_mods)}"
            input:
                unpack(of_set(_mods, native_inputs)),
                unpack(
                    lambda wc, v=_variant, m=_mods: {
                        f"previous_{k}": p
                        for k, p in (
                            reg_paths(registration.previous_variant(v), m, wc.subject, wc.session)
                            if registration.previous_variant(v)
                            else {}
                        ).items()
                    }
                ),
            output:
                **reg_paths(_variant, _mods),
            params:
                variant=_variant,
                settings=canonical(registration.variant_settings(_variant, config["registration"])),
                code=script_code("register.py"),
            group:
                "session"
            log:
                f"{REG}/logs/sub-{{subject}}_ses-{{session}}_desc-{_variant}.log",
            threads: config["resources"]["registration_threads"]
            conda:
                ENV
            resources:
                mem_mb=3000,
            script:
                "../workflow_scripts/register.py"
