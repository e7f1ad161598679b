"""PTB-XL SCP statements used by the synthetic generator, and the English report built from them.

Labels come from the package's PTB-XL SCP table (heartfast.io.scp_table), so they look exactly like
PTB-XL's. Axis deviation is not an SCP statement in PTB-XL (it is the `heart_axis` column); synthetic
records carry it the same way, in `Record.extra['heart_axis']` ("LAD", "RAD" or "MID").
"""
from __future__ import annotations

from heartfast.io.record import Label
from heartfast.io.scp_table import SCP_STATEMENTS

AXIS_DEVIATIONS = {"LAD": "left axis deviation", "RAD": "right axis deviation"}


def scp_label(code: str) -> Label:
    description, kinds, superclass, subclass = SCP_STATEMENTS[code]
    return Label(code=code, system="scp", description=description, likelihood=100.0, kinds=kinds,
                 superclass=superclass, subclass=subclass)


def report_text(codes: list[str], axis: str, truth: dict) -> str:
    """A short English report: rhythm and rate, findings, axis, intervals."""
    rhythm = [c for c in codes if "rhythm" in SCP_STATEMENTS[c][1]]
    others = [c for c in codes if c not in rhythm and c != "NORM"]
    parts = [f"{SCP_STATEMENTS[rhythm[0]][0]} at {truth['hr_bpm']:.0f} bpm"]
    parts += [SCP_STATEMENTS[c][0] for c in others]
    if axis in AXIS_DEVIATIONS:
        parts.append(AXIS_DEVIATIONS[axis])
    if not others and axis == "MID":
        parts.append("normal ECG")
    intervals = f"QRS {truth['qrs_ms']:.0f} ms, QT/QTc {truth['qt_ms']:.0f}/{truth['qtc_bazett_ms']:.0f} ms"
    if truth["pr_ms"] is not None:
        intervals = f"PR {truth['pr_ms']:.0f} ms, " + intervals
    parts.append(intervals)
    return ". ".join(p[0].upper() + p[1:] for p in parts) + "."
