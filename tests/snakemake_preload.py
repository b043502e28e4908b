"""Imported once by the fork server of tests/snakemake_runs.py: Snakemake, its plugins and the libraries the
Snakefile reads its config with, so that each dry run forked from it starts with them loaded (about a
second of each dry run's 2-3 s). braindl itself is not loaded here: tests run the Snakefile of copies of
the repository whose library they changed, and the Snakefile imports it from its own folder."""

import jsonschema  # noqa: F401  (the config schema)
import nbformat  # noqa: F401  (Snakemake's notebook support)
import nibabel  # noqa: F401  (braindl's modules the Snakefile imports: their libraries)
import numpy  # noqa: F401
import pandas  # noqa: F401
import requests  # noqa: F401
import scipy.ndimage  # noqa: F401
import smart_open  # noqa: F401
import yaml  # noqa: F401
from isal import igzip  # noqa: F401
from snakemake import api, cli, persistence, utils  # noqa: F401

cli.get_argument_parser()  # collects the executor, storage, report, logger and scheduler plugins
