"""Optional answer rewriting with a local Hugging Face chat model (HeartAgent's LLM polishing step).

Off by default. Only free-text answers are rewritten (closed answers and forecasts must stay exact); the
original answer is kept in `item.evidence["template_answer"]`. Loads from a local directory only.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from heartfast.instruct.items import CLOSED_TASKS, Item

REWRITABLE = frozenset({"DiagnosisOpenQA", "WaveformOpenQA", "RhythmOpenQA", "ReportGeneration",
                        "GroundedInterpretation"})
INSTRUCTION = ("Rewrite the following ECG interpretation in fluent clinical English. Keep every finding, "
               "certainty grade, lead name and number exactly as given; add nothing.\n\n{answer}")


class AnswerRewriter:
    """Greedy rewriting with a causal LM and its tokenizer saved in `model_dir` (no downloads)."""

    def __init__(self, model_dir: str | Path, max_new_tokens: int = 256, device: str = "cpu") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such model directory")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(device).eval()
        self.max_new_tokens = max_new_tokens
        self.device = device

    def prompt_ids(self, answer: str):
        text = INSTRUCTION.format(answer=answer)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                      add_generation_prompt=True, return_tensors="pt",
                                                      return_dict=True)["input_ids"]
        return self.tokenizer(text, return_tensors="pt")["input_ids"]

    def rewrite_text(self, answer: str) -> str:
        import torch

        ids = self.prompt_ids(answer).to(self.device)
        with torch.no_grad():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        return text or answer

    def __call__(self, items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            if item.task in REWRITABLE and item.task not in CLOSED_TASKS:
                item.evidence["template_answer"] = item.answer
                item.answer = self.rewrite_text(item.answer)
            yield item
