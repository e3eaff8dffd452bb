"""Prompt templates: editable text files with ``{name}`` placeholders.

The packaged templates live in ``gecko_jax/fret/prompts/``:

======================== ===================================== =============================
file                     required placeholders                 optional placeholders
======================== ===================================== =============================
``generate.txt``         ``{passage}``, ``{task_type}``        ``{title}``, ``{task_guidance}``
``query_likelihood.txt`` ``{passage}``, ``{query}`` (last)     ``{title}``, ``{task}``
``relevance.txt``        ``{passage}``, ``{query}``,           ``{title}``, ``{task}``
                         ``{labels}``
======================== ===================================== =============================

Only ``{identifier}`` sequences are placeholders, so the JSON of few-shot examples
(``{"task": ...}``) needs no escaping. A template missing a required placeholder or
holding an unknown one is a :class:`TemplateError` naming the file and the placeholder.

The query-likelihood template must end with ``{query}``: the text before it is the
prompt and the query is the scored continuation. Whitespace just before ``{query}``
moves into the continuation (``"Query:"`` + ``" what is x"``), the way BPE tokenizers
split text. Passages are put into prompts with their whitespace runs collapsed to one
space, so a passage is always on one ``Passage: ...`` line.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection, Mapping

import tensorflow as tf

from gecko_jax.fret.config import PromptConfig, RelevanceLabel

PROMPTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts")

# str.format would treat every brace as a field, so few-shot JSON would need "{{...}}";
# a regex over identifiers only keeps the template files readable.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(ValueError):
    """A template file is unreadable or its placeholders are wrong."""


@dataclasses.dataclass(frozen=True)
class Template:
    """A loaded prompt template.

    Attributes:
      text: the template text.
      source: where it came from (a path), for messages.
      placeholders: the placeholder names found in ``text``.
    """

    text: str
    source: str
    placeholders: frozenset[str]

    def render(self, **values: str) -> str:
        """Substitutes every placeholder (values are inserted verbatim, never re-parsed).

        Raises:
          TemplateError: a placeholder has no value.
        """
        missing = sorted(self.placeholders - values.keys())
        if missing:
            raise TemplateError(f"{self.source}: no value for placeholder {{{missing[0]}}}")
        return _PLACEHOLDER.sub(
            lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), self.text
        )


def template_path(name_or_path: str) -> str:
    """A packaged template's path for a bare file name, else the path unchanged."""
    if (
        os.sep not in name_or_path
        and "/" not in name_or_path
        and not tf.io.gfile.exists(name_or_path)
    ):
        return os.path.join(PROMPTS_DIR, name_or_path)
    return name_or_path


def load_template(
    name_or_path: str, required: Collection[str], optional: Collection[str] = ()
) -> Template:
    """Reads a template file and checks its placeholders.

    Args:
      name_or_path: a packaged template's file name (``"generate.txt"``) or a local or
        ``gs://`` path.
      required: placeholders the template must contain.
      optional: further placeholders it may contain.

    Raises:
      TemplateError: unreadable file, a required placeholder missing, an unknown one.
    """
    path = template_path(name_or_path)
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
    except (tf.errors.OpError, OSError, UnicodeDecodeError) as e:
        raise TemplateError(f"cannot read prompt template {path}: {e}") from None
    return parse_template(text, path, required, optional)


def parse_template(
    text: str, source: str, required: Collection[str], optional: Collection[str] = ()
) -> Template:
    """Checks a template's text (see :func:`load_template`)."""
    found = frozenset(_PLACEHOLDER.findall(text))
    for name in sorted(required):
        if name not in found:
            raise TemplateError(
                f"prompt template {source} lacks the required placeholder {{{name}}}"
            )
    allowed = set(required) | set(optional)
    for name in sorted(found - allowed):
        raise TemplateError(
            f"prompt template {source} has an unknown placeholder {{{name}}}; "
            f"allowed: {', '.join('{' + a + '}' for a in sorted(allowed))}"
        )
    if not text.strip():
        raise TemplateError(f"prompt template {source} is empty")
    return Template(text, source, found)


def split_continuation(
    template: Template, field: str, values: Mapping[str, str]
) -> tuple[str, str]:
    """Renders a template that ends with ``{field}`` as (prompt, continuation).

    Raises:
      TemplateError: text other than whitespace follows ``{field}``.
    """
    marker = "{" + field + "}"
    head, _, tail = template.text.rpartition(marker)
    if tail.strip():
        raise TemplateError(
            f"prompt template {template.source} must end with {marker}, "
            f"found {tail.strip()[:40]!r} after it"
        )
    prefix = Template(head, template.source, frozenset(_PLACEHOLDER.findall(head)))
    prompt = prefix.render(**values)
    stripped = prompt.rstrip(" ")
    return stripped, prompt[len(stripped) :] + values[field]


def one_line(text: str) -> str:
    """Collapses whitespace runs (newlines included) to one space."""
    return " ".join(text.split())


def format_labels(labels: tuple[RelevanceLabel, ...]) -> str:
    """The ``{labels}`` block of the relevance prompt: one ``label: description`` a line."""
    return "\n".join(f"{r.label}: {r.description}" for r in labels)


class Prompts:
    """The three FRet prompts, loaded and checked once.

    Attributes:
      config: the template files and relevance labels.
      generation, query_likelihood, relevance: the loaded templates.
    """

    def __init__(self, config: PromptConfig | None = None) -> None:
        self.config = config = config or PromptConfig()
        self.generation = load_template(
            config.generation_template, ("passage", "task_type"), ("title", "task_guidance")
        )
        self.query_likelihood = load_template(
            config.query_likelihood_template, ("passage", "query"), ("title", "task")
        )
        split_continuation(
            self.query_likelihood, "query", _sample_values()
        )  # checks {query} is last
        self.relevance = load_template(
            config.relevance_template, ("passage", "query", "labels"), ("title", "task")
        )
        self._labels = format_labels(config.relevance_labels)

    @property
    def labels(self) -> list[str]:
        """The relevance label strings, in configured order."""
        return [r.label for r in self.config.relevance_labels]

    def _passage_values(self, text: str, title: str) -> dict[str, str]:
        return {"passage": one_line(text), "title": one_line(title) or self.config.missing_title}

    def generate(self, text: str, title: str, task_type: str, task_guidance: str) -> str:
        """The generation prompt for one passage and task type."""
        return self.generation.render(
            **self._passage_values(text, title), task_type=task_type, task_guidance=task_guidance
        )

    def ql(self, text: str, title: str, query: str, task: str) -> tuple[str, str]:
        """(prompt, continuation) whose log-likelihood is QL(query, passage)."""
        values = {**self._passage_values(text, title), "query": one_line(query), "task": task}
        return split_continuation(self.query_likelihood, "query", values)

    def rc(self, text: str, title: str, query: str, task: str) -> str:
        """The relevance-classification prompt (answered with one of :attr:`labels`)."""
        return self.relevance.render(
            **self._passage_values(text, title),
            query=one_line(query),
            task=task,
            labels=self._labels,
        )


def _sample_values() -> dict[str, str]:
    return {"passage": "p", "title": "t", "query": "q", "task": "t"}
