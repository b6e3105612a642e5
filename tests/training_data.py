"""A tiny training project for the training tests: short stories, a short codebook, short traces."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from judgeeye.auth import Actor
from judgeeye.codebook import CodebookSpec, RubricLevel
from judgeeye.store import Candidate, Item, session_scope

SPEC = CodebookSpec(
    name="tiny", task="story rating", dimension="complexity", generation_type="story", scale_min=1, scale_max=5,
    instructions="Rate how complex the story is.", output_format="End with <rating>N</rating>.",
    rubric=[RubricLevel(level=i, text=t) for i, t in
            enumerate(["very simple", "simple", "average", "complex", "very complex"], start=1)],
)
STORIES = [
    ("A cat sat.", 1), ("A dog ran home.", 1), ("Two friends argue, then make up.", 3),
    ("A spy lies to everyone, even herself.", 4), ("Rain. Then sun.", 2), ("A king loses a war and his name.", 4),
    ("A boy finds a coin.", 2), ("Three sisters share one secret for forty years.", 5),
    ("A robot learns to lie.", 3), ("The end came early.", 2), ("A map leads nowhere, on purpose.", 4),
    ("Bob ate lunch.", 1), ("A town forgets its own history.", 5), ("A letter arrives ten years late.", 3),
]
TRACES = {1: "Nothing happens beyond one plain action.", 2: "One small event, no tension.",
          3: "A conflict with some development.", 4: "Hidden motives add layers.",
          5: "Several layers and long time spans."}


def make_tiny_project(tmp_path: Path) -> int:
    """14 short stories (8 train, 3 validation, 3 test) with a short codebook, and a sampling run
    whose accepted candidates carry short traces for the training items."""
    from judgeeye.datasets import ColumnMapping, SplitRule, read_table
    from judgeeye.engines import EngineConfig
    from judgeeye.projects import import_with_codebook
    from judgeeye.sampling import SamplingSettings
    from judgeeye.sampling.runs import create_run

    csv = tmp_path / "stories.csv"
    csv.write_text("id,text,r1,r2,r3\n" + "".join(f'{i},"{t}",{g},{g},{g}\n' for i, (t, g) in enumerate(STORIES)))
    mapping = ColumnMapping(id_column="id", text_columns={"story": "text"},
                            rating_columns={"r1": "r1", "r2": "r2", "r3": "r3"}, scale_min=1, scale_max=5,
                            dimension="complexity", generation_type="story")
    with session_scope() as s:
        report = import_with_codebook(s, read_table(csv, mapping), actor=Actor.system(), project_name="tiny", codebook=SPEC,
                                      split_rule=SplitRule(ratios={"train": 1.0}))
        project_id = report.project_id
    with session_scope() as s:
        items = s.scalars(select(Item).where(Item.project_id == project_id).order_by(Item.id)).all()
        for n, item in enumerate(items):
            item.split = "train" if n < 8 else "validation" if n < 11 else "test"
        run = create_run(s, project_id, EngineConfig(), SamplingSettings(k=1))
        for item in items[:8]:
            g = int(item.gold)
            s.add(Candidate(run_id=run.id, item_id=item.id, target="gold", target_label=item.gold, sample_index=0,
                            reasoning="", answer=f"{TRACES[g]}\n\n<rating>{g}</rating>", predicted=item.gold,
                            parse_ok=True, accepted=True, completion_tokens=12, finish_reason="stop"))
        run.status = "completed"
    return project_id


# ------------------------------------------------------------------ a SentencePiece-style model

#: Llama-2's chat layout (no system prompt)
LLAMA2_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}<s>[INST] {{ m['content'] }} [/INST]"
                   "{% elif m['role'] == 'assistant' %} {{ m['content'] }}</s>{% endif %}{% endfor %}")


def sentencepiece_tokenizer(chat_template: str = LLAMA2_TEMPLATE):  # type: ignore[no-untyped-def]
    """A Llama-2-like tokenizer trained here from the tiny project's text (no hub): BPE with byte
    fallback behind SentencePiece's Metaspace pre-tokenizer, which puts "▁" before the first word
    of a text, and single-digit pieces. Like Llama-2's and Mistral's, it tokenizes the answer cue
    on its own ("▁<rating>") differently than after a trace ("\\n\\n<rating>")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = [t for t, _ in STORIES] + list(TRACES.values()) + [
        SPEC.instructions, SPEC.output_format, " ".join(r.text for r in SPEC.rubric), "1 2 3 4 5"] * 3
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True),
        pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False, initial_alphabet=list("0123456789"),
                                  special_tokens=["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)])
    tok.train_from_iterator(text, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")
    fast.chat_template = chat_template
    return fast


def tiny_llama(vocab_size: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A 2-layer Llama with random weights, its logits scaled up so that its distributions are far
    from uniform."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    return model.eval()


def save_sentencepiece_model(folder: Path) -> str:
    """The SentencePiece tokenizer and a tiny random Llama saved as a model directory (a base
    model for `judgeeye train --base`)."""
    tok = sentencepiece_tokenizer()
    tiny_llama(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
