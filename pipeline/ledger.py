"""The scoring ledger: which input file was scored into which assignment file, by which
model, in which run. It lives in the output (``_ledger.json``) and is committed with it,
so an incremental run knows, from the listing alone, what is new, what changed, and what
disappeared.

An input file counts as unchanged while its path, size and modification time (or ETag)
are those recorded and the model is the one that scored it.
"""

import hashlib
import json
from dataclasses import dataclass

from pipeline.storage import DataError

NAME = "_ledger.json"
FORMAT = "mixlake-ledger"
VERSION = 1
ENTRY_KEYS = {"input": str, "size": int, "stamp": str, "rows": int, "output": str,
              "model_id": str, "run_id": str}


def digest(entries):
    """sha256 of the entries as written: the manifest records it, so a hand edit shows."""
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def dumps(entries):
    return json.dumps({"format": FORMAT, "version": VERSION, "entries": entries,
                       "sha256": digest(entries)}, indent=1, sort_keys=True)


def read(location, name=NAME):
    """The entries of the ledger under ``location`` (a storage.Location), [] if none.

    Raises DataError, naming the file, for a ledger that is corrupt or was edited by hand.
    """
    if not location.exists(name):
        return []
    where = location.join(name).url
    try:
        payload = json.loads(location.read_text(name))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: the ledger is not valid JSON ({exc}); rerun with --full "
                        "to rescore everything and rebuild it") from None
    entries = payload.get("entries") if isinstance(payload, dict) else None
    problem = None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        problem = "not a mixlake ledger"
    elif payload.get("version") != VERSION:
        problem = f"ledger version {payload.get('version')!r} is not {VERSION}"
    elif not isinstance(entries, list) or not all(
            isinstance(e, dict) and set(e) == set(ENTRY_KEYS)
            and all(isinstance(e[k], t) for k, t in ENTRY_KEYS.items()) for e in entries):
        problem = "its entries are malformed"
    elif payload.get("sha256") != digest(entries):
        problem = "its entries do not match their checksum (edited by hand?)"
    if problem:
        raise DataError(f"{where}: {problem}; rerun with --full to rescore everything and "
                        "rebuild it")
    return entries


@dataclass
class Plan:
    """What an incremental run does with each selected input file."""

    to_score: list  # partitions.InputFile: new, changed, or scored by another model
    kept: list  # ledger entries carried over unchanged (their files too)
    removed: list  # ledger entries whose input is gone (or no longer selected)

    @property
    def nothing_to_do(self):
        return not self.to_score and not self.removed


def plan(selected, entries, model_id):
    """Compare the selected input files with the ledger."""
    by_input = {e["input"]: e for e in entries}
    to_score, kept = [], []
    for f in selected:
        entry = by_input.get(f.url)
        if entry and (entry["size"], entry["stamp"], entry["model_id"]) == (
                f.size, f.stamp, model_id):
            kept.append(entry)
        else:
            to_score.append(f)
    urls = {f.url for f in selected}
    removed = [e for e in entries if e["input"] not in urls]
    return Plan(to_score=to_score, kept=kept, removed=removed)


def entries_for(inputs, rows, outputs, model_id, run_id):
    """Ledger entries of the files a run scored."""
    return [{"input": f.url, "size": int(f.size), "stamp": str(f.stamp), "rows": int(r),
             "output": f"assignments/{out}", "model_id": model_id, "run_id": run_id}
            for f, r, out in zip(inputs, rows, outputs)]
