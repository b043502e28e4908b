# Bias-field correction and one native-space brain mask per scan (braindl.extraction),
# one job per session, computed once and shared by every registration variant.
# The manifest is `ancient`: the jobs wait for the input checks, but a new
# participant in the dataset (a new manifest) does not rerun the other sessions.


rule extract:
    input:
        unpack(_scans),
        manifest=ancient(MANIFEST),
    output:
        **ext_paths(),
    params:
        modalities=MODALITIES,
        settings=canonical(extraction.job_settings(config["skullstrip"], config["registration"], MODALITIES)),
        code=code_hash("extraction"),
    log:
        f"{EXT}/logs/sub-{{subject}}_ses-{{session}}.log",
    threads: config["resources"]["registration_threads"]
    conda:
        ENV
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/extract.py"
