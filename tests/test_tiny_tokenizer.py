"""The word-level tokenizer of the tiny presets: lossless, short on instruction text, saved and loaded like any."""
from __future__ import annotations

from heartfast.instruct.dataset import build_items
from heartfast.instruct.items import LETTERS
from heartfast.instruct.prompt import item_prompt
from heartfast.io.sources import list_records
from heartfast.model import vocab
from heartfast.model.presets import TINY_TOKENIZER_SIZE, build_model

TASKS = ["RhythmClosedQA", "AxisClosedQA", "RhythmOpenQA", "DiagnosisClosedQA"]


def test_size_matches_the_presets_and_the_vocabulary_is_fixed():
    first, second = vocab.word_tokenizer(), vocab.word_tokenizer()
    assert len(first) == TINY_TOKENIZER_SIZE
    assert first.get_vocab() == second.get_vocab()


def test_instruction_items_round_trip_in_a_quarter_of_the_bytes(tmp_path):
    _, tokenizer = build_model("tiny")
    records = [ref.load() for ref in list_records("synthetic:12:3")]
    items = list(build_items(records, seed=0, tasks=TASKS, measurements=None))
    assert items
    for item in items:
        prompt, answer = item_prompt(item, tokenizer, images=False, answer=True)
        for text in (prompt, answer):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids) == text
        assert len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) * 3 < len(prompt.encode())
        if item.correct:   # the answer starts with the letter's own token, as the closed-QA scoring reads it
            first = tokenizer(answer, add_special_tokens=False)["input_ids"][0]
            assert tokenizer.convert_ids_to_tokens(first) == item.correct


def test_any_text_survives_by_characters_and_bytes_and_reloads(tmp_path):
    tokenizer = vocab.word_tokenizer()
    text = "Sinus rhythm, QTc 4l2 ms\tvs. ‘Ä’ 心電図  <signal> ~\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert "<unk>" not in tokenizer.convert_ids_to_tokens(ids)
    assert [tokenizer.convert_ids_to_tokens(tokenizer(f"{c}. x", add_special_tokens=False)["input_ids"][0])
            for c in LETTERS] == list(LETTERS)
    tokenizer.save_pretrained(tmp_path)
    loaded = vocab.load_text_tokenizer(tmp_path)
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == "<|user|>\nx</s>\n"
