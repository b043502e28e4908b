"""braindl: the library behind the neuroimaging deep-learning Snakemake workflow.

One module per stage of the chain (``synthetic``, ``inputs``, ...); workflow
scripts only unpack Snakemake's object and call one function here.
"""

__version__ = "0.1.0"
