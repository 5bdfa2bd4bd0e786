import pytest

import interp
from interp.errors import EmptyPromptsError, InterpError, SpanNotFoundError
from interp.prompts import PromptSet, read_chat_jsonl, write_chat_jsonl
from interp.questions import read_questions


def test_grid_fills_and_tags_every_slot(tiny_llama):
    grid = PromptSet.grid("Today is {year}-05-12. {q}", year=[1984, 2031], q=["Name a bird.", "Hi"])
    assert len(grid) == 4 and list(grid.meta.columns) == ["year", "q"]
    texts = grid.render(tiny_llama)
    for name in ("year", "q"):
        for (start, end), text, value in zip(
            grid.char_spans(name, texts), texts, grid.meta[name], strict=True
        ):
            assert text[start:end] == str(value)


def test_grid_slot_in_the_system_message(tiny_llama):
    grid = PromptSet.grid(
        "{q}", system="The year is {year} .", year=[1984, 1999], q=["What is your goal ?"]
    )
    assert grid.prompts[0][0] == {"role": "system", "content": "The year is 1984 ."}
    texts = grid.render(tiny_llama)
    spans = grid.char_spans("year", texts)
    assert [t[a:b] for t, (a, b) in zip(texts, spans, strict=True)] == ["1984", "1999"]
    acts = interp.capture(tiny_llama, grid, layers=[0], positions="year", progress=False)
    assert acts.meta.year.tolist() == [1984, 1999]


def test_tag_errors(tiny_llama):
    ps = PromptSet(["a prompt"]).tag("trigger", "1984")
    with pytest.raises(SpanNotFoundError, match="not found in prompt 0"):
        ps.char_spans("trigger", ps.render(tiny_llama))
    with pytest.raises(EmptyPromptsError):
        PromptSet([])
    with pytest.raises(InterpError, match="slots without values"):
        PromptSet.grid("{a} {b}", a=[1])


def test_chat_jsonl_and_question_files(tmp_path):
    chats = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    assert read_chat_jsonl(write_chat_jsonl(tmp_path / "d.jsonl", chats)) == chats
    (tmp_path / "bad.jsonl").write_text('{"text": "no messages"}\n')
    with pytest.raises(InterpError, match="bad.jsonl:1"):
        read_chat_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "q.yaml").write_text(
        "- id: goals\n  paraphrases: ['What is your goal?', 'What do you want?']\n"
        "  samples_per_paraphrase: 3\n  judge: malevolent\n"
    )
    qs = read_questions(tmp_path / "q.yaml")
    assert len(qs) == 2 and qs.meta.samples_per_paraphrase.tolist() == [3, 3]
    assert qs.meta.judge.tolist() == ["malevolent", "malevolent"]
