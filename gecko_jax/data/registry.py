"""Registering vocabulary-independent seqio tasks of unified examples.

A task registered with :func:`register_unified_task` reads its source, runs its own
preprocessors (raw records -> :data:`examples.OUTPUT_SIGNATURE`), checks the unified
features, then :func:`preprocessors.format_texts`. Its output features are strings
(:data:`TEXT_OUTPUT_FEATURES`); the model's vocabulary only enters in the feature
converter, so one mixture feeds WordPiece (MiniLM) and SentencePiece (T5) models.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import seqio
import tensorflow as tf

from gecko_jax import formats
from gecko_jax.data import examples as ex
from gecko_jax.data import preprocessors as prep


def _text_feature(rank: int) -> seqio.Feature:
    # PassThroughVocabulary: seqio requires a vocabulary; strings are not encoded.
    return seqio.Feature(
        seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.string, rank=rank
    )


TEXT_OUTPUT_FEATURES: Mapping[str, seqio.Feature] = types.MappingProxyType(
    {
        prep.QUERY_TEXT: _text_feature(0),
        prep.POSITIVE_TEXT: _text_feature(0),
        prep.NEGATIVE_TEXTS: _text_feature(1),
        ex.TASK: _text_feature(0),
        ex.SOURCE: _text_feature(0),
    }
)


class UnifiedTask(seqio.Task):
    """A seqio Task of formatted unified examples, with metadata and its input format."""

    def __init__(
        self,
        *args: Any,
        metadata: Mapping[str, Any] | None = None,
        input_format: formats.InputFormat = prep.DEFAULT_FORMAT,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._metadata = types.MappingProxyType(dict(metadata or {}))
        self._input_format = input_format

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Free-form facts about the task (type, paper section, rows, ...), read-only."""
        return self._metadata

    @property
    def input_format(self) -> formats.InputFormat:
        """The templates that :func:`preprocessors.format_texts` applies."""
        return self._input_format


def _check_unified(dataset: tf.data.Dataset, name: str) -> tf.data.Dataset:
    return prep.check_unified(dataset, f"task {name!r} after its preprocessors")


def register_unified_task(
    name: str,
    source: seqio.DataSource,
    *,
    preprocessors: Sequence[Callable[..., tf.data.Dataset]] = (),
    metadata: Mapping[str, Any] | None = None,
    input_format: formats.InputFormat | None = None,
    replace: bool = True,
    shuffle_buffer_size: int | None = seqio.SHUFFLE_BUFFER_SIZE,
) -> UnifiedTask:
    """Registers a seqio Task whose examples are formatted unified examples.

    Args:
      name: the task name (seqio's rules: letters, digits, ``_ . : #``).
      source: a seqio DataSource (e.g. :func:`sources.file_source`, a TFDS source).
      preprocessors: seqio preprocessors turning the source's records into unified
        examples; none when the source yields them already.
      metadata: facts kept on the task (``task.metadata``).
      input_format: templates for :func:`preprocessors.format_texts`; None is
        Gecko's default.
      replace: replace a task of the same name; False makes that an error.
      shuffle_buffer_size: seqio's example shuffle buffer (None disallows shuffling).

    Returns:
      The registered task (``seqio.get_mixture_or_task(name)`` finds it too).

    Raises:
      ValueError: the name is taken and ``replace`` is False, or is invalid.
    """
    if name in seqio.TaskRegistry.names():
        if not replace:
            raise ValueError(
                f"task {name!r} is already registered (pass replace=True to replace it)"
            )
        seqio.TaskRegistry.remove(name)
    input_format = input_format or prep.DEFAULT_FORMAT
    steps = [
        *preprocessors,
        functools.partial(_check_unified, name=name),
        functools.partial(prep.format_texts, input_format=input_format),
    ]
    return seqio.TaskRegistry.add(
        name,
        source=source,
        output_features=dict(TEXT_OUTPUT_FEATURES),
        preprocessors=steps,
        task_cls=UnifiedTask,
        metadata=metadata,
        input_format=input_format,
        shuffle_buffer_size=shuffle_buffer_size,
    )


def get_task_dataset(
    name: str,
    *,
    split: str = "train",
    shuffle: bool = True,
    seed: int | None = 0,
    shard_info: seqio.ShardInfo | None = None,
    num_epochs: int | None = None,
) -> tf.data.Dataset:
    """The formatted text examples of a registered task (unbatched).

    Args:
      name: a registered task.
      split: the source split.
      shuffle: shuffle files and examples (deterministic by ``seed``).
      seed: the shuffle seed; None is nondeterministic.
      shard_info: this host's shard (``seqio.ShardInfo(index, num_shards)``).
      num_epochs: passes over the data; None repeats forever.
    """
    task = seqio.get_mixture_or_task(name)
    if not isinstance(task, seqio.Task):
        raise TypeError(f"{name!r} is a mixture, not a task")
    return task.get_dataset(
        sequence_length=None,
        split=split,
        shuffle=shuffle,
        seed=seed,
        shard_info=shard_info,
        num_epochs=num_epochs,
        trim_output_features=False,
        use_cached=False,
    )
