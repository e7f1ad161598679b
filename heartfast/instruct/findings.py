"""A record's labels as English findings on the SCP vocabulary, with the likelihood each answer may rely on."""
from __future__ import annotations

from dataclasses import dataclass

from heartfast.instruct.vocabulary import GROUP_KIND, STATEMENTS, scp_code_for

CERTAIN = 60.0  # Heartcare: an answer rests on the highest label with likelihood >= 60


@dataclass(frozen=True)
class Finding:
    """One label of a record. `likelihood` None means the database states it without a grade."""

    code: str                   # SCP code, or the source code where no SCP statement fits
    name: str                   # English
    kinds: tuple[str, ...]
    superclass: str
    likelihood: float | None
    scp: bool                   # True when `code` is an SCP statement

    @property
    def effective_likelihood(self) -> float:
        return 100.0 if self.likelihood is None else self.likelihood

    @property
    def certain(self) -> bool:
        return self.effective_likelihood >= CERTAIN

    def in_group(self, group: str) -> bool:
        return GROUP_KIND[group] in self.kinds


def certainty_phrase(likelihood: float | None) -> str:
    """Heartcare's graded wording: >= 80 highly likely, >= 50 possible, below that less likely."""
    if likelihood is None or likelihood >= 80:
        return "highly likely"
    return "possible" if likelihood >= 50 else "less likely"


def record_findings(record) -> list[Finding]:
    """Findings of a `heartfast.io.Record`, mapped onto SCP statements where possible, one per code.

    PTB-XL grades only diagnostic statements; its form and rhythm statements carry likelihood 0, which means
    "stated, not graded", so they become ungraded findings. A diagnostic statement with 0 stays at 0 (unknown).
    """
    by_code: dict[str, Finding] = {}
    for label in record.labels:
        code = scp_code_for(label.code, label.system, label.description)
        likelihood = label.likelihood
        if code is not None:
            st = STATEMENTS[code]
            if likelihood is not None and likelihood <= 0 and "diagnostic" not in st.kinds:
                likelihood = None
            finding = Finding(code, st.name, st.kinds, st.superclass, likelihood, True)
        else:
            name = (label.description or label.code).strip()
            finding = Finding(label.code, name[:1].lower() + name[1:], tuple(label.kinds),
                              label.superclass, likelihood, False)
        old = by_code.get(finding.code)
        if old is None or finding.effective_likelihood > old.effective_likelihood:
            by_code[finding.code] = finding
    return list(by_code.values())
