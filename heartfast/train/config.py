"""Stage configuration: defaults per stage, a recipe per model preset, a TOML file, then `key=value` overrides.

Layers, later ones winning:
1. the stage's paper defaults (align: projectors only, lr 2e-4; sft: LoRA r 64 / α 128 / dropout 0.05 +
   projectors, lr 2e-5 linear with 100 warm-up steps);
2. the recipe of the model preset, where one exists, when the preset is named or the model is built from
   it (`tiny`, `tiny-gem`: a randomly initialised 4-layer decoder, so sft fine-tunes the whole LLM at a
   higher rate; `tiny` sft also trains its random Beat encoder, after a supervised warm-up);
3. a TOML file with the sections [model], [data], [lora], [train] (and top-level `evaluate`);
4. `--set section.key=value` overrides (values parsed as TOML, bare words as strings);
5. explicit CLI flags (--data, --out, --steps, ...).
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from heartfast.train.loop import TrainConfig

STAGES = ("align", "sft")
WEIGHTINGS = ("token", "item")
MEASUREMENTS = ("carried", "auto")


@dataclass
class ModelSection:
    preset: str = "tiny"                 # heartfast.model.presets name (used when `path` is empty)
    path: str = ""                       # a HeartcareGPT directory (save_pretrained), e.g. the align output
    llm: str = ""                        # preset parts from local checkpoint directories
    vision: str = ""
    signal_encoder: str = ""             # a Beat tokenizer saved by `heartfast train beat` (model/ folder)
    gradient_checkpointing: bool = False
    train_signal_encoder: bool = False   # the signal encoder learns with the stage (feature cache: its inputs)
    signal_warmup_steps: int = 0         # a trainable encoder's supervised warm-up steps (heartfast.train.warmup)


@dataclass
class DataSection:
    source: str = ""                     # records: folder, WFDB record or synthetic:N[:seed]
    items: str = ""                      # optional instruction items JSONL (else built from the records)
    tasks: list[str] = field(default_factory=list)   # task types to build (empty: all)
    weighting: str = "token"             # in the loss: every answer token alike ("token") or every item ("item")
    measurements: str = "carried"        # grounding facts: what records carry (synthetic truth, annotations) or
                                         # "auto": the measurement module's per-lead values too, as benches have
    per_record: int = 1
    seed: int = 0
    images: bool = False                 # image stream (rendered ECGs through the vision tower)
    eval_split: str = "test"             # held-out items for the closed-QA accuracy


@dataclass
class LoraSection:
    r: int = 64                          # 0 = full fine-tuning of the LLM in sft
    alpha: float = 128.0
    dropout: float = 0.05


@dataclass
class StageConfig:
    stage: str = "sft"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    lora: LoraSection = field(default_factory=LoraSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: bool = True                # closed-QA accuracy on the held-out split after training

    def to_dict(self) -> dict:
        return asdict(self)


STAGE_DEFAULTS: dict[str, dict] = {
    "align": {"train": {"lr": 2e-4, "schedule": "cosine", "warmup_steps": 30, "steps": 1000, "batch_size": 32}},
    "sft": {"train": {"lr": 2e-5, "schedule": "linear", "warmup_steps": 100, "steps": 3000, "batch_size": 32}},
}

_TINY_ALIGN = {"train": {"lr": 2e-3, "steps": 100, "warmup_steps": 10, "batch_size": 16},
               "data": {"tasks": ["RhythmClosedQA", "AxisClosedQA"]}}
_TINY_SFT_TRAIN = {"lr": 1e-3, "schedule": "cosine", "warmup_steps": 20, "batch_size": 16, "weight_decay": 0.01}
RECIPES: dict[tuple[str, str], dict] = {
    ("tiny", "align"): _TINY_ALIGN,
    # 1000 steps: with the word tokenizer a step is ~0.3 s on 2 CPU cores (docs/training.md, learning section).
    # The preset's Beat starts random; it learns with the decoder (frozen, its latents blur left/right axis).
    # The encoder warm-up (1500 x 32 records) makes rhythm readable: without it the decoder answers rhythm
    # questions from the options alone (docs/training.md, "What the 82% is made of").
    ("tiny", "sft"): {"lora": {"r": 0}, "model": {"train_signal_encoder": True, "signal_warmup_steps": 1500},
                      "train": {**_TINY_SFT_TRAIN, "steps": 1000},
                      "data": {"tasks": ["RhythmClosedQA", "AxisClosedQA"]}},
    # GEM's signal path at toy size. The open rhythm question names the rhythm without the detour through an
    # option letter: the most direct supervision of what the signal stream must carry.
    ("tiny-gem", "align"): _TINY_ALIGN,
    ("tiny-gem", "sft"): {"lora": {"r": 0}, "train": {**_TINY_SFT_TRAIN, "steps": 600},
                          "data": {"tasks": ["RhythmClosedQA", "AxisClosedQA", "RhythmOpenQA"]}},
}


def _merge(target, values: dict, where: str):
    """A copy of dataclass `target` with `values` (nested dicts for nested dataclasses) applied."""
    known = {f.name: f for f in fields(target)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{where}: unknown setting {key!r}; known: {', '.join(known)}")
        current = getattr(target, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {key!r} is a section; give a table")
            changes[key] = _merge(current, value, f"{where}.{key}")
        else:
            if isinstance(current, tuple) and isinstance(value, list):
                value = tuple(value)
            if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if current is not None and not isinstance(value, type(current)):
                raise ValueError(f"{where}.{key}: expected {type(current).__name__}, got {value!r}")
            changes[key] = value
    return replace(target, **changes)


def parse_override(text: str) -> dict:
    """'train.lr=1e-3' -> {'train': {'lr': 0.001}}; the value is TOML (bare words are strings)."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected section.key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict = {}
    node = out
    *sections, name = key.split(".")
    for s in sections:
        node = node.setdefault(s, {})
    node[name] = value
    return out


def load_config(stage: str, file: str | Path | None = None, overrides: list[str] = (),
                preset: str | None = None) -> StageConfig:
    """The stage's configuration from the layers described in the module docstring."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    config = _merge(StageConfig(stage=stage), STAGE_DEFAULTS[stage], f"{stage} defaults")
    from_file: dict = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        try:
            from_file = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc})") from exc
        from_file.pop("stage", None)
    layers = [parse_override(o) for o in overrides]
    named = preset or _preset_named(from_file, layers)
    chosen = named or config.model.preset
    config = _merge(config, {"model": {"preset": chosen}}, "preset")
    if (named or not _named_model(from_file, layers)) and (chosen, stage) in RECIPES:
        config = _merge(config, RECIPES[(chosen, stage)], f"recipe {chosen}")
    config = _merge(config, from_file, str(file))
    for text, layer in zip(overrides, layers):
        config = _merge(config, layer, f"--set {text}")
    if config.data.weighting not in WEIGHTINGS:
        raise ValueError(f"data.weighting = {config.data.weighting!r}; expected one of {WEIGHTINGS}")
    if config.data.measurements not in MEASUREMENTS:
        raise ValueError(f"data.measurements = {config.data.measurements!r}; expected one of {MEASUREMENTS}")
    return config


def _preset_named(file_layer: dict, layers: list[dict]) -> str | None:
    names = [layer.get("model", {}).get("preset") for layer in [file_layer, *layers]]
    names = [n for n in names if n]
    return names[-1] if names else None


def _named_model(file_layer: dict, layers: list[dict]) -> bool:
    return any(layer.get("model", {}).get("path") for layer in [file_layer, *layers])


def to_toml(config: StageConfig) -> str:
    """The configuration as a TOML file (written next to each run)."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    data = config.to_dict()
    lines = [f"stage = {value(data.pop('stage'))}", f"evaluate = {value(data.pop('evaluate'))}"]
    for section, table in data.items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"
