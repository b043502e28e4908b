from braindl.heatmaps import run_heatmaps
from braindl.logs import to_log

with to_log(snakemake.log):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    mosaic = p.mosaic or {}
    run_heatmaps(i.model, i.predictions, i.data, i.index, i.pack_json, p.spec, p.settings, o.heatmaps, o.index,
                 o.json, layout=mosaic.get("layout"), scale=mosaic.get("scale", 1.0), threads=snakemake.threads)
