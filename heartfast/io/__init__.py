"""Reading ECG databases into `Record`s."""
from heartfast.io.record import FIDUCIALS, LEADS_12, Annotations, ECGDataError, Label, Record, canonical_lead

__all__ = ["FIDUCIALS", "LEADS_12", "Annotations", "ECGDataError", "Label", "Record", "canonical_lead"]
