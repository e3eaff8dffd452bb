"""The training loop: train steps, each followed by the run's periodic actions.

After every step the loop stops on a non-finite loss, then calls its actions in order;
each is a clu ``PeriodicCallback`` that knows on which steps it is due:

1. progress: examples/s and real tokens/s, the metrics to TensorBoard and a console line
   (after the first step, which compiles, then every ``log_every`` steps and at the last);
2. in-training evaluation (every ``eval_every`` steps and at the last);
3. checkpoint, on every step: the manager saves on its own interval; the last step, a
   SIGINT (Ctrl-C) and a SIGTERM (preemption) force a save, and after a signal's save the
   loop ends with :class:`TrainingStopped`. A second Ctrl-C stops at once, unsaved.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from gecko_jax import exit_codes, partitioning
from gecko_jax.checkpoints import CheckpointManager
from gecko_jax.pretrained import PretrainedModel
from gecko_jax.trainer import Trainer, TrainState

if TYPE_CHECKING:
    from clu import metric_writers

    from gecko_jax.train_eval import InTrainingEval

log = logging.getLogger("gecko_jax.train")
Metrics = dict[str, float]
PeriodicAction = Callable[..., Any]  # action(step, state=..., metrics=...)


class NonFiniteLossError(exit_codes.Stopped, RuntimeError):
    """The loss became NaN or infinite: the run failed by its own fault."""

    exit_code = exit_codes.FAILED


class TrainingStopped(exit_codes.Stopped):
    """A signal stopped the run between two steps, after the checkpoint of the last one.

    Raise it with :meth:`for_signal`. The exit status is a class attribute of the
    subclass (:class:`Preempted`, :class:`Interrupted`), so it survives gin's re-raising,
    which replaces the instance.

    Attributes:
      step: the step the checkpoint holds.
    """

    what = "stopped"

    def __init__(self, step: int, directory: str) -> None:
        super().__init__(
            f"{self.what} at step {step}; checkpoint saved in {directory}; "
            "rerun the same command to resume"
        )
        self.step = step

    @staticmethod
    def for_signal(signum: int, step: int, directory: str) -> TrainingStopped:
        """The exception of a run stopped by ``signum`` (SIGTERM: preempted)."""
        return (Preempted if signum == signal.SIGTERM else Interrupted)(step, directory)


class Preempted(TrainingStopped):
    """SIGTERM, as a TPU VM's preemption or a job scheduler sends it: restart the run."""

    exit_code = exit_codes.PREEMPTED
    what = "preempted (SIGTERM)"


class Interrupted(TrainingStopped):
    """SIGINT (Ctrl-C): a person stopped the run."""

    exit_code = exit_codes.INTERRUPTED
    what = "interrupted"


@dataclasses.dataclass
class TrainSetup:
    """What :func:`train_loop` runs, as ``train.setup_train_loop`` builds it.

    Attributes:
      trainer: shards and jits the train step.
      state: the restored or initial train state.
      batches: the input (``next``, ``get_state``); positioned where ``state`` stands.
      checkpoints: the run's checkpoint manager.
      writer: where metrics go (TensorBoard events on the first process).
      pretrained: the pre-trained model; the evaluation's encoder is built from it.
      train_steps: the step the run ends at.
      batch_size: global examples per step.
      log_every: steps between progress lines.
      evaluation: in-training evaluation, or None.
    """

    trainer: Trainer
    state: TrainState
    batches: Any
    checkpoints: CheckpointManager
    writer: metric_writers.MetricWriter
    pretrained: PretrainedModel
    train_steps: int
    batch_size: int
    log_every: int
    evaluation: InTrainingEval | None = None


class StopRequest:
    """Remembers a SIGINT or SIGTERM so the loop can save and stop between steps.

    The handlers are installed for the loop only (and only from the main thread, where
    Python delivers signals). A second SIGINT raises ``KeyboardInterrupt`` at once, unless
    it comes within :attr:`REPEAT_S` of the first: wrappers such as ``timeout`` forward
    the terminal's Ctrl-C to a process that received it already.

    Attributes:
      signum: the first signal received, or None.
      saved: the checkpoint it asked for is written; the loop ends.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    REPEAT_S = 1.0

    def __init__(self) -> None:
        self.signum: int | None = None
        self._received_at = 0.0
        self.saved = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            if time.monotonic() - self._received_at >= self.REPEAT_S:
                raise KeyboardInterrupt
            return
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum, self._received_at = signum, time.monotonic()
            log.warning(
                "%s received: finishing this step, then saving a checkpoint and stopping%s",
                name,
                " (Ctrl-C again stops at once, without saving)" if signum == signal.SIGINT else "",
            )


class Throughput:
    """Examples/s and real tokens/s, timed from the end of the first step (it compiles).

    Args:
      step: the step the run starts from.
      batch_size: global examples per step.
    """

    def __init__(self, step: int, batch_size: int) -> None:
        self._batch_size = batch_size
        self.first_step = step + 1
        self.first_step_s = 0.0
        self._start, self._start_step, self._tokens = time.perf_counter(), step, 0

    def count(self, step: int, tokens: int) -> None:
        """Records that ``step`` ended after training on ``tokens`` real tokens."""
        self._tokens += tokens
        if step == self.first_step:
            now = time.perf_counter()
            self.first_step_s = now - self._start
            self._start, self._start_step, self._tokens = now, step, 0

    def rates(self, step: int) -> Metrics:
        """``examples_per_second`` and ``tokens_per_second`` up to ``step``."""
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        return {
            "examples_per_second": (step - self._start_step) * self._batch_size / elapsed,
            "tokens_per_second": self._tokens / elapsed,
        }


def first_step_line(step: int, total: int, metrics: Metrics, seconds: float) -> str:
    """The console line of a run's first step: its loss and how long it took to compile."""
    return (
        f"step {step}/{total}  loss {metrics['loss']:.4f}  acc {metrics.get('accuracy', 0):.3f}  "
        f"first step {seconds:.1f} s (compiling the train step); throughput from the next line"
    )


def progress_line(step: int, total: int, metrics: Metrics, eta_s: float) -> str:
    """The console line of a step: loss, accuracy, throughput and time left."""
    eta = time.strftime("%H:%M:%S", time.gmtime(max(eta_s, 0))) if eta_s < 86400 * 30 else "--"
    return (
        f"step {step}/{total}  loss {metrics['loss']:.4f}  acc {metrics.get('accuracy', 0):.3f}  "
        f"{metrics['examples_per_second']:.1f} examples/s  "
        f"{metrics['tokens_per_second']:.0f} tokens/s  ETA {eta}"
    )


def to_global(batch: dict[str, np.ndarray], mesh: Any, host_local: bool) -> Any:
    """A batch as global arrays.

    A mixture's batches are already this host's rows; a pairs file's are the global
    batch (every process builds the same one) of which each keeps its contiguous
    share, as ``partitioning.host_local_batch_to_global`` expects.
    """
    if host_local:
        return partitioning.host_local_batch_to_global(batch, mesh)
    count, index = jax.process_count(), jax.process_index()
    rows = next(iter(batch.values())).shape[0] // count
    local = {k: v[index * rows : (index + 1) * rows] for k, v in batch.items()}
    return partitioning.host_local_batch_to_global(local, mesh)


def real_tokens(batch: dict[str, np.ndarray]) -> int:
    """Non-padding tokens of a batch (pad id 0)."""
    return int(sum(np.count_nonzero(v) for k, v in batch.items() if k.endswith("_tokens")))


def periodic_actions(
    setup: TrainSetup, throughput: Throughput, stop: StopRequest
) -> list[PeriodicAction]:
    """The actions run after each step, in order: progress, evaluation, checkpoint."""
    from clu.periodic_actions import PeriodicCallback  # imports TensorBoard's writers

    last = [setup.train_steps]

    def report_progress(step: int, t: float, state: TrainState, metrics: Metrics) -> None:
        if step == throughput.first_step and step < setup.train_steps:
            setup.writer.write_scalars(step, metrics)
            log.info(first_step_line(step, setup.train_steps, metrics, throughput.first_step_s))
            return
        metrics.update(throughput.rates(step))
        setup.writer.write_scalars(step, metrics)
        left = (setup.train_steps - step) * setup.batch_size
        eta_s = left / max(metrics["examples_per_second"], 1e-9)
        log.info(progress_line(step, setup.train_steps, metrics, eta_s))

    def save_checkpoint(step: int, t: float, state: TrainState, metrics: Metrics) -> None:
        requested = stop.requested  # read once: a signal may land at any moment
        force = step == setup.train_steps or requested
        setup.checkpoints.save(step, state, setup.batches.get_state(), force=force)
        stop.saved = requested

    actions = [
        PeriodicCallback(
            every_steps=setup.log_every,
            on_steps=[throughput.first_step, *last],
            callback_fn=report_progress,
        )
    ]
    evaluation = setup.evaluation
    if evaluation is not None:

        def evaluate(step: int, t: float, state: TrainState, metrics: Metrics) -> None:
            eval_metrics = evaluation.run(step, setup.pretrained, state.params)
            setup.writer.write_scalars(step, eval_metrics)
            metrics.update(eval_metrics)

        actions.append(
            PeriodicCallback(every_steps=evaluation.every, on_steps=last, callback_fn=evaluate)
        )
    # Every step: the manager knows which steps are due.
    actions.append(PeriodicCallback(every_steps=1, callback_fn=save_checkpoint))
    return actions


def check_finite(metrics: Metrics, step: int, checkpoints: CheckpointManager) -> None:
    """Raises NonFiniteLossError, naming the step and the checkpoint kept, on a bad loss."""
    if not np.isfinite(metrics["loss"]):
        raise NonFiniteLossError(
            f"loss is {metrics['loss']} at step {step}; the last good checkpoint "
            f"(step {checkpoints.latest_step()}) is kept in {checkpoints.directory}"
        )


def train_loop(setup: TrainSetup) -> Metrics:
    """Trains from the state's step to ``setup.train_steps``; returns the last step's metrics.

    A SIGINT or SIGTERM ends the loop after the running step and its checkpoint. The
    checkpoints, the evaluation and the writer are closed however the loop ends.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite (the last good checkpoint stays).
      TrainingStopped: a signal stopped the run before its last step (checkpoint saved).
    """
    stop = StopRequest()
    stop.install()
    state = setup.state
    step = int(state.step)
    throughput = Throughput(step, setup.batch_size)
    actions = periodic_actions(setup, throughput, stop)
    host_local = getattr(setup.batches, "host_local", False)
    processes = jax.process_count() if host_local else 1
    metrics: Metrics = {}
    try:
        while step < setup.train_steps and not stop.saved:
            batch = next(setup.batches)
            global_batch = to_global(batch, setup.trainer.mesh, host_local)
            state, step_metrics = setup.trainer.train_step(state, global_batch)
            step += 1
            metrics = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
            throughput.count(step, real_tokens(batch) * processes)
            check_finite(metrics, step, setup.checkpoints)
            for action in actions:
                action(step, state=state, metrics=metrics)
    finally:
        stop.restore()
        setup.checkpoints.close()  # waits for an asynchronous save to finish
        if setup.evaluation is not None:
            setup.evaluation.close()
        setup.writer.flush()
    if stop.saved and step < setup.train_steps:
        raise TrainingStopped.for_signal(stop.signum, step, setup.checkpoints.directory)
    return metrics
