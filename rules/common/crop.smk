# The crop stage's constants, paths, settings, checks and input functions (its rules: rules/crop.smk).
CROP = f"{RESULTS}/crop"


def crop_paths(mods, reg="{reg}", subject="{subject}", session="{session}"):
    return derivatives.crop(RESULTS, subject, session, reg, mods)


def crop_settings():
    """The crop config this workflow's modalities use (braindl.planning.crop_settings)."""
    return canonical(planning.crop_settings(config))


def preprocessed_targets():
    """Every cropped scan of every variant, and the QC table per variant."""
    files = [qc_table(v) for v in VARIANTS] + [QC_SCANS]
    for v in VARIANTS:
        for (sub, ses), mods in SESSION_MODS.items():
            files += list(crop_paths(mods, v, sub, ses).values())
    return files
