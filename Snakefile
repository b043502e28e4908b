# braindl: deep learning on brain MRI and PET, from raw scans to figures.
#
#   snakemake --cores 8 all                                   # default synthetic cohort
#   snakemake all --cores 32 --configfile configs/full_protocol.yaml
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


# Jobs import the library from this checkout, also inside conda environments
# and on cluster nodes (SLURM exports the environment).
sys.path.insert(0, workflow.basedir)
from braindl.planning import drop_removed
from braindl.scheduler import coalesce_wakeups

# Snakemake's scheduler would wake once a second for every job it has seen start or end
# (snakemake/snakemake#3804): one pending wake-up at a time instead (braindl/scheduler.py)
coalesce_wakeups()

# a named config removes an entry of config.yaml's models, layouts, crop boxes, quality groups or
# external datasets with `name: null` (--configfile merges into config.yaml, it cannot delete)
drop_removed(config)


validate(config, "braindl/schemas/config.schema.yaml")


report: "rules/captions/workflow.rst"


from braindl.provenance import export_library_path

export_library_path(workflow.basedir)


include: "rules/common.smk"


if SYNTHETIC:  # a BIDS dataset of the user's has no generator rules

    include: "rules/synthetic.smk"


include: "rules/inputs.smk"
include: "rules/extraction.smk"
include: "rules/registration.smk"
include: "rules/skullstrip.smk"
include: "rules/crop.smk"
include: "rules/training.smk"
include: "rules/transfer.smk"
include: "rules/pretraining.smk"
include: "rules/heatmaps.smk"
include: "rules/pifstudy.smk"
include: "rules/msstudy.smk"
include: "rules/dose.smk"
include: "rules/external.smk"


# Each external dataset is preprocessed by this workflow's own rules, as a module with the main config and
# its results under results/external/<name> (braindl.external.module_config): the same variants, crop and
# normalisation, and nothing of the main dataset reruns when one is added or changed.
for _ext_name in external.datasets(config):
    _ext_module = f"external_{_ext_name}"
    _ext_prefix = f"external_{_ext_name}_"

    module:
        name: _ext_module
        snakefile: "Snakefile"
        config: external.module_config(config, _ext_name)

    use rule * from _ext_module exclude all, preprocessing as _ext_prefix*

# cheap aggregations (tables and figures of seconds, small memory): on a cluster they run beside Snakemake
# instead of waiting in the queue; every other job is submitted, the short per-scan ones grouped
# (`group:` in the rule files, `group-components` in profiles/slurm)
localrules:
    all,
    preprocessing,
    qc_table,
    splits,
    sweep_split,
    figure_roc,
    figure_splits,
    figure_variants,
    transfer_table,
    transfer_metrics,
    transfer_roc,
    sweep_table,
    sweep_figure,

    dose_table,
    dose_figure,
    dose_figure_levels,
    heatmap_figures,
    heatmap_robustness,
    heatmap_figure_robustness,


rule preprocessing:
    # the checked inputs, every variant's cropped scans and the QC tables (snakemake --cores 8 preprocessing);
    # a function, so that other targets do not pay for the list
    input:
        lambda wc: [MANIFEST, *preprocessed_targets()],


rule all:
    default_target: True
    input:
        MANIFEST,
        preprocessed_targets(),
        training_targets(),
        transfer_targets(),
        sweep_targets(),
        heatmap_targets(),
        dose_targets(),
        study_targets(),
        external_targets(),
