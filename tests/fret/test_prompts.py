"""Prompt templates: packaged files, placeholder checks, rendering, overrides."""

import gin
import pytest

from gecko_jax.fret import templates
from gecko_jax.fret.config import PromptConfig, RelevanceLabel
from gecko_jax.fret.templates import Prompts, TemplateError

PASSAGE = "Alpha beta\n  gamma {passage} delta."


def _lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_generation_prompt_puts_the_passage_on_one_passage_line():
    prompt = Prompts().generate(PASSAGE, "", "fact checking", "the query is a claim.")
    assert _lines_starting(prompt, "Passage: ") == ["Passage: Alpha beta gamma {passage} delta."]
    assert _lines_starting(prompt, "Title: ") == ["Title: none"]
    assert "Task type: fact checking\nOutput:" in prompt
    assert "must fit the task type (fact checking): the query is a claim." in prompt
    # The few-shot JSON keeps its braces; no placeholder is left unfilled.
    assert '{"task": "Given a question, retrieve passages that answer the question"' in prompt
    assert "{task_type}" not in prompt and "{title}" not in prompt


def test_query_likelihood_prompt_ends_before_the_query():
    prompt, continuation = Prompts().ql(PASSAGE, "A title", "is  gamma\nreal", "find facts")
    assert prompt.endswith("\nQuery:")
    assert continuation == " is gamma real"
    full = prompt + continuation
    assert _lines_starting(full, "Query: ") == ["Query: is gamma real"]
    assert _lines_starting(full, "Passage: ") == ["Passage: Alpha beta gamma {passage} delta."]
    assert _lines_starting(full, "Title: ") == ["Title: A title"]


def test_relevance_prompt_lists_the_labels():
    prompts = Prompts()
    prompt = prompts.rc(PASSAGE, "", "is gamma real", "find facts")
    assert prompts.labels == ["3", "2", "1", "0"]
    assert "3: the passage perfectly answers the query\n2: " in prompt
    assert _lines_starting(prompt, "Query: ") == ["Query: is gamma real"]
    assert _lines_starting(prompt, "Passage: ") == ["Passage: Alpha beta gamma {passage} delta."]
    assert "for the task: find facts" in prompt
    assert prompt.rstrip().endswith("Label:")


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_missing_required_placeholder_names_file_and_placeholder(tmp_path):
    path = _write(tmp_path, "gen.txt", "Task type: {task_type}\nText: {title}\n")
    with pytest.raises(TemplateError, match=r"gen\.txt lacks the required placeholder \{passage\}"):
        Prompts(PromptConfig(generation_template=path))


def test_unknown_placeholder_is_an_error(tmp_path):
    path = _write(tmp_path, "rc.txt", "Passage: {passage}\nQuery: {query}\n{labels}\n{pasage}\n")
    with pytest.raises(TemplateError, match=r"rc\.txt has an unknown placeholder \{pasage\}"):
        Prompts(PromptConfig(relevance_template=path))


def test_query_likelihood_template_must_end_with_the_query(tmp_path):
    path = _write(tmp_path, "ql.txt", "Passage: {passage}\nQuery: {query}\nThanks.\n")
    with pytest.raises(TemplateError, match=r"ql\.txt must end with \{query\}, found 'Thanks\.'"):
        Prompts(PromptConfig(query_likelihood_template=path))


def test_unreadable_template_names_the_path(tmp_path):
    missing = str(tmp_path / "nope" / "gen.txt")
    with pytest.raises(TemplateError, match="cannot read prompt template .*nope/gen.txt"):
        Prompts(PromptConfig(generation_template=missing))


def test_overridden_templates_and_labels(tmp_path):
    rc = _write(tmp_path, "rc.txt", "Q: {query}\nPassage: {passage}\n{labels}\nA:")
    labels = (RelevanceLabel("Yes", 1.0, "relevant"), RelevanceLabel("No", 0.0, "not relevant"))
    prompts = Prompts(PromptConfig(relevance_template=rc, relevance_labels=labels))
    assert prompts.labels == ["Yes", "No"]
    assert (
        prompts.rc("p  q", "", "x", "t")
        == "Q: x\nPassage: p q\nYes: relevant\nNo: not relevant\nA:"
    )


def test_render_requires_every_placeholder():
    template = templates.parse_template("a {passage} b {title}", "inline", ("passage",), ("title",))
    assert template.render(passage="P", title="{title}") == "a P b {title}"
    with pytest.raises(TemplateError, match=r"inline: no value for placeholder \{title\}"):
        template.render(passage="P")


def test_prompt_config_is_gin_configurable():
    gin.clear_config()
    try:
        gin.parse_config("gecko_jax.fret.PromptConfig.missing_title = 'untitled'")
        assert PromptConfig().missing_title == "untitled"
        assert Prompts().ql("p", "", "q", "t")[0].splitlines()[2] == "Title: untitled"
    finally:
        gin.clear_config()
    assert PromptConfig().missing_title == "none"


def test_label_config_is_checked():
    with pytest.raises(ValueError, match="PromptConfig.relevance_labels must be distinct"):
        PromptConfig(
            relevance_labels=(RelevanceLabel("1", 1.0, "a"), RelevanceLabel("1", 0.0, "b"))
        )
