"""Input contract: find the scans of a BIDS dataset, then check them before any expensive work.

A dataset is ``participants.tsv`` (``participant_id`` and ``sex``; ``diagnosis`` and
``age``, optional ``mmse`` and ``site``), optional ``sub-<label>/sub-<label>_sessions.tsv``
tables (``session_id`` and any of ``diagnosis``, ``age``, ``mmse``, which then hold per
session), and images ``sub-<label>/[ses-<label>/]anat/*_T1w.nii[.gz]`` and
``.../pet/*_pet.nii[.gz]`` with any BIDS entities (``trc-``, ``rec-``, ``acq-``,
``run-`` ...), as Clinica's ``adni-to-bids`` writes them. A dataset without session
folders is one session, ``ses-01``, in the results.

Three steps, each cheap enough for the one before it:

1. :func:`index_dataset` lists the dataset with pybids (``BIDSLayout``, not validated, so
   that a mis-named file is seen and named rather than silently dropped). The index is
   kept as a table keyed by the fingerprint of the dataset's file list, so Snakemake's
   parses (one per cluster job) read it back instead of indexing again.
2. :func:`select_scans` keeps, per modality, the images that pass ``dataset.filters``
   and the participant lists; where several remain for a session and they differ only
   in ``run``, ``dataset.runs: last`` keeps the highest run, and anything else is a
   problem naming the files and the entity to filter on. On the ``via_t1`` PET route
   a PET whose session has no T1w is left out (its registration goes through that T1w).
   :func:`discover` does both and never raises: the Snakefile calls it at parse time.
3. :func:`check_inputs` (a job, before any heavy one) reads the tables and every
   selected image and reports every problem at once, each naming its file.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import pandas as pd

#: BIDS datatype folder and suffix of each modality
MODALITY = {"T1w": ("anat", "T1w"), "pet": ("pet", "pet")}
IMAGE_EXTENSIONS = (".nii", ".nii.gz")
PARTICIPANT_COLUMNS = ("participant_id", "sex")
#: clinical values a dataset gives per participant or, in sessions.tsv, per session
SESSION_VALUES = ("diagnosis", "age", "mmse")
REQUIRED_VALUES = ("diagnosis", "age")
DEFAULT_SESSION = "01"
#: top-level folders pybids leaves out of a raw dataset's index (and so does the fingerprint)
IGNORED = ("code", "derivatives", "sourcedata", "stimuli", "models")
#: the smallest scan accepted: voxels along each axis, and field of view (mm) along each axis
MIN_VOXELS = 16
MIN_FIELD_OF_VIEW_MM = 60.0
INDEX_COLUMNS = ["relpath", "sub", "ses", "datatype", "suffix", "extension", "entities"]


class InputError(ValueError):
    """Raised with every problem found in the input, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the input:\n  - " + "\n  - ".join(self.problems))


class Selection(NamedTuple):
    """What :func:`discover` found: the scans used, the image files left out (with why), and the
    problems (each naming its file) that :func:`check_inputs` refuses the dataset for."""

    scans: pd.DataFrame    # participant_id, session_id, modality, path, entities
    skipped: pd.DataFrame  # path, reason
    problems: list


SCAN_COLUMNS = ["participant_id", "session_id", "modality", "path", "entities"]


# ---------------------------------------------------------------------------
# the index
# ---------------------------------------------------------------------------


def dataset_listing(root) -> list[str]:
    """Relative paths of the files pybids indexes (top-level files and everything under ``sub-*``),
    sorted; broken links are listed like files. Cheap (no file is opened), never raises."""
    root = Path(root)
    out = []
    try:
        top = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return out
    for entry in top:
        if entry.name.startswith(".") or entry.name in IGNORED:
            continue
        if not entry.is_dir(follow_symlinks=True):
            out.append(entry.name)
        elif entry.name.startswith("sub-"):
            for base, dirs, files in os.walk(entry.path, onerror=lambda err: None):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                rel = os.path.relpath(base, root)
                out += [os.path.join(rel, f) for f in sorted(files) if not f.startswith(".")]
    return out


def _entity_keys() -> dict[str, str]:
    """pybids entity name -> the key BIDS file names use (tracer -> trc, run -> run ...)."""
    from bids.layout.models import Config

    keys = {}
    for name, ent in Config.load("bids").entities.items():
        m = re.search(r"([a-zA-Z]+)-\(", ent.pattern or "")
        if m:
            keys[name] = m.group(1)
    return keys


def build_index(root) -> pd.DataFrame:
    """Index a dataset with pybids: one row per file, its path relative to ``root``, subject,
    session, datatype, suffix, extension and its other entities as ``key-value`` pairs joined by
    ``_`` (``trc-18FFDG_rec-coregiso``)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    root = Path(root)
    layout = BIDSLayout(str(root), validate=False, indexer=BIDSLayoutIndexer(index_metadata=False))
    keys = _entity_keys()
    fixed = {"subject", "session", "datatype", "suffix", "extension"}
    rows = []
    for f in layout.get(return_type="object"):
        ents = f.get_entities()
        other = "_".join(f"{keys[k]}-{ents[k]}" for k in keys if k in ents and k not in fixed)
        rows.append({"relpath": os.path.relpath(f.path, root), "sub": ents.get("subject"), "ses": ents.get("session"),
                     "datatype": ents.get("datatype"), "suffix": ents.get("suffix"),
                     "extension": ents.get("extension"), "entities": other})
    table = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    return table.sort_values("relpath").reset_index(drop=True)


def index_dataset(root, cache_dir=None) -> tuple[pd.DataFrame, str]:
    """The index of a dataset (:func:`build_index`) and where it came from (``"cache"`` or ``"pybids"``).

    With ``cache_dir`` the index is stored there as ``<dataset>-<fingerprint>.tsv``, the
    fingerprint being a digest of :func:`dataset_listing`: a new, renamed or removed file
    indexes the dataset again, anything else reads the stored table (written atomically,
    so parallel parses never read half a table).
    """
    root = Path(root)
    if cache_dir is None:
        return build_index(root), "pybids"
    listing = dataset_listing(root)
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{name}-{digest}.tsv"
    if path.is_file():
        try:
            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=["n/a"]), "cache"
        except (OSError, ValueError, pd.errors.ParserError):
            pass  # a damaged cache is rebuilt
    table = build_index(root)
    from braindl.io import write_tsv

    write_tsv(path, table)
    for old in Path(cache_dir).glob(f"{name}-*.tsv"):
        if old != path:
            old.unlink(missing_ok=True)
    return table, "pybids"


# ---------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------


def parse_entities(text) -> dict[str, str]:
    """``"trc-18FFDG_rec-coregiso"`` -> ``{"trc": "18FFDG", "rec": "coregiso"}``."""
    if not isinstance(text, str) or not text:
        return {}
    return dict(part.split("-", 1) for part in text.split("_") if "-" in part)


def _matches(value, wanted) -> bool:
    wanted = wanted if isinstance(wanted, list) else [wanted]
    for w in wanted:
        w = str(w)
        if value == w or (value is not None and value.isdigit() and w.isdigit() and int(value) == int(w)):
            return True
    return False


def _label(pid) -> str:
    return pid if str(pid).startswith("sub-") else f"sub-{pid}"


def select_scans(index: pd.DataFrame, root, modalities=("T1w", "pet"), filters=None, runs: str = "last",
                 participants=None, pet_route: str = "via_t1") -> Selection:
    """The scans of each session and modality, the image files left out and why, and the problems.

    ``filters``: per modality, BIDS entity -> value or list of values the file must have
    (``{"pet": {"trc": "18FFDG"}}``); ``runs``: ``last`` keeps the highest ``run`` of
    images that differ in nothing else, ``refuse`` makes them a problem;
    ``participants``: ``{"include": [...], "exclude": [...]}`` labels (with or without
    ``sub-``), an empty include meaning everyone.
    """
    root = Path(root)
    filters = filters or {}
    participants = participants or {}
    include = {_label(p) for p in participants.get("include") or []}
    exclude = {_label(p) for p in participants.get("exclude") or []}
    scans, skipped, problems = [], [], []
    img = index[index["extension"].isin(IMAGE_EXTENSIONS) & index["sub"].notna()] if len(index) else index
    for mod in modalities:
        folder, suffix = MODALITY[mod]
        flt = filters.get(mod) or {}
        lower = img[img["suffix"].fillna("").str.lower() == suffix.lower()]
        for r in lower.itertuples():
            path = str(root / r.relpath)
            if r.suffix != suffix:
                problems.append(f"{path}: suffix '{r.suffix}' is not the BIDS suffix '{suffix}' (BIDS suffixes "
                                f"are case-sensitive): rename the file")
            elif r.datatype != folder:
                problems.append(f"{path}: a {suffix} image outside a {folder}/ folder: move it to "
                                f"sub-<label>/[ses-<label>/]{folder}/")
        cand = lower[(lower["suffix"] == suffix) & (lower["datatype"] == folder)]
        groups: dict[tuple, list] = {}
        for r in cand.itertuples():
            path, pid = str(root / r.relpath), f"sub-{r.sub}"
            ses = r.ses if isinstance(r.ses, str) and r.ses else DEFAULT_SESSION
            ents = parse_entities(r.entities)
            if pid in exclude:
                skipped.append(dict(path=path, reason=f"{pid} is in dataset.participants.exclude"))
                continue
            if include and pid not in include:
                skipped.append(dict(path=path, reason=f"{pid} is not in dataset.participants.include"))
                continue
            miss = [f"{k}-{ents.get(k, '(none)')} is not {v}" for k, v in flt.items() if not _matches(ents.get(k), v)]
            if miss:
                skipped.append(dict(path=path, reason=f"dataset.filters.{mod}: {'; '.join(miss)}"))
                continue
            groups.setdefault((pid, ses), []).append((path, ents, r.extension))
        for (pid, ses), found in sorted(groups.items()):
            if len(found) > 1:
                found, left, problem = _one_scan(found, mod, flt, runs, root / pid, ses)
                skipped += left
                if problem:
                    problems.append(problem)
                    continue
            path, ents, _ = found[0]
            scans.append(dict(participant_id=pid, session_id=ses, modality=mod, path=path,
                              entities="_".join(f"{k}-{v}" for k, v in ents.items())))
    table, orphans = without_orphan_pet(pd.DataFrame(scans, columns=SCAN_COLUMNS), modalities, pet_route)
    skipped += orphans
    return Selection(table, pd.DataFrame(skipped, columns=["path", "reason"]), problems)


def without_orphan_pet(table: pd.DataFrame, modalities, pet_route: str) -> tuple[pd.DataFrame, list[dict]]:
    """The scans without the PET of sessions that have no T1w, on the ``via_t1`` route (the PET is
    registered through its session's T1w), and those PET as skipped rows."""
    skipped = []
    if pet_route == "via_t1" and "pet" in modalities and "T1w" in modalities and len(table):
        t1 = set(zip(table.loc[table.modality == "T1w", "participant_id"], table.loc[table.modality == "T1w", "session_id"]))
        orphan = np.array([m == "pet" and (p, s) not in t1
                           for p, s, m in zip(table.participant_id, table.session_id, table.modality)])
        skipped = [dict(path=p, reason="no T1w in this session: registration.pet_route via_t1 registers PET "
                                       "through its session's T1w") for p in table.loc[orphan, "path"]]
        table = table[~orphan]
    return table.sort_values(["participant_id", "session_id", "modality"]).reset_index(drop=True), skipped


def existing_scans(scans: pd.DataFrame, modalities, pet_route: str) -> pd.DataFrame:
    """The scans whose file exists (a missing file or broken link stays out of the workflow's DAG:
    Snakemake would stop on it before :func:`check_inputs` can name it), without the PET left alone
    in its session by that (:func:`without_orphan_pet`)."""
    keep = np.array([os.path.exists(p) for p in scans["path"]], dtype=bool)
    return without_orphan_pet(scans[keep] if len(scans) else scans, modalities, pet_route)[0]


def _one_scan(found, mod, flt, runs, sub_dir, ses):
    """One of several images of a session: the highest run when they differ only in ``run`` and
    ``runs`` is ``last``; else a problem naming them and the entities that tell them apart."""
    names = ", ".join(Path(p).name for p, _, _ in found)
    keys = sorted({k for _, e, _ in found for k in e})
    differ = [k for k in keys if len({e.get(k) for _, e, _ in found}) > 1]
    where = f"{sub_dir}: ses-{ses} has {len(found)} {mod} images matching dataset.filters.{mod} {flt or '{}'} ({names})"
    if not differ:
        return found, [], f"{where}: the same scan twice (.nii and .nii.gz?); keep one"
    if differ == ["run"] and runs == "last":
        found = sorted(found, key=lambda f: int(f[1].get("run") or 0))
        keep = found[-1]
        left = [dict(path=p, reason=f"a later run of the same scan is used ({Path(keep[0]).name}; dataset.runs: last)")
                for p, _, _ in found[:-1]]
        return [keep], left, None
    hints = "; ".join(f"{k} ({', '.join(sorted(str(e.get(k, '(none)')) for _, e, _ in found))})" for k in differ)
    how = ("set dataset.runs: last to keep the highest run, or filter on run" if differ == ["run"]
           else f"add one of them to dataset.filters.{mod}, e.g. {differ[0]}: {found[0][1].get(differ[0], '...')}")
    return found, [], f"{where}; they differ in {hints}: {how}"


def discover(bids_dir, modalities=("T1w", "pet"), filters=None, runs: str = "last", participants=None,
             pet_route: str = "via_t1", cache_dir=None) -> Selection:
    """Index and select (:func:`index_dataset`, :func:`select_scans`); never raises on a user's
    dataset (a dataset that cannot be indexed gives no scans and a problem). Lists files only:
    no image is opened."""
    root = Path(bids_dir)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        return Selection(pd.DataFrame(columns=SCAN_COLUMNS), pd.DataFrame(columns=["path", "reason"]),
                         [f"{root}: bids_dir {what} (dataset.bids_dir in the config)"])
    try:
        index, _ = index_dataset(root, cache_dir)
    except Exception as exc:  # noqa: BLE001 - reported by check_inputs, never a parse-time crash
        return Selection(pd.DataFrame(columns=SCAN_COLUMNS), pd.DataFrame(columns=["path", "reason"]),
                         [f"{root}: the dataset could not be indexed ({type(exc).__name__}: {exc})"])
    return select_scans(index, root, modalities, filters, runs, participants, pet_route)


def session_modalities(scans: pd.DataFrame, modalities) -> dict[tuple[str, str], tuple[str, ...]]:
    """{(subject, session) without prefixes: the modalities it has, in ``modalities`` order}."""
    have: dict[tuple[str, str], set] = {}
    for p, s, m in zip(scans["participant_id"], scans["session_id"], scans["modality"]):
        have.setdefault((p[4:], s), set()).add(m)
    return {k: tuple(m for m in modalities if m in v) for k, v in sorted(have.items())}


def scans_digest(scans: pd.DataFrame, modalities, bids_dir=None) -> str:
    """Digest of the scans of ``modalities`` (participant, session, modality, path) and of the clinical
    tables a split or pack reads (participants.tsv, the sessions.tsv files): a new session, a
    dropped scan or an edited diagnosis changes it, and so reruns what uses it."""
    h = hashlib.sha256()
    sel = scans[scans["modality"].isin(list(modalities))]
    for row in sel[["participant_id", "session_id", "modality", "path"]].itertuples(index=False):
        h.update("\t".join(row).encode() + b"\n")
    if bids_dir is not None:
        tables = [Path(bids_dir) / "participants.tsv"]
        tables += [Path(bids_dir) / p / f"{p}_sessions.tsv" for p in sorted(set(sel["participant_id"]))]
        for t in tables:
            try:
                h.update(t.read_bytes())
            except OSError:
                h.update(b"(unreadable)")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------


def read_table(path, required) -> tuple[pd.DataFrame | None, list[str]]:
    """A BIDS TSV (UTF-8, tab-separated, ``n/a`` for missing values) as strings, and its problems."""
    path = Path(path)
    if not path.is_file():
        return None, [f"{path}: missing"]
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                      f"BIDS tables are UTF-8: re-save it as UTF-8"]
    except OSError as exc:
        return None, [f"{path}: unreadable ({exc.strerror})"]
    header = text.splitlines()[0] if text.strip() else ""
    if not header:
        return None, [f"{path}: empty table"]
    if "\t" not in header and "," in header:
        return None, [f"{path}: comma-separated; BIDS tables are tab-separated (the header "
                      f"{header[:60]!r} has no tab)"]
    try:
        from io import StringIO

        table = pd.read_csv(StringIO(text), sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported
        return None, [f"{path}: unreadable as a tab-separated table ({exc})"]
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        return None, [f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(table.columns)})"]
    return table, []


def read_participants(bids_dir) -> tuple[pd.DataFrame | None, list[str]]:
    """participants.tsv and the problems found in it (missing file, encoding, separator, columns,
    duplicates, labels, numbers)."""
    path = Path(bids_dir) / "participants.tsv"
    table, problems = read_table(path, PARTICIPANT_COLUMNS)
    if table is None:
        return None, problems
    for pid in table["participant_id"][table["participant_id"].duplicated()].unique():
        problems.append(f"{path}: duplicate participant {pid}")
    for pid in table["participant_id"]:
        if not re.fullmatch(r"sub-[A-Za-z0-9]+", str(pid)):
            problems.append(f"{path}: participant_id {pid!r} is not of the form sub-<label>")
    problems += _numbers(path, table, "participant_id")
    return table, problems


def _numbers(path, table, key) -> list[str]:
    out = []
    for col in ("age", "mmse"):
        if col in table.columns:
            bad = table[col].notna() & pd.to_numeric(table[col], errors="coerce").isna()
            for k, val in zip(table.loc[bad, key], table.loc[bad, col]):
                out.append(f"{path}: {col} of {k} is not a number ({val!r})")
    return out


def read_sessions(bids_dir, pid) -> tuple[pd.DataFrame | None, list[str]]:
    """``sub-<label>/sub-<label>_sessions.tsv`` (None without problems when the dataset has none)."""
    path = Path(bids_dir) / pid / f"{pid}_sessions.tsv"
    if not path.is_file():
        return None, []
    table, problems = read_table(path, ("session_id",))
    if table is None:
        return None, problems
    table["session_id"] = table["session_id"].astype(str).str.replace("ses-", "", regex=False)
    for ses in table["session_id"][table["session_id"].duplicated()].unique():
        problems.append(f"{path}: duplicate session ses-{ses}")
    return table, problems + _numbers(path, table, "session_id")


def clinical_values(bids_dir, participants: pd.DataFrame, scans: pd.DataFrame, diagnoses,
                    labelled: bool = True) -> tuple[pd.DataFrame, list]:
    """One row per (participant, session) of ``scans``: the participant's columns, with diagnosis,
    age and mmse from the session's row of sessions.tsv where it gives them (not ``n/a``), and the
    problems (a session without a diagnosis or age, a diagnosis not in ``diagnoses``). An unlabelled
    dataset (``labelled`` False: new scans a trained model is applied to) needs neither; its diagnoses
    are ``n/a``, whatever the tables say."""
    root = Path(bids_dir)
    ptsv = root / "participants.tsv"
    known = set(diagnoses)
    by_pid = participants.drop_duplicates("participant_id").set_index("participant_id")
    rows, problems = [], []
    sessions = scans[["participant_id", "session_id"]].drop_duplicates()
    for pid, grp in sessions.groupby("participant_id", sort=True):
        if pid not in by_pid.index:
            continue
        table, probs = read_sessions(root, pid)
        problems += probs
        per_ses = {} if table is None else {r["session_id"]: r for _, r in table.iterrows()}
        stsv = root / pid / f"{pid}_sessions.tsv"
        for ses in sorted(grp["session_id"]):
            row = {c: by_pid.loc[pid, c] for c in by_pid.columns}
            row.update(participant_id=pid, session_id=ses)
            srow = per_ses.get(ses)
            for col in SESSION_VALUES:
                if srow is not None and col in srow.index and isinstance(srow[col], str):
                    row[col] = srow[col]
            if not labelled:
                row["diagnosis"] = "n/a"
            for col in REQUIRED_VALUES if labelled else ():
                val = row.get(col)
                if not isinstance(val, str):
                    where = f"{ptsv}" + (f" or {stsv}" if table is not None else "")
                    if table is not None and col in table.columns and srow is None:
                        said = f"is not given: {stsv.name} has no row ses-{ses}"
                    elif col in by_pid.columns or (table is not None and col in table.columns):
                        said = "is n/a"
                    else:
                        said = "is not given (no such column)"
                    problems.append(f"{where}: {col} of {pid} ses-{ses} {said}: give it, or leave the participant "
                                    f"out (dataset.participants.exclude)")
            dx = row.get("diagnosis")
            if labelled and isinstance(dx, str) and dx not in known:
                src = stsv if srow is not None and isinstance(srow.get("diagnosis"), str) else ptsv
                problems.append(f"{src}: diagnosis {dx!r} of {pid} ses-{ses} is not one of {sorted(known)} "
                                f"(dataset.diagnoses)")
            rows.append(row)
    return pd.DataFrame(rows), list(dict.fromkeys(problems))


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


def _link_problem(path: Path) -> str | None:
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return f"{path}: symbolic link loop (the link points back to itself)"
        except OSError:
            pass
        target = os.readlink(path)
        annex = " (an unfetched git-annex/DataLad file? run `datalad get` on it)" if ".git/annex" in target else ""
        return f"{path}: broken symbolic link to {target}{annex}"
    if not path.exists():
        return f"{path}: missing file"
    return None


def check_image(path) -> tuple[dict, list[str]]:
    """Read one image completely; return its header summary and its problems."""
    path = Path(path)
    info = {"shape": "", "voxel_size_mm": "", "orientation": "", "bounds": None}
    link = _link_problem(path)
    if link:
        return info, [link]
    if path.stat().st_size == 0:
        return info, [f"{path}: empty file (0 bytes)"]
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if path.name.endswith(".nii") and magic == b"\x1f\x8b":
        return info, [f"{path}: gzip-compressed data in a file named .nii: rename it to .nii.gz"]
    if path.name.endswith(".nii.gz") and magic != b"\x1f\x8b":
        return info, [f"{path}: named .nii.gz but not gzip-compressed: rename it to .nii (or compress it)"]
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001
        return info, [f"{path}: not a readable NIfTI ({type(exc).__name__}: {exc})"]
    shape = img.shape
    info["shape"] = "x".join(str(s) for s in shape)
    if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
        return info, [f"{path}: image is not 3D (shape {shape})"]
    zooms = img.header.get_zooms()[:3]
    info["voxel_size_mm"] = "x".join(f"{z:.3g}" for z in zooms)
    problems = []
    hdr = img.header
    if isinstance(img, nib.Nifti1Image) and int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 0:
        problems.append(f"{path}: no orientation: qform_code and sform_code are both 0, so the header does not "
                        f"say where the voxels are in the world; set a valid qform or sform (e.g. with "
                        f"fslorient or nibabel) from the scanner's data")
    elif not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-9:
        problems.append(f"{path}: invalid affine in the header")
    else:
        info["orientation"] = "".join(nib.aff2axcodes(img.affine))
        corners = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                            for k in (0, shape[2] - 1)], float) @ img.affine.T
        info["bounds"] = (corners[:, :3].min(0), corners[:, :3].max(0))
    if any(not math.isfinite(z) or z <= 0 for z in zooms):
        problems.append(f"{path}: invalid voxel size {zooms}")
    elif min(shape[:3]) < MIN_VOXELS or min(s * z for s, z in zip(shape[:3], zooms)) < MIN_FIELD_OF_VIEW_MM:
        fov = "x".join(f"{s * z:.0f}" for s, z in zip(shape[:3], zooms))
        problems.append(f"{path}: degenerate image of {info['shape']} voxels ({fov} mm): a brain scan needs at "
                        f"least {MIN_VOXELS} voxels and {MIN_FIELD_OF_VIEW_MM:.0f} mm along each axis "
                        f"(a single slice or a localizer?)")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
        return info, problems + [f"{path}: corrupt or truncated image data ({type(exc).__name__}: {exc})"]
    if np.issubdtype(data.dtype, np.floating):
        n_nan, n_inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
        if n_nan:
            problems.append(f"{path}: {n_nan} NaN voxel(s)")
        if n_inf:
            problems.append(f"{path}: {n_inf} infinite voxel(s)")
        finite = data[np.isfinite(data)]
    else:
        finite = data.ravel()
    if finite.size == 0 or float(finite.max()) == float(finite.min()):
        problems.append(f"{path}: empty image (all voxels equal)")
    return info, problems


def _gap_mm(a, b) -> float:
    """Distance between two axis-aligned boxes (0 when they overlap)."""
    gap = np.maximum(0.0, np.maximum(a[0] - b[1], b[0] - a[1]))
    return float(np.linalg.norm(gap))


def check_inputs(bids_dir, diagnoses, modalities=("T1w", "pet"), filters=None, runs: str = "last",
                 participants=None, pet_route: str = "via_t1", threads: int = 1,
                 labelled: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check a BIDS dataset; return (manifest, skipped) or raise :class:`InputError`.

    The manifest has one row per selected image (:func:`select_scans`) with the session's
    clinical values (:func:`clinical_values`), the image's entities, shape, voxel size and
    orientation; ``skipped`` lists every image file left out and why. Every problem (a
    missing or unreadable bids_dir or table, a table that is not UTF-8 or not tab-separated,
    missing columns, duplicate or malformed participants, unknown or missing diagnoses,
    images of participants not in participants.tsv, mis-named files, several images that no
    filter tells apart, missing files, broken or looping links, gzip data under ``.nii``,
    unreadable, corrupt or truncated NIfTI, no orientation (qform and sform codes 0),
    images that are not 3D or are degenerate, NaN or Inf voxels, constant images, and on the
    ``via_t1`` route a PET that does not overlap its T1w in world space) is collected and
    reported together, each naming its file.
    """
    root = Path(bids_dir)
    sel = discover(root, modalities, filters, runs, participants, pet_route)
    if not root.is_dir():
        raise InputError(sel.problems)
    table, problems = read_participants(root)
    problems = problems + sel.problems
    scans = sel.scans
    if table is not None:
        listed = set(table["participant_id"])
        for pid in sorted(set(scans["participant_id"]) - listed):
            sess = sorted(scans.loc[scans["participant_id"] == pid, "session_id"].unique())
            problems.append(f"{root / pid}: session(s) {', '.join('ses-' + s for s in sess)} "
                            f"of participant {pid}, who is not in participants.tsv")
    if not len(scans) and not problems:
        problems.append(f"{root}: no {' or '.join(modalities)} image is selected "
                        f"(see dataset.filters and dataset.participants)")
    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
        results = list(pool.map(check_image, scans["path"]))
    for _, probs in results:
        problems.extend(probs)
    bounds = {(p, s, m): info["bounds"] for (p, s, m), (info, _) in
              zip(zip(scans.participant_id, scans.session_id, scans.modality), results)}
    if pet_route == "via_t1":
        for (p, s, m), box in bounds.items():
            t1 = bounds.get((p, s, "T1w"))
            if m == "pet" and box is not None and t1 is not None and _gap_mm(box, t1) > 0:
                pet_path = scans.path[(scans.participant_id == p) & (scans.session_id == s) & (scans.modality == m)]
                t1_path = scans.path[(scans.participant_id == p) & (scans.session_id == s) & (scans.modality == "T1w")]
                problems.append(f"{pet_path.iloc[0]}: does not overlap its session's T1w {t1_path.iloc[0]} in world "
                                f"space (their fields of view are {_gap_mm(box, t1):.0f} mm apart): one header's "
                                f"orientation or origin is wrong; registration.pet_route via_t1 starts from them")
    clinical = pd.DataFrame()
    if table is not None:
        clinical, probs = clinical_values(root, table, scans, diagnoses, labelled)
        problems += probs
    if problems:
        raise InputError(problems)
    infos = pd.DataFrame([{k: v for k, v in info.items() if k != "bounds"} for info, _ in results])
    manifest = pd.concat([scans.reset_index(drop=True), infos], axis=1)
    manifest = manifest.merge(clinical, on=["participant_id", "session_id"], how="left")
    manifest = manifest.sort_values(["participant_id", "session_id", "modality"]).reset_index(drop=True)
    listed_without = sorted(set(table["participant_id"]) - set(manifest["participant_id"]))
    skipped = pd.concat([sel.skipped, pd.DataFrame(
        [dict(path=str(root / p), reason="participant in participants.tsv without a selected scan")
         for p in listed_without], columns=["path", "reason"])], ignore_index=True)
    return manifest, skipped


def run_check(bids_dir, settings: dict, pet_route: str, out_tsv, skipped_tsv, threads: int = 1) -> None:
    """Check the dataset and write the manifest and the skipped-files table (nothing on failure).

    ``settings``: the ``dataset`` config (diagnoses, modalities, filters, runs, participants, labelled)."""
    from braindl.io import write_tsv

    manifest, skipped = check_inputs(bids_dir, settings["diagnoses"], settings["modalities"], settings.get("filters"),
                                     settings.get("runs", "last"), settings.get("participants"), pet_route, threads,
                                     settings.get("labelled", True))
    write_tsv(skipped_tsv, skipped)
    write_tsv(out_tsv, manifest)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_scans(rows, out_tsv, digest: str | None = None) -> None:
    """Write a list of scans (rows of participant_id, session_id, modality, path) as a TSV, with the
    digest of the data it stands for as a last column. The workflow writes one per session and one
    per modality from the parse-time selection: the rules that must rerun when a session is added or
    a table edited depend on these small files (not on the manifest, which every change rewrites)."""
    from braindl.io import write_tsv

    table = pd.DataFrame(list(rows), columns=["participant_id", "session_id", "modality", "path"])
    if digest is not None:
        table["digest"] = digest
    write_tsv(out_tsv, table)
