"""Patient-level train/val/test splits: no patient's records fall in two splits."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

FOLD_SPLITS = {9: "val", 10: "test"}   # PTB-XL strat_fold convention; other folds are train


def patient_key(record) -> str:
    """The patient a record belongs to (the record itself where the database names no patient)."""
    return f"{record.database}:{record.patient_id if record.patient_id is not None else record.id}"


def hashed_split(key: str, val: float = 0.1, test: float = 0.1) -> str:
    """Stable split from a hash of the patient key (same answer on every machine and run)."""
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def record_split(record) -> str:
    """Split of one record: PTB-XL-style folds (9 val, 10 test) where present, else a patient hash."""
    if record.fold is not None:
        return FOLD_SPLITS.get(int(record.fold), "train")
    if record.split in ("train", "val", "test"):
        return record.split
    return hashed_split(patient_key(record))


class PatientSplitter:
    """Assigns splits record by record, pinning each patient to the split of their first record seen."""

    def __init__(self) -> None:
        self._by_patient: dict[str, str] = {}

    def __call__(self, record) -> str:
        return self._by_patient.setdefault(patient_key(record), record_split(record))

    def assign(self, records: Iterable) -> dict[str, str]:
        return {record.id: self(record) for record in records}
