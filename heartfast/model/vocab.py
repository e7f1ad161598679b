"""Text tokenizers and the vocabulary HeartcareGPT adds to a decoder: stream markers and Beat code tokens.

Markers: `<image_start> <image>… <image_end>` and `<signal_start> <signal>… <signal_end>` spans; every
`<image>` / `<signal>` id is one position the projected stream features overwrite. In the discrete mode a
signal is spelled with Beat code tokens `<|ecg_k|>` instead, which the LLM embeds like any other word.
"""
from __future__ import annotations

from pathlib import Path

import torch

from heartfast.model.llm import DecoderLM

IMAGE_START, IMAGE_END, IMAGE = "<image_start>", "<image_end>", "<image>"
SIGNAL_START, SIGNAL_END, SIGNAL = "<signal_start>", "<signal_end>", "<signal>"
MARKERS = (IMAGE_START, IMAGE_END, SIGNAL_START, SIGNAL_END, IMAGE, SIGNAL)
TINY_CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def ecg_code_tokens(codebook_size: int) -> list[str]:
    """`<|ecg_0|>` … `<|ecg_{n-1}|>`: one vocabulary word per Beat code (discrete mode)."""
    return [f"<|ecg_{k}|>" for k in range(codebook_size)]


def load_text_tokenizer(directory: str | Path):
    """The checkpoint's own tokenizer via transformers' AutoTokenizer, local files only."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: tokenizer directory not found")
    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def byte_tokenizer():
    """A byte-level tokenizer (256 byte symbols + `<pad>`, `<s>`, `</s>`) for the CPU `tiny` preset: no files,
    no training, every string encodable; a minimal chat template so prompts are built like the big models'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def _instruction_words() -> list[str]:
    """Every word of the instruction templates, answer phrases and SCP-ECG statement names, sorted: the word
    tokenizer's vocabulary, fixed by the code (no files, no training)."""
    import re

    from heartfast.instruct import templates
    from heartfast.instruct.facts import AXIS_CATEGORIES, NOISE_TYPES, RATE_CATEGORIES
    from heartfast.instruct.vocabulary import NORMAL_VARIANTS, STATEMENTS

    texts = [t for group in templates.TEMPLATES.values() for t in group]
    texts += [s.name for s in STATEMENTS.values()] + [v for group in NORMAL_VARIANTS.values() for v in group]
    texts += [*AXIS_CATEGORIES, *NOISE_TYPES.values(), *RATE_CATEGORIES, *templates._MALE, *templates._FEMALE]
    texts += ["patient person adult year years old aged age unknown recorded over older than or more their his her",
              "a an the of in on with and to is this that which what likely highly possible less yes no none"]
    words = {w for text in texts for w in re.findall(r"[A-Za-z]+", text)}
    return sorted(words | {w.lower() for w in words} | {w.capitalize() for w in words})


def word_tokenizer():
    """A word-level tokenizer for the CPU tiny presets: whole instruction words are one token each (a prompt of
    ~250 bytes is ~60 tokens, an option 1-3), anything else is spelled by characters, and characters outside
    printable ASCII by bytes (`<0x..>`), so no text is lost. No files, no training: the vocabulary is
    `_instruction_words` (with and without a leading space, SentencePiece's `▁`), printable ASCII and 256 bytes.
    Segmentation is a unigram model with equal scores, i.e. the fewest pieces. Same specials and chat
    template as `byte_tokenizer`."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    chars = [c for c in string.printable if c not in " \x0b\x0c"] + ["▁", "<|system|>", "<|user|>", "<|assistant|>"]
    words = _instruction_words()
    pieces = specials + byte_pieces + chars + [p for w in words for p in (w, "▁" + w) if p not in chars]
    vocab = [(p, 0.0) for p in specials] + [(p, -100.0) for p in byte_pieces] + [(p, -1.0) for p in pieces[260:]]
    core = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=True))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    core.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def extend_vocabulary(lm: DecoderLM, tokenizer, tokens: list[str]) -> dict[str, int]:
    """Add `tokens` as special tokens; grow the LM's embed/lm_head if needed; new rows = mean of the old rows.

    Rows of new ids that already existed (checkpoints pad their matrices, e.g. Phi-3's 32064 rows for 32011
    tokens) are re-initialised to the mean as well. Returns token -> id for every requested token.
    """
    old_len = len(tokenizer)
    tokenizer.add_tokens([t for t in tokens if t not in tokenizer.get_vocab()], special_tokens=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}
    new_ids = sorted(i for i in ids.values() if i >= old_len)
    lm.resize_vocab(max(lm.config.vocab_size, len(tokenizer)))
    if new_ids:
        index = torch.tensor(new_ids, device=lm.embed_tokens.weight.device)
        with torch.no_grad():
            for weight in {id(w): w for w in (lm.embed_tokens.weight, lm.lm_head.weight)}.values():
                mean = weight[:old_len].float().mean(0).to(weight.dtype)
                weight[index] = mean
    return ids
