from braindl.dose import run_resample, total_counts_of
from braindl.logs import to_log

with to_log(snakemake.log):
    source = snakemake.input.scan
    counts = None if source.endswith("_events.npy") else total_counts_of(source, snakemake.params.total_counts)
    run_resample(source, snakemake.params.settings, snakemake.params.seed, snakemake.output.counts,
                 snakemake.output.json, counts, snakemake.params.device, threads=snakemake.threads)
