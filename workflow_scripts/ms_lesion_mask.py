from braindl.logs import to_log
from braindl.msstudy import carry_lesion_mask

with to_log(snakemake.log):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    print(carry_lesion_mask(i.native, i.image, i.mask, i.sidecar, p.box, p.aligned, o.lesion, o.brain))
