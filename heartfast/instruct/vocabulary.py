"""SCP-ECG vocabulary in English: statements, label groups, synonym groups and mappings from other systems.

Every database's labels are brought onto the 71 PTB-XL SCP-ECG statements where a mapping exists (Challenge
SNOMED CT codes, LUDB diagnosis phrases, synthetic findings already in SCP codes), so that question building,
distractor choice and text scoring share one vocabulary. Synonym groups list statements that overlap in
meaning (a generic statement and its specific forms, two names for one finding); a distractor is never in a
group with a true label.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from heartfast.io.scp_table import SCP_STATEMENTS

GROUPS: tuple[str, ...] = ("diagnosis", "waveform", "rhythm")
GROUP_KIND = {"diagnosis": "diagnostic", "waveform": "form", "rhythm": "rhythm"}
SUPERCLASSES: tuple[str, ...] = ("NORM", "MI", "STTC", "CD", "HYP")
NORMAL = "_normal"   # pseudo-code of the "normal" answer variants

# Cleaner English than the csv's for a few statements (parentheticals, typos, bare locations).
_DISPLAY_NAMES = {
    "IVCD": "non-specific intraventricular conduction disturbance",
    "EL": "electrolyte disturbance or drug effect",
    "BIGU": "bigeminal pattern",
    "TRIGU": "trigeminal pattern",
    "WPW": "Wolff-Parkinson-White syndrome",
    "ISC_": "non-specific ischemic ST-T changes",
    "ISCAL": "ischemic ST-T changes in anterolateral leads",
    "ISCIN": "ischemic ST-T changes in inferior leads",
    "ISCIL": "ischemic ST-T changes in inferolateral leads",
    "ISCAS": "ischemic ST-T changes in anteroseptal leads",
    "ISCLA": "ischemic ST-T changes in lateral leads",
    "ISCAN": "ischemic ST-T changes in anterior leads",
    "PRC(S)": "premature complexes",
    "DIG": "digitalis effect",
    "LVOLT": "low QRS voltage in the frontal and horizontal leads",
    "LAO/LAE": "left atrial overload/enlargement",
    "RAO/RAE": "right atrial overload/enlargement",
}

# Further English phrases that name a statement in free text (matched case-insensitively, whole words).
_ALIASES: dict[str, tuple[str, ...]] = {
    "NORM": ("normal ecg", "normal electrocardiogram", "within normal limits"),
    "CLBBB": ("left bundle branch block", "lbbb"),
    "CRBBB": ("right bundle branch block", "rbbb"),
    "IRBBB": ("incomplete rbbb",),
    "ILBBB": ("incomplete lbbb",),
    "1AVB": ("1st degree av block", "first-degree av block", "first degree atrioventricular block"),
    "2AVB": ("2nd degree av block", "second-degree av block", "mobitz"),
    "3AVB": ("3rd degree av block", "third-degree av block", "complete heart block", "complete av block"),
    "LAFB": ("left anterior hemiblock",),
    "LPFB": ("left posterior hemiblock",),
    "LVH": ("lvh",),
    "RVH": ("rvh",),
    "LAO/LAE": ("left atrial enlargement", "left atrial overload", "left atrial abnormality"),
    "RAO/RAE": ("right atrial enlargement", "right atrial overload", "right atrial abnormality"),
    "AFIB": ("atrial fibrillation", "afib"),
    "AFLT": ("atrial flutter",),
    "STACH": ("sinus tachycardia",),
    "SBRAD": ("sinus bradycardia",),
    "SR": ("sinus rhythm", "normal sinus rhythm"),
    "PVC": ("premature ventricular contraction", "ventricular extrasystole", "ventricular premature beat"),
    "PAC": ("premature atrial contraction", "atrial extrasystole", "atrial premature beat"),
    "LNGQT": ("prolonged qt", "long qt"),
    "LPR": ("prolonged pr", "long pr interval"),
    "STD_": ("st depression", "st-segment depression", "st segment depression"),
    "STE_": ("st elevation", "st-segment elevation", "st segment elevation"),
    "INVT": ("t-wave inversion", "t wave inversion", "inverted t waves"),
    "LOWT": ("low t waves", "flat t waves", "flattened t waves"),
    "QWAVE": ("pathological q waves", "q waves"),
    "WPW": ("wolff-parkinson-white", "wpw", "ventricular pre-excitation"),
    "PACE": ("pacemaker", "paced rhythm"),
    "LVOLT": ("low qrs voltage", "low voltage"),
    "HVOLT": ("high qrs voltages",),
    "IMI": ("inferior mi", "inferior infarction"),
    "AMI": ("anterior mi", "anterior infarction"),
    "ASMI": ("anteroseptal mi", "anteroseptal infarction"),
    "ALMI": ("anterolateral mi", "anterolateral infarction"),
    "LMI": ("lateral mi", "lateral infarction"),
    "PMI": ("posterior mi", "posterior infarction"),
}

# Statements that overlap in meaning: a distractor never shares a group with a true label.
SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(frozenset(g) for g in (
    {"NORM", NORMAL}, {"SR", NORMAL}, {"SR", "SARRH"},
    {"LVH", "VCLVH", "HVOLT"}, {"1AVB", "LPR"},
    {"IMI", "ILMI", "IPLMI", "IPMI", "INJIN", "INJIL"},            # inferior territory
    {"AMI", "ASMI", "ALMI", "INJAS", "INJAL"},                      # anterior territory
    {"LMI", "ALMI", "ILMI", "IPLMI", "INJAL", "INJLA", "INJIL"},     # lateral territory
    {"PMI", "IPMI", "IPLMI"},                                       # posterior territory
    {"QWAVE", "ABQRS"}, {"LVOLT", "ABQRS"}, {"HVOLT", "ABQRS"},
    {"ISC_", "ISCAL", "ISCIN", "ISCIL", "ISCAS", "ISCLA", "ISCAN", "NST_", "STD_"},
    {"NST_", "STD_", "STE_", "NDT"},
    {"TAB_", "NT_", "NDT", "INVT", "LOWT"},
    {"PRC(S)", "PVC", "PAC", "BIGU", "TRIGU"},
    {"SVARR", "SVTAC", "PSVT"}, {"SVARR", "AFIB"}, {"SVARR", "AFLT"}, {"SVARR", "PAC"},
    {"STACH", "SVTAC"},
))

# Answers for a group when no statement of it reaches the likelihood threshold (Heartcare's rule).
NORMAL_VARIANTS: dict[str, tuple[str, ...]] = {
    "diagnosis": ("Normal ECG", "Within normal limits", "No significant abnormality",
                  "Normal electrocardiogram"),
    "waveform": ("Normal waveform morphology", "No waveform abnormality", "Normal P-QRS-T morphology",
                 "Unremarkable waveforms"),
    "rhythm": ("Normal sinus rhythm", "Regular sinus rhythm within normal limits",
               "Sinus rhythm with normal rate", "Normal rhythm"),
}


@dataclass(frozen=True)
class Statement:
    """One SCP-ECG statement with its English name."""

    code: str
    name: str
    kinds: tuple[str, ...]
    superclass: str
    subclass: str


STATEMENTS: dict[str, Statement] = {
    code: Statement(code, _DISPLAY_NAMES.get(code, description), kinds, superclass, subclass)
    for code, (description, kinds, superclass, subclass) in SCP_STATEMENTS.items()
}


def english_name(code: str) -> str:
    """English name of an SCP code ("IMI" -> "inferior myocardial infarction")."""
    return STATEMENTS[code].name


def group_codes(group: str) -> list[str]:
    """SCP codes of a label group: diagnosis (diagnostic statements), waveform (form), rhythm."""
    kind = GROUP_KIND[group]
    return [code for code, st in STATEMENTS.items() if kind in st.kinds]


def overlapping(codes: Iterable[str]) -> set[str]:
    """The codes themselves plus every code sharing a synonym group with one of them."""
    out = set(codes)
    for group in SYNONYM_GROUPS:
        if out & group:
            out |= group
    return out


# --- other systems onto SCP --------------------------------------------------------------------------

# PhysioNet/CinC Challenge 2021 SNOMED CT codes (dx_mapping tables) -> SCP statements.
SNOMED_TO_SCP: dict[str, str] = {
    "426783006": "SR", "427084000": "STACH", "426177001": "SBRAD", "427393009": "SARRH",
    "164889003": "AFIB", "164890007": "AFLT", "270492004": "1AVB", "195042002": "2AVB",
    "54016002": "2AVB", "426183003": "2AVB", "27885002": "3AVB", "164909002": "CLBBB",
    "733534002": "CLBBB", "251120003": "ILBBB", "59118001": "CRBBB", "713427006": "CRBBB",
    "713426002": "IRBBB", "445118002": "LAFB", "445211001": "LPFB", "698252002": "IVCD",
    "164873001": "LVH", "55827005": "VCLVH", "89792004": "RVH", "67741000119109": "LAO/LAE",
    "253352002": "LAO/LAE", "446813000": "LAO/LAE", "446358003": "RAO/RAE", "253339007": "RAO/RAE",
    "164934002": "TAB_", "59931005": "INVT", "164930006": "NST_", "55930002": "NST_",
    "428750005": "NDT", "429622005": "STD_", "164931005": "STE_", "164917005": "QWAVE",
    "111975006": "LNGQT", "164947007": "LPR", "164861001": "ISC_", "426434006": "ISCAN",
    "425419005": "ISCIN", "425623009": "ISCLA", "54329005": "AMI", "284470004": "PAC",
    "63593006": "PAC", "251170000": "PAC", "427172004": "PVC", "17338001": "PVC", "164884008": "PVC",
    "11157007": "BIGU", "251180001": "TRIGU", "426761007": "SVTAC", "67198005": "PSVT",
    "10370003": "PACE", "74390002": "WPW", "251146004": "LVOLT", "164951009": "ABQRS",
}

# LUDB diagnosis phrases (lower case, matched as prefixes) -> SCP statements.
LUDB_TO_SCP: tuple[tuple[str, str], ...] = (
    ("sinus rhythm", "SR"), ("sinus bradycardia", "SBRAD"), ("sinus tachycardia", "STACH"),
    ("sinus arrhythmia", "SARRH"), ("atrial fibrillation", "AFIB"), ("atrial flutter", "AFLT"),
    ("complete left bundle branch block", "CLBBB"), ("complete right bundle branch block", "CRBBB"),
    ("incomplete left bundle branch block", "ILBBB"), ("incomplete right bundle branch block", "IRBBB"),
    ("i degree av block", "1AVB"), ("iii degree av", "3AVB"), ("ii degree av", "2AVB"),
    ("left anterior hemiblock", "LAFB"), ("left posterior hemiblock", "LPFB"),
    ("non-specific intravintricular conduction delay", "IVCD"),
    ("atrial extrasystole", "PAC"), ("ventricular extrasystole", "PVC"),
    ("left atrial hypertrophy", "LAO/LAE"), ("left atrial overload", "LAO/LAE"),
    ("right atrial hypertrophy", "RAO/RAE"), ("right atrial overload", "RAO/RAE"),
    ("left ventricular hypertrophy", "LVH"), ("right ventricular hypertrophy", "RVH"),
    ("ischemia: anterior wall", "ISCAN"), ("ischemia: inferior wall", "ISCIN"),
    ("ischemia: lateral wall", "ISCLA"), ("ischemia: septal", "ISCAS"), ("ischemia", "ISC_"),
    ("stemi: anterior wall", "AMI"), ("stemi: inferior wall", "IMI"), ("stemi: lateral wall", "LMI"),
    ("stemi: septal", "ASMI"), ("stemi: posterior wall", "PMI"),
    ("scar formation: anterior wall", "AMI"), ("scar formation: inferior wall", "IMI"),
    ("scar formation: lateral wall", "LMI"), ("scar formation: septal", "ASMI"),
    ("scar formation: posterior wall", "PMI"),
    ("non-specific repolarization abnormalities", "NST_"),
    ("pacemaker", "PACE"), ("unipolar", "PACE"), ("bipolar", "PACE"), ("biventricular pacing", "PACE"),
)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().rstrip("."))


def scp_code_for(code: str, system: str, description: str = "") -> str | None:
    """The SCP statement a label of any system names, or None where there is no faithful mapping."""
    if system == "scp":
        return code if code in STATEMENTS else None
    if system == "snomed":
        return SNOMED_TO_SCP.get(str(code))
    for text in (description, code.replace("_", " ")):
        key = _normalise(text)
        for prefix, scp in LUDB_TO_SCP:
            if key.startswith(prefix):
                return scp
    return None


# --- finding statements in free text -------------------------------------------------------------------

_NEGATION = re.compile(r"\b(no|not|without|absence of|absent|negative for|rules? out|free of)\b[^.;,]{0,25}$")


def is_negated(lowered: str, start: int) -> bool:
    """Whether the mention starting at `start` of lower-cased text follows a negation in its clause."""
    sentence_start = max(lowered.rfind(".", 0, start), lowered.rfind(";", 0, start)) + 1
    return bool(_NEGATION.search(lowered[sentence_start:start]))


def _phrases() -> list[tuple[str, str]]:
    pairs = []
    for code, st in STATEMENTS.items():
        names = {st.name.lower(), SCP_STATEMENTS[code][0].lower(), *_ALIASES.get(code, ())}
        pairs += [(name, code) for name in names]
    return sorted(pairs, key=lambda p: -len(p[0]))


_PHRASES = _phrases()
_PHRASE_RE = [(re.compile(r"(?<![\w-])" + re.escape(p) + r"(?![\w-])"), code) for p, code in _PHRASES]


def find_statements(text: str) -> set[str]:
    """SCP codes named in free text (longest phrase first, negated mentions such as "no ST elevation" skipped)."""
    lowered = text.lower()
    found: set[str] = set()
    taken = [False] * len(lowered)
    for pattern, code in _PHRASE_RE:
        for m in pattern.finditer(lowered):
            if any(taken[m.start():m.end()]):
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            if not is_negated(lowered, m.start()):
                found.add(code)
    return found
