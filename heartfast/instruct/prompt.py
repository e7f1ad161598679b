"""How an instruction item is shown to a model: one `<signal>` / `<image>` marker per ECG input, then the
question, wrapped in the tokenizer's chat template. Training (labels) and inference (prompts) both build
prompts here, so what a model is trained on is exactly what it is asked at serving time.
"""
from __future__ import annotations

from heartfast.instruct.items import Item


def conversation(tokenizer, content: str, answer: str | None) -> tuple[str, str]:
    """(prompt text up to the assistant's first token, the assistant's text incl. end-of-turn markers)."""
    user = [{"role": "user", "content": content}]
    if getattr(tokenizer, "chat_template", None) is None:
        return f"{content}\n", "" if answer is None else f"{answer}{tokenizer.eos_token or ''}"
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    if answer is None:
        return prompt, ""
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the assistant turn in a way that does not extend the prompt")
    return prompt, full[len(prompt):]


def input_kinds(item: Item, images: bool) -> list[str]:
    """The modality each ECG input is shown in; without an image stream, images are shown as signals."""
    return [kind if images else "signal" for kind in item.inputs]


def item_prompt(item: Item, tokenizer, images: bool, answer: bool = False) -> tuple[str, str]:
    """(prompt with markers, answer text or "") for `item`."""
    content = "".join(f"<{kind}>\n" for kind in input_kinds(item, images)) + item.question
    return conversation(tokenizer, content, item.answer if answer else None)
