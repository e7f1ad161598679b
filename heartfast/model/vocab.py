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
