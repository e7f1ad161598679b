"""The optional answer-rewriting hook with a tiny random causal LM and a tokenizer built locally."""
from __future__ import annotations

import pytest

from heartfast.instruct.items import Item


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = "rewrite the following ecg interpretation in fluent clinical english sinus rhythm normal".split()
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "<pad>", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")
    path = tmp_path_factory.mktemp("tiny-chat")
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_rewriter_changes_only_free_text(tiny_chat_model):
    from heartfast.instruct.rewrite import AnswerRewriter

    rewriter = AnswerRewriter(tiny_chat_model, max_new_tokens=5)
    closed = Item("a", "RhythmClosedQA", "signal", ["1"], "q", "A. Sinus rhythm", "test",
                  ["Sinus rhythm", "x", "y", "z"], "A")
    report = Item("b", "ReportGeneration", "signal", ["1"], "q", "Sinus rhythm. Normal ECG.", "test")
    out = list(rewriter([closed, report]))
    assert out[0].answer == "A. Sinus rhythm" and "template_answer" not in out[0].evidence
    assert out[1].evidence["template_answer"] == "Sinus rhythm. Normal ECG."
    assert out[1].answer and out[1].answer != "Sinus rhythm. Normal ECG."   # random model: 5 new words
    again = AnswerRewriter(tiny_chat_model, max_new_tokens=5).rewrite_text("Sinus rhythm. Normal ECG.")
    assert again == out[1].answer                                             # greedy: deterministic


def test_rewriter_refuses_missing_directory(tmp_path):
    from heartfast.instruct.rewrite import AnswerRewriter

    with pytest.raises(FileNotFoundError, match="no such model directory"):
        AnswerRewriter(tmp_path / "absent")
