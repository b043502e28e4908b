# The registration stage's constants, paths, settings, checks and input functions (its rules: rules/registration.smk).
REG = f"{RESULTS}/registration"


def reg_paths(variant, mods, subject="{subject}", session="{session}"):
    return derivatives.registration(RESULTS, subject, session, variant, mods, PET_ROUTE)
