# Registration to the MNI152 2009 template with ANTs (braindl.registration), one job
# per session and variant, all modalities of the session in it. The variant is the
# `reg` wildcard downstream; each variant has its own rule because each writes its
# own transforms: linear an affine, syn warps starting from linear's affine, none a
# reorient-and-centre affine plus the brain prior carried through `none_prior_from`.
# The manifest is `ancient`: the jobs wait for the input checks, but a new
# participant in the dataset (a new manifest) does not rerun the other sessions.

for _variant in registration.VARIANTS:

    rule:
        name:
            f"register_{_variant}"
        input:
            unpack(_scans),
            unpack(
                lambda wc, v=_variant: {
                    f"previous_{k}": p
                    for k, p in (
                        reg_paths(registration.previous_variant(v, config["registration"]), wc.subject, wc.session)
                        if registration.previous_variant(v, config["registration"])
                        else {}
                    ).items()
                }
            ),
            manifest=ancient(MANIFEST),
        output:
            **reg_paths(_variant),
        params:
            variant=_variant,
            modalities=MODALITIES,
            settings=canonical(registration.variant_settings(_variant, config["registration"])),
            code=code_hash("registration"),
        log:
            f"{REG}/logs/sub-{{subject}}_ses-{{session}}_desc-{_variant}.log",
        threads: config["resources"]["registration_threads"]
        conda:
            ENV
        resources:
            mem_mb=3000,
        script:
            "../workflow_scripts/register.py"
