"""PTB-XL: 12-lead 10 s records at 100 and 500 Hz with SCP-ECG statements, reports and folds.

Metadata facts (Wagner et al. 2020, Table 2): sex is 0 = male, 1 = female; age 300 marks patients over
89 (stored here as 90 with extra['age_over_89']); strat_fold 1-8 train, 9 validation, 10 test.
"""
from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from heartfast.io.header import read_header
from heartfast.io.record import ECGDataError, Label, Record
from heartfast.io.wfdb_reader import read_wfdb

PTBXL_RATES = (100, 500)
_SPLITS = {9: "val", 10: "test"}
_NOISE_COLUMNS = ("baseline_drift", "static_noise", "burst_noise", "electrodes_problems", "extra_beats", "pacemaker")


def is_ptbxl(folder: Path) -> bool:
    return (folder / "ptbxl_database.csv").is_file()


@dataclass(frozen=True)
class ScpStatement:
    code: str
    description: str
    kinds: tuple[str, ...]
    superclass: str
    subclass: str


class PtbXl:
    """One PTB-XL folder at one sampling rate (100 or 500 Hz)."""

    def __init__(self, root: str | Path, fs: int = 100) -> None:
        if fs not in PTBXL_RATES:
            raise ValueError(f"PTB-XL comes at {PTBXL_RATES} Hz, not {fs}")
        self.root = Path(root)
        self.fs = fs
        self.database_csv = self.root / "ptbxl_database.csv"
        self.statements_csv = self.root / "scp_statements.csv"

    @cached_property
    def rows(self) -> dict[str, dict[str, str]]:
        """ptbxl_database.csv rows by ecg_id (as written: '1', '2', ...)."""
        rows = _read_csv(self.database_csv)
        try:
            return {str(int(float(r["ecg_id"]))): r for r in rows}
        except (KeyError, ValueError) as exc:
            raise ECGDataError(self.database_csv, f"bad ecg_id column: {exc}") from None

    @cached_property
    def statements(self) -> dict[str, ScpStatement]:
        out = {}
        for row in _read_csv(self.statements_csv):
            code = row.get("") or row.get("Unnamed: 0") or ""
            kinds = tuple(k for k in ("diagnostic", "form", "rhythm") if row.get(k, "").strip() in ("1", "1.0"))
            out[code] = ScpStatement(code, row.get("description", ""), kinds,
                                     row.get("diagnostic_class", ""), row.get("diagnostic_subclass", ""))
        return out

    def header_path(self, ecg_id: str) -> Path:
        column = "filename_lr" if self.fs == 100 else "filename_hr"
        return self.root / (self.rows[ecg_id][column] + ".hea")

    def id_for(self, header: Path) -> str | None:
        """The ecg_id whose file (at this rate) is `header`, None if the table does not list it."""
        column = "filename_lr" if self.fs == 100 else "filename_hr"
        relative = header.resolve().with_suffix("").relative_to(self.root.resolve()).as_posix()
        return next((i for i, row in self.rows.items() if row[column] == relative), None)

    def available_ids(self) -> list[str]:
        """ecg_ids whose header exists at this rate (the 500 Hz folder may hold fewer records)."""
        return [i for i in sorted(self.rows, key=int) if self.header_path(i).is_file()]

    def read(self, ecg_id: str) -> Record:
        row = self.rows[ecg_id]
        header = read_header(self.header_path(ecg_id))
        record = read_wfdb(header.path, "ptb-xl", header)
        record.id = ecg_id
        record.patient_id = _int_text(row.get("patient_id", ""))
        _set_age(record, row.get("age", ""), self.database_csv)
        record.sex = {"0": "M", "1": "F"}.get(_int_text(row.get("sex", "")) or "")
        record.report = row.get("report", "").strip()
        record.labels = self.labels(row.get("scp_codes", "{}"), ecg_id)
        fold = _int_text(row.get("strat_fold", ""))
        if fold:
            record.fold = int(fold)
            record.split = _SPLITS.get(record.fold, "train")
        record.extra.update({"heart_axis": row.get("heart_axis", ""), "ecg_id": int(ecg_id)})
        record.extra.update({c: row[c].strip() for c in _NOISE_COLUMNS if row.get(c, "").strip()})
        return record

    def labels(self, scp_codes: str, ecg_id: str) -> list[Label]:
        try:
            codes = ast.literal_eval(scp_codes)
            if not isinstance(codes, dict):
                raise ValueError("not a dict")
        except (ValueError, SyntaxError) as exc:
            raise ECGDataError(self.database_csv, f"ecg_id {ecg_id}: scp_codes {scp_codes!r}: {exc}") from None
        labels = []
        for code, likelihood in codes.items():
            st = self.statements.get(code, ScpStatement(code, "", (), "", ""))
            labels.append(Label(code=code, system="scp", description=st.description, likelihood=float(likelihood),
                                kinds=st.kinds, superclass=st.superclass, subclass=st.subclass))
        return labels


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise ECGDataError(path, "file missing") from None
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise ECGDataError(path, f"cannot read table: {exc}") from None


def _int_text(text: str) -> str | None:
    """'15709.0' -> '15709'; '' -> None."""
    text = text.strip()
    return str(int(float(text))) if text else None


def _set_age(record: Record, text: str, path: Path) -> None:
    text = text.strip()
    if not text:
        return
    try:
        age = float(text)
    except ValueError:
        raise ECGDataError(path, f"ecg_id {record.id}: age {text!r} is not a number") from None
    if age >= 300:  # PTB-XL's code for 'over 89'
        record.age, record.extra["age_over_89"] = 90.0, True
    else:
        record.age = age
