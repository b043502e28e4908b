# Input contract: every image is read and checked before any expensive rule runs
# (braindl.inputs). All later stages take the manifest as input.


def _check_inputs_input(wildcards):
    files = {"images": IMAGES, "participants": f"{BIDS_DIR}/participants.tsv"}
    if SYNTHETIC:
        files["sessions"] = rules.synthetic_metadata.output.sessions
    return files


rule check_inputs:
    input:
        unpack(_check_inputs_input),
    output:
        MANIFEST,
    params:
        bids_dir=BIDS_DIR,
        diagnoses=config["dataset"]["diagnoses"],
        modalities=MODALITIES,
        code=code_hash("inputs"),
    log:
        f"{RESULTS}/inputs/logs/check_inputs.log",
    threads: 2
    conda:
        ENV
    script:
        "../workflow_scripts/check_inputs.py"
