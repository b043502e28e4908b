# Input contract: every image is read and checked before any expensive rule runs
# (braindl.inputs). All later stages take the manifest as input.


rule check_inputs:
    input:
        unpack(_check_inputs_input),
    output:
        MANIFEST,
    params:
        bids_dir=lambda wc, input: str(Path(input.participants).parent),
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
