from braindl.external import predict_run
from braindl.logs import to_log

with to_log(snakemake.log):
    i = snakemake.input
    predict_run(i.model, i.data, i.index, snakemake.output[0], snakemake.params.labelled, threads=snakemake.threads)
