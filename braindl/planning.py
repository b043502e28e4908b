"""Planning helpers that act on the whole config, importable without torch or Snakemake.

Snakemake loads ``config.yaml`` first and merges every ``--configfile`` into it, so a named
config adds to a dict of config.yaml but cannot take a key out of it. The dicts whose keys
name things (models, layouts, crop boxes, quality groups, external datasets, synthetic groups)
therefore accept ``name: null``: the entry is removed before the config is validated
(:func:`drop_removed`), as if config.yaml had never had it.
"""

from __future__ import annotations

#: dicts of config.yaml whose entries a named config may remove with ``name: null``
NAMED_DICTS = (
    ("transfer", "models"),
    ("mosaic", "layouts"),
    ("crop", "box"),
    ("dose", "groups"),
    ("external", "datasets"),
)


def drop_removed(config: dict) -> list[str]:
    """Remove, in place, every entry set to null in the dicts of :data:`NAMED_DICTS`; returns the
    removed entries as ``section.key.name``."""
    removed = []
    for path in NAMED_DICTS:
        node = config
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for name in [k for k, v in node.items() if v is None]:
            del node[name]
            removed.append(".".join((*path, str(name))))
    return removed
