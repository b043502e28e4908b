# The skullstrip stage's constants, paths, settings, checks and input functions (its rules: rules/skullstrip.smk).
STRIP = f"{RESULTS}/skullstrip"
QC_SCANS = derivatives.scans_qc(RESULTS)


def strip_paths(mods, reg="{reg}", subject="{subject}", session="{session}"):
    """Outputs of one skull-stripping job: stripped image and QC figure per modality, QC rows."""
    return derivatives.skullstrip(RESULTS, subject, session, reg, mods)


def qc_table(reg="{reg}"):
    return derivatives.qc_table(RESULTS, reg)
