"""Reading ECG databases into `Record`s."""
from heartfast.io.challenge import read_challenge
from heartfast.io.ludb import read_ludb
from heartfast.io.mitbih import read_mitbih
from heartfast.io.ptbxl import PtbXl
from heartfast.io.qtdb import read_qtdb
from heartfast.io.record import FIDUCIALS, LEADS_12, Annotations, ECGDataError, Label, Record, canonical_lead
from heartfast.io.sources import RecordRef, count_records, list_records, open_source
from heartfast.io.wfdb_reader import read_wfdb

__all__ = [
    "FIDUCIALS", "LEADS_12", "Annotations", "ECGDataError", "Label", "PtbXl", "Record", "RecordRef",
    "canonical_lead", "count_records", "list_records", "open_source", "read_challenge", "read_ludb",
    "read_mitbih", "read_qtdb", "read_wfdb",
]
