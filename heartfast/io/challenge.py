"""PhysioNet/CinC Challenge 2020/2021 records: `.mat` + `.hea` with `# Age:`, `# Sex:`, `# Dx:` (SNOMED CT)."""
from __future__ import annotations

import re
from pathlib import Path

from heartfast.io.header import read_header
from heartfast.io.record import ECGDataError, Label, Record
from heartfast.io.wfdb_reader import read_wfdb

# English names of SNOMED CT codes common in the Challenge data (the Challenge's dx mapping tables).
SNOMED_NAMES: dict[str, str] = {
    "164889003": "atrial fibrillation",
    "164890007": "atrial flutter",
    "6374002": "bundle branch block",
    "426627000": "bradycardia",
    "733534002": "complete left bundle branch block",
    "713427006": "complete right bundle branch block",
    "270492004": "1st degree AV block",
    "195042002": "2nd degree AV block",
    "27885002": "complete heart block",
    "713426002": "incomplete right bundle branch block",
    "39732003": "left axis deviation",
    "47665007": "right axis deviation",
    "445118002": "left anterior fascicular block",
    "445211001": "left posterior fascicular block",
    "164909002": "left bundle branch block",
    "59118001": "right bundle branch block",
    "251146004": "low QRS voltages",
    "698252002": "nonspecific intraventricular conduction disorder",
    "426783006": "sinus rhythm",
    "427393009": "sinus arrhythmia",
    "426177001": "sinus bradycardia",
    "427084000": "sinus tachycardia",
    "284470004": "premature atrial contraction",
    "63593006": "supraventricular premature beats",
    "427172004": "premature ventricular contractions",
    "17338001": "ventricular premature beats",
    "164884008": "ventricular ectopics",
    "11157007": "ventricular bigeminy",
    "251180001": "ventricular trigeminy",
    "10370003": "pacing rhythm",
    "365413008": "poor R wave progression",
    "164947007": "prolonged PR interval",
    "111975006": "prolonged QT interval",
    "164917005": "Q wave abnormal",
    "164934002": "T wave abnormal",
    "59931005": "T wave inversion",
    "55930002": "ST changes",
    "428750005": "nonspecific ST-T abnormality",
    "429622005": "ST depression",
    "164931005": "ST elevation",
    "164861001": "myocardial ischemia",
    "164865005": "myocardial infarction",
    "164873001": "left ventricular hypertrophy",
    "55827005": "left ventricular high voltage",
    "89792004": "right ventricular hypertrophy",
    "67741000119109": "left atrial enlargement",
    "713422000": "atrial tachycardia",
    "426761007": "supraventricular tachycardia",
    "74390002": "Wolff-Parkinson-White pattern",
}


def is_challenge_header(comments: tuple[str, ...]) -> bool:
    return any(line.startswith("Dx:") for line in comments)


def read_challenge(path: str | Path) -> Record:
    """Record with SNOMED labels (system 'snomed'), age and sex from the header comments."""
    header = read_header(path)
    record = read_wfdb(header.path, "cinc", header)
    fields = {}
    for line in header.comments:
        match = re.fullmatch(r"(\w+):\s*(.*)", line)
        if match:
            fields[match[1]] = match[2].strip()
    if "Dx" not in fields:
        raise ECGDataError(header.path, "Challenge header without a '# Dx:' line")
    record.labels = [Label(code=c, system="snomed", description=SNOMED_NAMES.get(c, ""))
                     for c in (c.strip() for c in fields["Dx"].split(",")) if c]
    if any(not label.code.isdigit() for label in record.labels):
        raise ECGDataError(header.path, f"'# Dx: {fields['Dx']}' is not a list of SNOMED codes")
    age = fields.get("Age", "")
    record.age = float(age) if re.fullmatch(r"\d+(\.\d+)?", age) else None
    record.sex = {"male": "M", "m": "M", "female": "F", "f": "F"}.get(fields.get("Sex", "").lower())
    record.extra.update({k.lower(): v for k, v in fields.items() if k in ("Rx", "Hx", "Sx") and v != "Unknown"})
    return record
