"""The heartfast side of the sft cost benchmarks (CPU and GPU): the sft stage's trainer over a transformers
checkpoint, with the LoRA settings the peft side uses."""
from __future__ import annotations

from heartfast.train.packing import Sample


def sft_trainer(llm_dir: str, samples: list[Sample], out: str, r: int, alpha: float, dropout: float,
                batch_size: int):
    from heartfast.train.config import load_config
    from heartfast.train.stages import load_model, set_trainable, stage_trainer

    config = load_config("sft", overrides=[f"model.llm='{llm_dir}'", f"lora.r={r}", f"lora.alpha={alpha}",
                                           f"lora.dropout={dropout}", f"train.batch_size={batch_size}",
                                           "train.steps=100000", "train.progress=false", f"train.out='{out}'"],
                         preset="tiny")
    model, _ = load_model(config)
    set_trainable(model, config)
    return stage_trainer(model, samples, config.train)
