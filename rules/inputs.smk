# Input contract: every selected image and table is read and checked before any expensive
# rule runs (braindl.inputs). All later stages take the manifest as input; the skipped
# table lists every image file of the dataset left out, and why (filters, runs, participant
# lists, PET without its session's T1w).


rule check_inputs:
    input:
        unpack(_check_inputs_input),
    output:
        manifest=MANIFEST,
        skipped=f"{RESULTS}/inputs/skipped.tsv",
    params:
        bids_dir=BIDS_DIR,
        settings=canonical({k: v for k, v in DATASET.items() if k not in ("bids_dir", "out_of_distribution")}),
        pet_route=PET_ROUTE,
        code=code_hash("inputs"),
    log:
        f"{RESULTS}/inputs/logs/check_inputs.log",
    threads: 2
    conda:
        ENV
    script:
        "../workflow_scripts/check_inputs.py"
