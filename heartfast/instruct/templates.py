"""Question templates (HeartAgent-style wording, varied) and the patient phrases they mention.

Placeholders: {patient} a phrase naming age and sex ("a 63-year-old man"), {Patient} the same capitalised,
{finding} an English finding name, {options} the A-D lines, {lead} a lead name.
"""
from __future__ import annotations

import random

TEMPLATES: dict[str, tuple[str, ...]] = {
    "DiagnosisClosedQA": (
        "This ECG was recorded from {patient}. Which diagnosis is most likely?\n{options}",
        "{Patient} had this 12-lead ECG. What is the most probable diagnostic statement?\n{options}",
        "Based on the ECG of {patient}, choose the best diagnosis.\n{options}",
        "Which of the following diagnoses best fits this ECG from {patient}?\n{options}",
        "Review the tracing of {patient}. Which diagnostic label applies?\n{options}",
        "An ECG was taken from {patient}. Select the most likely interpretation.\n{options}",
        "What does this ECG from {patient} most likely show?\n{options}",
        "For {patient}, which statement describes the ECG diagnosis best?\n{options}",
        "Pick the diagnosis supported by this ECG ({patient}).\n{options}",
        "Given the ECG below from {patient}, which condition is most likely present?\n{options}",
        "Which diagnostic statement would a cardiologist most likely assign to this ECG of {patient}?\n{options}",
        "Identify the principal diagnosis on this ECG from {patient}.\n{options}",
    ),
    "DiagnosisOpenQA": (
        "What diagnoses does this ECG from {patient} suggest?",
        "Describe the diagnostic findings on the ECG of {patient}.",
        "{Patient} underwent an ECG. What is your diagnostic interpretation?",
        "Which abnormalities, if any, are present on this ECG of {patient}?",
        "Summarise the diagnosis for this ECG recorded from {patient}.",
        "What is the clinical ECG diagnosis for {patient}?",
        "Interpret this 12-lead ECG of {patient} and state the likely diagnoses.",
        "List the diagnostic statements that apply to this ECG from {patient}, with how certain each is.",
        "Is this ECG from {patient} normal? If not, what does it show?",
        "Give the diagnostic impression of this ECG ({patient}).",
    ),
    "WaveformClosedQA": (
        "Which waveform abnormality is seen on this ECG from {patient}?\n{options}",
        "Looking at P waves, QRS complexes and ST-T segments of {patient}'s ECG, which finding is present?\n{options}",
        "Which morphological finding best describes this ECG of {patient}?\n{options}",
        "Select the waveform statement that applies to this tracing from {patient}.\n{options}",
        "What does the waveform morphology of this ECG ({patient}) show?\n{options}",
        "Which of these form statements fits the ECG of {patient}?\n{options}",
        "Examine the wave shapes on this ECG from {patient}. Which option is correct?\n{options}",
        "Which ST-T or QRS morphology finding is present for {patient}?\n{options}",
        "Choose the most likely waveform finding in this ECG of {patient}.\n{options}",
        "From the morphology of the complexes, which statement holds for this ECG ({patient})?\n{options}",
    ),
    "WaveformOpenQA": (
        "Describe the waveform morphology on this ECG from {patient}.",
        "What morphological abnormalities of the P, QRS, ST or T waves are present in {patient}'s ECG?",
        "Comment on the ST segments, T waves and QRS complexes of this ECG ({patient}).",
        "Are there waveform abnormalities on this ECG of {patient}? Describe them.",
        "What do the wave shapes on this tracing from {patient} show?",
        "Characterise the morphology of the complexes in this ECG recorded from {patient}.",
        "Which form statements apply to this ECG of {patient}?",
        "Describe any repolarisation or QRS morphology changes on this ECG ({patient}).",
    ),
    "RhythmClosedQA": (
        "What is the rhythm on this ECG from {patient}?\n{options}",
        "Identify the cardiac rhythm of {patient} on this tracing.\n{options}",
        "Which rhythm statement applies to this ECG of {patient}?\n{options}",
        "{Patient} had this ECG recorded. Which rhythm is shown?\n{options}",
        "Select the rhythm that best describes this ECG ({patient}).\n{options}",
        "Based on the P waves and RR intervals, what is the rhythm of {patient}?\n{options}",
        "Which of the following is the underlying rhythm in this ECG from {patient}?\n{options}",
        "Determine the rhythm on this 12-lead ECG of {patient}.\n{options}",
        "What rhythm does this ECG from {patient} demonstrate?\n{options}",
        "Choose the correct rhythm interpretation for {patient}.\n{options}",
    ),
    "RhythmOpenQA": (
        "Describe the rhythm on this ECG from {patient}.",
        "What is the cardiac rhythm of {patient} on this ECG?",
        "Interpret the rhythm of this tracing ({patient}).",
        "Is the rhythm of {patient} regular and sinus? Explain what this ECG shows.",
        "What rhythm statements apply to this ECG of {patient}?",
        "Comment on rate and rhythm in this ECG recorded from {patient}.",
        "Which rhythm does this ECG from {patient} show?",
        "Characterise the rhythm of {patient} as seen on this ECG.",
    ),
    "AxisClosedQA": (
        "What is the frontal QRS axis on this ECG from {patient}?\n{options}",
        "Classify the electrical axis of {patient}'s heart from this ECG.\n{options}",
        "Based on leads I and aVF, how would you describe the axis of this ECG ({patient})?\n{options}",
        "Which axis category applies to this tracing from {patient}?\n{options}",
        "Determine the QRS axis on this ECG of {patient}.\n{options}",
        "Is the cardiac axis of {patient} normal or deviated?\n{options}",
        "Select the correct description of the frontal plane axis ({patient}).\n{options}",
        "How is the mean QRS vector oriented in this ECG of {patient}?\n{options}",
    ),
    "RateClosedQA": (
        "What is the heart rate category on this ECG from {patient}?\n{options}",
        "Classify the ventricular rate of {patient} on this tracing.\n{options}",
        "Which rate range fits this ECG ({patient})?\n{options}",
        "How fast is the heart of {patient} beating on this ECG?\n{options}",
        "Estimate the heart rate of {patient} from this ECG and choose its category.\n{options}",
        "Select the heart rate description that matches this ECG of {patient}.\n{options}",
        "From the RR intervals, what is the rate category for {patient}?\n{options}",
        "Is the rate on this ECG of {patient} slow, normal or fast?\n{options}",
    ),
    "NoiseClosedQA": (
        "How is the signal quality of this ECG from {patient}?\n{options}",
        "Which artefact, if any, affects this recording of {patient}?\n{options}",
        "Assess the technical quality of this tracing ({patient}). Which statement applies?\n{options}",
        "Is this ECG of {patient} affected by noise? Choose the correct description.\n{options}",
        "Which signal-quality problem is present in this ECG from {patient}?\n{options}",
        "Before interpreting the ECG of {patient}, judge its quality.\n{options}",
    ),
    "ComparisonQA": (
        "Compare the two ECGs. Which statement about {finding} is correct?\n{options}",
        "Two ECGs are shown. Regarding {finding}, which option is true?\n{options}",
        "Look at both tracings. Where is {finding} present?\n{options}",
        "Comparing the first and the second ECG, which is correct about {finding}?\n{options}",
        "Does {finding} appear in the first ECG, the second, both or neither?\n{options}",
        "Between these two recordings, which one shows {finding}?\n{options}",
        "Review both ECGs for {finding}. Which answer is correct?\n{options}",
        "Which of the two ECGs has the faster heart rate?\n{options}",
        "Compare the heart rates of the two ECGs.\n{options}",
        "Which tracing shows the higher ventricular rate?\n{options}",
        "Comparing rates, which statement about these two ECGs holds?\n{options}",
        "Compare the QRS axis of the two ECGs: which statement is correct?\n{options}",
    ),
    "ReportGeneration": (
        "Write a diagnostic report for this ECG from {patient}.",
        "Generate a clinical ECG report for {patient}.",
        "Please produce the ECG report for this recording ({patient}).",
        "Write the interpretation you would put in the chart for this ECG of {patient}.",
        "Compose a structured report of this 12-lead ECG from {patient}.",
        "Report the findings of this ECG for {patient}, grading how certain each statement is.",
        "{Patient} had an ECG today. Write its report.",
        "Draft an ECG report covering rhythm, waveforms and diagnosis for {patient}.",
    ),
    "GroundedInterpretation": (
        "Interpret this ECG from {patient} lead by lead, citing the measured values that support your diagnosis.",
        "Give an evidence-based interpretation of this ECG of {patient}: rhythm, intervals, axis, lead findings and diagnosis.",
        "Explain the diagnosis for {patient} using the measurable ECG features (PR, QRS, QT, amplitudes) as evidence.",
        "Walk through this 12-lead ECG ({patient}) systematically and ground each conclusion in measurements.",
        "Provide a grounded interpretation of this ECG from {patient}, referring to specific leads and values.",
        "Which measurements on this ECG of {patient} support or argue against each diagnosis?",
        "Analyse this ECG of {patient} step by step, with intervals in ms and amplitudes in mV.",
        "Produce a lead-by-lead assessment of this ECG for {patient} and state the diagnosis it supports.",
    ),
    "SignalForecasting": (
        "Given the first {input_s:g} s of this ECG, predict lead {lead} for the next {target_s:g} s in {step_ms:g} ms steps (mV).",
        "Forecast the next {target_s:g} s of lead {lead} from this {input_s:g} s ECG segment; give values every {step_ms:g} ms in mV.",
        "Continue lead {lead} of this ECG for {target_s:g} s: list the amplitudes in mV at {step_ms:g} ms intervals.",
        "Predict how lead {lead} evolves over the {target_s:g} s after this {input_s:g} s window (one value per {step_ms:g} ms, mV).",
        "Extrapolate lead {lead} {target_s:g} s beyond the shown {input_s:g} s; report mV every {step_ms:g} ms.",
        "What will lead {lead} look like in the next {target_s:g} s? Give {step_ms:g} ms samples in mV.",
    ),
}


def template_count() -> int:
    return sum(len(t) for t in TEMPLATES.values())


_MALE = ("man", "male patient", "gentleman")
_FEMALE = ("woman", "female patient", "lady")


def patient_phrase(age: float | None, sex: str | None, over_89: bool, rng: random.Random) -> str:
    """Age and sex in varied wording: "a 63-year-old man", "a female patient aged 41", "a man over 89"."""
    noun = rng.choice(_MALE if sex == "M" else _FEMALE if sex == "F" else ("patient", "person", "adult"))
    article = "an" if noun[0] in "aeiou" else "a"
    if age is None or age != age:
        return rng.choice((f"{article} {noun} of unknown age", f"{article} {noun} (age not recorded)"))
    if over_89 or age > 89:
        return rng.choice((f"{article} {noun} over 89 years old", f"{article} {noun} older than 89",
                           f"{article} {noun} aged 90 or more"))
    years = int(round(age))
    choices = [f"{'an' if str(years)[0] == '8' or years in (11, 18) else 'a'} {years}-year-old {noun}",
               f"{article} {noun} aged {years}", f"{article} {noun} of {years} years"]
    if years >= 20:
        choices.append(f"{article} {noun} in their {years // 10 * 10}s" if noun in ("patient", "person", "adult")
                       else f"{article} {noun} in {'his' if sex == 'M' else 'her'} {years // 10 * 10}s")
    return rng.choice(choices)
