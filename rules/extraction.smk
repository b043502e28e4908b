# Bias-field correction and one native-space brain mask per scan (braindl.extraction),
# one job per session and modality set, computed once and shared by every registration
# variant. A session has the modalities its dataset gives it (a T1w-only session gets
# T1w outputs only): each per-session rule has one variant per set of modalities
# (`extract` for sessions with all of dataset.modalities, `extract_T1w` ...), and an
# input function that refuses the sessions of other sets (common.smk: of_set).
# The manifest is `ancient`: the jobs wait for the input checks, but a new
# participant in the dataset (a new manifest) does not rerun the other sessions; the
# session's scan list (inputs.smk) is what starts a new session's job.


include: "common/extraction.smk"


for _mods in MODALITY_SETS:

    rule:
        name:
            f"extract{set_suffix(_mods)}"
        input:
            unpack(of_set(_mods, _scans)),
            listed=session_scans_path(),
            manifest=ancient(MANIFEST),
        output:
            **ext_paths(_mods),
        params:
            modalities=list(_mods),
            settings=canonical(extraction.job_settings(config["skullstrip"], config["registration"], _mods)),
            code=script_code("extract.py"),
        group:
            "session"
        log:
            f"{EXT}/logs/sub-{{subject}}_ses-{{session}}.log",
        threads: config["resources"]["registration_threads"]
        conda:
            ENV
        resources:
            mem_mb=4000,
        script:
            "../workflow_scripts/extract.py"
