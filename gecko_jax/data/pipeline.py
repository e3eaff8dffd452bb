"""The trainer's input from a registered seqio mixture or task, one dataset per batch.

    input = mixture_input("minilm_local", vocabulary, {"query": 48, "positive": 48,
                          "negative": 48, "num_negatives": 0}, global_batch_size=32)
    batch = next(input)   # this host's rows of one task's batch

Each task of the mixture is read with seqio (shuffled by seed, sharded per host with
``seqio.ShardInfo``), converted with :class:`GeckoFeatureConverter` (the model's
vocabulary and feature lengths, the task's ``dataset_id`` = its index in the
mixture), and handed to :class:`OneDatasetPerBatchMixture` with the mixture's rates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import seqio

from gecko_jax.data import registry
from gecko_jax.data.feature_converter import GeckoFeatureConverter
from gecko_jax.data.mixing import MixtureRates, OneDatasetPerBatchMixture
from gecko_jax.data.vocabularies import EncoderVocabulary


def register_mixture(name: str, rates: Mapping[str, float] | Sequence[str]) -> str:
    """Registers (or replaces) a seqio mixture of registered tasks; returns its name.

    Args:
      name: the mixture's name (``MIXTURE_OR_TASK_NAME``).
      rates: task name -> rate (batches are drawn in these proportions), or a list
        of task names for equal rates.

    Raises:
      ValueError: a task that is not registered (the message lists the registered ones).
    """
    pairs = (
        [(task, 1.0) for task in rates] if not isinstance(rates, Mapping) else list(rates.items())
    )
    known = seqio.TaskRegistry.names()
    unknown = [task for task, _ in pairs if task not in known]
    if unknown:
        raise ValueError(
            f"mixture {name!r} names unregistered tasks {unknown}; registered: {sorted(known)}"
        )
    seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, pairs)
    return name


def tasks_and_rates(name: str) -> dict[str, float]:
    """Task name -> rate of a registered mixture (a task alone has rate 1).

    Raises:
      ValueError: ``name`` is neither a registered mixture nor a task.
    """
    try:
        provider = seqio.get_mixture_or_task(name)
    except ValueError:
        known = sorted(set(seqio.MixtureRegistry.names()) | set(seqio.TaskRegistry.names()))
        raise ValueError(
            f"MIXTURE_OR_TASK_NAME {name!r} is not registered; known: {known}"
        ) from None
    if isinstance(provider, seqio.Mixture):
        return {task.name: float(provider.get_rate(task)) for task in provider.tasks}
    return {provider.name: 1.0}


def mixture_input(
    name: str,
    vocabulary: EncoderVocabulary,
    task_feature_lengths: Mapping[str, int],
    global_batch_size: int,
    *,
    seed: int = 0,
    shard_info: seqio.ShardInfo | None = None,
    split: str = "train",
    temperature: float = 1.0,
) -> OneDatasetPerBatchMixture:
    """The resumable, one-dataset-per-batch input of a mixture or task.

    Args:
      name: a registered mixture or task.
      vocabulary: the model's vocabulary (tokenization happens here, not in tasks).
      task_feature_lengths: ``query``, ``positive``, ``negative`` token lengths and
        ``num_negatives``.
      global_batch_size: rows per batch over all hosts.
      seed: shuffling and task-choice seed.
      shard_info: this host's shard; None for a single host.
      split: the tasks' split.
      temperature: rate temperature (1 keeps the mixture's rates).
    """
    rates = tasks_and_rates(name)
    converter = GeckoFeatureConverter(vocabulary)
    datasets = {
        task: converter(
            registry.get_task_dataset(
                task, split=split, shuffle=True, seed=seed, shard_info=shard_info, num_epochs=1
            ),
            task_feature_lengths,
            dataset_id=index,
        )
        for index, task in enumerate(rates)
    }
    return OneDatasetPerBatchMixture(
        datasets,
        MixtureRates(rates, temperature),
        global_batch_size,
        seed,
        shard_info=shard_info,
    )
