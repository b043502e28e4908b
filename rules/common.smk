# What every rule file needs at parse time (no image is read); the shared names of the config, the selected
# sessions and their modality sets, the helpers of the per-session rules, report captions and the code
# digest of a rule. Each stage's own paths, settings and input functions are in its rule file; what jobs
# exist and the config checks are in braindl.planning, the path layout in braindl.derivatives.
import functools
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from braindl import (architectures, crop, derivatives, external, extraction, inputs, mosaic, msstudy, patches,
                     pifstudy, planning, pretraining, registration, splits, synthetic)

from braindl.provenance import canonical, script_hash, use_digest_cache

# the digests of the library's and the scripts' code, kept between parses (about 1 s each otherwise) beside
# that code: in the checkout's .snakemake/ (ignored by git; nothing is kept where it cannot be written)
use_digest_cache(os.path.join(workflow.basedir, ".snakemake", "braindl", "code_digests.json"))


@functools.cache
def script_code(script):
    """The code a rule runs (its workflow script and the library modules it imports, comments and
    docstrings left out) as a digest: a rule's `params: code=` reruns it when that code changes."""
    return script_hash(Path(workflow.basedir) / "workflow_scripts" / script)


def captioned(path, caption, category, subcategory=None):
    """An output shown in `snakemake --report`, with the caption rules/captions/<caption>.rst."""
    return report(path, caption=f"captions/{caption}.rst", category=category, subcategory=subcategory)


RESULTS = config["results_dir"]
DATASET = config["dataset"]
MODALITIES = DATASET["modalities"]
SYNTHETIC = DATASET["bids_dir"] is None
PET_ROUTE = config["registration"]["pet_route"]
VARIANTS = config["registration"]["variants"]
ENV = "../envs/braindl.yaml"
MANIFEST = derivatives.manifest(RESULTS)
QC = f"{RESULTS}/qc"
FIGURES = f"{RESULTS}/figures"
TRUTH_DIR = f"{RESULTS}/synthetic/groundtruth"

for _problem in planning.config_problems(config):  # across settings: the schema checks each alone
    raise WorkflowError(f"config: {_problem}")

# the selected scans (pybids' index of a user's dataset is kept between parses: every cluster job parses
# the Snakefile)
try:
    _SELECTION = planning.dataset_selection(config, cache_dir=os.path.join(".snakemake", "braindl", "bids_index"))
except ValueError as _err:
    raise WorkflowError(f"config: {_err}") from None
BIDS_DIR = _SELECTION.bids_dir
SCANS = _SELECTION.scans
COHORT = _SELECTION.cohort
SYN_DIAGNOSES = _SELECTION.diagnoses
RAW = {(p[4:], ses, m): path for p, ses, m, path in SCANS[["participant_id", "session_id", "modality", "path"]].itertuples(index=False)}
# the modalities of each session, and the distinct sets of them: each per-session rule has one variant per set
SESSION_MODS = _SELECTION.sessions
MODALITY_SETS = _SELECTION.modality_sets


wildcard_constraints:
    subject="[A-Za-z0-9]+",
    session="[A-Za-z0-9]+",
    reg="none|linear|syn",


def session_pairs():
    """(subject, session) labels of every session, in a stable order."""
    return list(SESSION_MODS)


def session_mods(subject, session):
    """The modalities a session has (a tuple in dataset.modalities order)."""
    return SESSION_MODS[(subject, session)]


def set_suffix(mods):
    """Rule-name suffix of the per-session rules of sessions with ``mods`` ('' for every modality)."""
    return "" if tuple(mods) == tuple(MODALITIES) else f"_{'_'.join(mods)}"


def of_set(mods, function):
    """Input function of the per-session rule made for sessions with exactly ``mods``. For a session
    of another set it names an input no rule makes and no dataset has, so Snakemake drops this rule
    for that session (quietly: it takes the rule whose inputs exist) and exactly one rule makes each
    file."""

    def inputs_of(wildcards):
        have = SESSION_MODS.get((wildcards.subject, wildcards.session))
        if have != tuple(mods):
            said = ", ".join(have) if have else "no selected scan"
            return {"session": f"{BIDS_DIR}/sub-{wildcards.subject}/ses-{wildcards.session} "
                               f"(has {said}; this rule is for {', '.join(mods)})"}
        return function(wildcards)

    return inputs_of
