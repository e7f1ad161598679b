"""QT Database: manual wave boundaries (.q1c, first cardiologist) and reference beats (.atr)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from heartfast.io.annotations import annotated_range, beats, read_annotation, wave_fiducials
from heartfast.io.header import read_header
from heartfast.io.mitbih import set_demographics
from heartfast.io.record import Annotations, Record
from heartfast.io.wfdb_reader import read_wfdb


def read_qtdb(path: str | Path, annotator: str = "q1c") -> Record:
    """Record whose `annotations.waves['all']` holds the manual fiducials (they apply to all leads)."""
    header = read_header(path)
    record = read_wfdb(header.path, "qtdb", header, allow_unnamed_leads=True)
    ann = read_annotation(header.record_path, annotator)
    samples = np.asarray(ann.sample, dtype=np.int64)
    annotations = Annotations(waves={"all": wave_fiducials(samples, list(ann.symbol))},
                              annotated_range=annotated_range(samples))
    if Path(f"{header.record_path}.atr").is_file():
        annotations.beat_samples, annotations.beat_symbols, _ = beats(header.record_path, "atr")
    record.annotations = annotations
    record.extra["annotator"] = annotator
    set_demographics(record, header.comments)
    return record
