# The extraction stage's constants, paths, settings, checks and input functions (its rules: rules/extraction.smk).
EXT = f"{RESULTS}/extraction"


def _scans(wildcards):
    """Native scans of one session, one per modality it has."""
    return {m: RAW[(wildcards.subject, wildcards.session, m)] for m in session_mods(wildcards.subject, wildcards.session)}


def ext_paths(mods, subject="{subject}", session="{session}"):
    return derivatives.extraction(RESULTS, subject, session, mods, PET_ROUTE)


def native_inputs(wildcards):
    """What a registration job reads of its session's extraction outputs."""
    mods = session_mods(wildcards.subject, wildcards.session)
    return extraction.registration_inputs(ext_paths(mods, wildcards.subject, wildcards.session), _scans(wildcards))
