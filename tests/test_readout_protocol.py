"""The rating read-out that rater runs and training validation share.

* CoT-RAIL's expected score uses the raw level probabilities p(str(y) | [x, s]) as TRACT defines
  them (Eq. 3), checked against a hand computation from the model's logits;
* a chat template that opens ``<think>`` itself does not get a second one in the read-out text;
* validation (checkpoint selection) rates exactly as the test split does.

A tiny random Llama with a SentencePiece-style tokenizer trained in the test: no hub, no GGUF.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from judgeeye.codebook import render_prompt, render_prompt_text
from judgeeye.engines import Completion, EngineConfig
from judgeeye.engines.readout import level_token_ids
from judgeeye.engines.transformers_engine import TransformersEngine, render_chat
from judgeeye.evaluate.raters import RaterSpec
from judgeeye.evaluate.runner import Pending, PredictionWriter
from judgeeye.ratings import normalise, split_reasoning
from training_data import LLAMA2_TEMPLATE, SPEC, sentencepiece_tokenizer, tiny_llama

pytestmark = pytest.mark.slow
FIELDS = {"story": "A robot learns to lie."}
#: a DeepSeek-R1-distill-like template: the generation prompt opens the thinking block itself
THINK_TEMPLATE = LLAMA2_TEMPLATE + "{% if add_generation_prompt %} <think>\n{% endif %}"


def _engine(template: str = LLAMA2_TEMPLATE):  # type: ignore[no-untyped-def]
    tok = sentencepiece_tokenizer(template)
    model = tiny_llama(len(tok))
    return TransformersEngine.from_model(model, tok, EngineConfig(batch_size=2), fast_decode=False), tok, model


def _level_probs(model, tok, text: str) -> list[float]:  # type: ignore[no-untyped-def]
    """The model's probability of each level's token right after ``text``, over the whole vocabulary."""
    import torch

    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    probs = torch.softmax(logits, dim=-1)
    levels = level_token_ids(tok, [1, 2, 3, 4, 5], "<rating>")
    return [float(probs[levels[str(y)]]) for y in range(1, 6)]


def _rate(engine, readout: str, completion: Completion) -> dict:  # type: ignore[no-untyped-def]
    writer = PredictionWriter(0, RaterSpec(readout=readout), SPEC, engine)
    pending = Pending(1, render_prompt(SPEC, FIELDS), render_prompt_text(SPEC, FIELDS))
    return writer.row(pending, completion)


def _completion(text: str) -> Completion:
    reasoning, answer = split_reasoning(text)
    return Completion(text=text, reasoning=reasoning, answer=answer)


def test_cot_rail_uses_the_raw_level_probabilities() -> None:
    engine, tok, model = _engine()
    row = _rate(engine, "expected", _completion("Plain, one event. <rating>4</rating>"))
    prompt = render_chat(tok, render_prompt(SPEC, FIELDS))
    p = _level_probs(model, tok, prompt + "Plain, one event.<rating>")  # the answer up to its rating statement
    raw = sum(y * p[y - 1] for y in range(1, 6))
    renormalised = raw / sum(p)
    assert abs(raw - renormalised) > 0.5, "the model must put mass outside the levels for this test to mean anything"
    assert row["rating"] == pytest.approx(raw, rel=1e-6)
    assert row["score_dist"] == pytest.approx({str(y): p[y - 1] for y in range(1, 6)}, rel=1e-6)
    argmax = _rate(engine, "argmax", _completion("Plain, one event. <rating>4</rating>"))
    assert argmax["rating"] == 1 + max(range(5), key=lambda i: p[i])


def test_the_readout_does_not_open_think_twice() -> None:
    engine, tok, model = _engine(THINK_TEMPLATE)
    prompt = render_chat(tok, render_prompt(SPEC, FIELDS))
    assert prompt.rstrip().endswith("<think>")
    completion = _completion("Weighing the layers.\n</think>\n\nLayered. <rating>4</rating>")
    assert completion.reasoning == "Weighing the layers." and completion.answer == "Layered. <rating>4</rating>"
    row = _rate(engine, "expected", completion)
    p = _level_probs(model, tok, prompt + "Weighing the layers.\n</think>\n\nLayered.<rating>")
    # compared renormalised, so that only the text read matters here (not raw vs renormalised)
    shares = {str(y): p[y - 1] / sum(p) for y in range(1, 6)}
    assert normalise(row["score_dist"]) == pytest.approx(shares, rel=1e-5)
    from judgeeye.evaluate.runner import readout_trace

    assert (prompt + readout_trace(prompt, completion, len("Layered."))).count("<think>") == 1
    cut_off = Completion(text="Still weighing", reasoning="", answer="Still weighing", finish_reason="length")
    assert readout_trace(prompt, cut_off, None) == "Still weighing\n</think>\n\n"  # all of it was thinking
    assert readout_trace("<s>[INST] x [/INST]", completion, None) == ("<think>\nWeighing the layers.\n</think>\n\n"
                                                      "Layered. <rating>4</rating>")


def test_validation_rates_as_the_test_split_does(store_url: str, tmp_path: Path) -> None:
    """One protocol in the run's config: validation predictions equal those of a rater run with the
    test split's rater spec on the same items (greedy here, so both are deterministic)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from judgeeye.codebook import current_version, to_spec
    from judgeeye.evaluate.raters import create_rater_run
    from judgeeye.evaluate.runner import execute_rater_run
    from judgeeye.store import Item, Prediction, Project, session_scope
    from judgeeye.training.callbacks import ValItem
    from judgeeye.training.config import RatingProtocol, TrainingConfig
    from judgeeye.training.runner import split_rater_spec, validation_rater
    from training_data import make_tiny_project, save_sentencepiece_model

    project_id = make_tiny_project(tmp_path)
    base = save_sentencepiece_model(tmp_path / "sp-llama")
    cfg = TrainingConfig(base_model=base, protocol=RatingProtocol(temperature=0.0, max_tokens=6, readout="expected"),
                         val_batch_size=3)
    with session_scope() as s:
        spec = to_spec(current_version(s, project_id), s.get(Project, project_id))
        items = s.scalars(select(Item).where(Item.project_id == project_id, Item.split == "validation")
                          .order_by(Item.id)).all()
        val_items = [ValItem(i.id, dict(i.fields), float(i.gold)) for i in items]
        run_id = create_rater_run(s, project_id, split_rater_spec(cfg, None), split="validation").id
    rater = validation_rater(cfg, spec, val_items)
    assert (rater.temperature, rater.top_p, rater.max_tokens, rater.readout) == (0.0, 0.95, 6, "expected")
    model, tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    validated = rater.rate(model, tok)
    assert execute_rater_run(run_id) == "completed"
    with session_scope() as s:
        tested = dict(s.execute(select(Prediction.item_id, Prediction.rating)
                                .where(Prediction.rater_run_id == run_id)).all())
    assert validated.n == len(val_items) == 3
    assert validated.predictions == pytest.approx([tested[i.item_id] for i in val_items], abs=1e-4)
