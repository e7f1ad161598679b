"""MIT-BIH style records: signal plus reference beat annotations (.atr)."""
from __future__ import annotations

import re
from pathlib import Path

from heartfast.io.annotations import beats
from heartfast.io.header import read_header
from heartfast.io.record import Annotations, Record
from heartfast.io.wfdb_reader import read_wfdb


def read_mitbih(path: str | Path, database: str = "mitdb") -> Record:
    """Record with `annotations.beat_samples/beat_symbols` from `.atr`; rhythm changes in extra."""
    header = read_header(path)
    record = read_wfdb(header.path, database, header, allow_unnamed_leads=True)
    samples, symbols, other = beats(header.record_path, "atr")
    record.annotations = Annotations(beat_samples=samples, beat_symbols=symbols)
    record.extra["rhythm_annotations"] = other
    set_demographics(record, header.comments)
    return record


def set_demographics(record: Record, comments: tuple[str, ...]) -> None:
    """Age and sex from PhysioNet comment lines: '69 M 1085 1629 x1' (MIT-BIH) or 'Age: 47  Sex: M'."""
    for line in comments:
        plain = re.fullmatch(r"(\d+)\s+([MF])\b.*", line)
        tagged = re.fullmatch(r"Age:\s*(\d+)\s+Sex:\s*([MF])\b.*", line)
        match = plain or tagged
        if match:
            record.age, record.sex = float(match[1]), match[2]
            return
