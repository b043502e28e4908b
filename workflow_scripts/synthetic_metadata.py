from braindl.logs import to_log
from braindl.synthetic import write_dataset_metadata

with to_log(snakemake.log):
    write_dataset_metadata(snakemake.params.settings, snakemake.params.bids_dir, snakemake.params.truth_dir)
