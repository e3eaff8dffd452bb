"""The demo's stages and where each writes, in one work directory.

::

    WORKDIR/demo.json                 the run's mode and LLM (a rerun must match)
    WORKDIR/corpus/                   train.jsonl, held_out.jsonl, title_pairs.jsonl
    WORKDIR/fret/train, fret/held_out FRet rows (fret-*.jsonl), summary.json, LLM cache
    WORKDIR/models/prefinetune        gecko-train MODEL_DIRs: checkpoints/, TensorBoard
    WORKDIR/models/finetune           events, config.gin
    WORKDIR/eval/                     start.json, fine_tuned.json
    WORKDIR/report/                   results.md, results.json, results.png
    WORKDIR/export/                   saved_model/, sentence_transformers/
    WORKDIR/serve/requests.json       the two requests sent to gecko-serve and the answers
    WORKDIR/stages/*.done             one marker per finished stage
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from gecko_jax import fileio
from gecko_jax.demo import commands, corpus, evaluation, report, serving
from gecko_jax.demo.settings import DemoSettings
from gecko_jax.demo.stages import Stage

START_MODEL = "all-MiniLM-L6-v2"
LOOPBACK = "loopback"
LOOPBACK_LABEL = "loopback, the built-in deterministic stand-in with keyword-heuristic labels"
RUN_FILE = "demo.json"


def llm_label(spec: str) -> str:
    """How outputs name the LLM: the stand-in says what it is."""
    return LOOPBACK_LABEL if spec.split(":")[0] == LOOPBACK else spec


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where a demo run writes."""

    workdir: str

    def join(self, *parts: str) -> str:
        """A path under the work directory."""
        return os.path.join(self.workdir, *parts)

    @property
    def train_corpus(self) -> str:
        return self.join("corpus", "train.jsonl")

    @property
    def held_out_corpus(self) -> str:
        return self.join("corpus", "held_out.jsonl")

    @property
    def title_pairs(self) -> str:
        return self.join("corpus", "title_pairs.jsonl")

    @property
    def fret_train(self) -> str:
        return self.join("fret", "train")

    @property
    def fret_held_out(self) -> str:
        return self.join("fret", "held_out")

    @property
    def prefinetune(self) -> str:
        return self.join("models", "prefinetune")

    @property
    def finetune(self) -> str:
        return self.join("models", "finetune")

    @property
    def start_scores(self) -> str:
        return self.join("eval", "start.json")

    @property
    def result_scores(self) -> str:
        return self.join("eval", "fine_tuned.json")

    @property
    def report_markdown(self) -> str:
        return self.join("report", "results.md")

    @property
    def report_json(self) -> str:
        return self.join("report", "results.json")

    @property
    def report_png(self) -> str:
        return self.join("report", "results.png")

    @property
    def saved_model(self) -> str:
        return self.join("export", "saved_model")

    @property
    def sentence_transformers(self) -> str:
        return self.join("export", "sentence_transformers")

    @property
    def requests(self) -> str:
        return self.join("serve", "requests.json")


def check_run_file(paths: Paths, mode: str, llm: str) -> None:
    """Records the run's mode and LLM in a new work directory, or checks them.

    Raises:
      ValueError: the directory holds a run of another mode or LLM (gecko-train and
        FRet refuse changed settings too; naming the work directory says what to do).
    """
    path = paths.join(RUN_FILE)
    wanted = {"mode": mode, "llm": llm}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
        changed = [k for k in wanted if recorded.get(k) != wanted[k]]
        if changed:
            was = ", ".join(f"{k} {recorded.get(k)!r}" for k in changed)
            now = ", ".join(f"{k} {wanted[k]!r}" for k in changed)
            raise ValueError(
                f"--workdir {paths.workdir} holds a demo run with {was}, not {now}; "
                "give another --workdir (or delete that one)"
            )
        return
    os.makedirs(paths.workdir, exist_ok=True)
    with fileio.atomic_open(path) as f:
        json.dump(wanted, f, indent=2)


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, value: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with fileio.atomic_open(path) as f:
        json.dump(value, f, indent=2)


@dataclasses.dataclass
class Demo:
    """The stages of one run.

    Attributes:
      paths: the work directory's layout.
      settings: the run's sizes.
      llm: the FRet LLM client spec.
      eval_data_dir: the public evaluation sets (None: held-out split only).
    """

    paths: Paths
    settings: DemoSettings
    llm: str
    eval_data_dir: str | None = None
    _start_encoder: Any = dataclasses.field(default=None, init=False, repr=False)

    def stages(self) -> list[Stage]:
        """Every stage, in order."""
        return [
            Stage(
                "corpus", "build the passage corpus from Python's own documentation", self.corpus
            ),
            Stage("fret_train", f"FRet on the training split ({self.label})", self.fret_train),
            Stage(
                "fret_held_out",
                f"FRet queries for the held-out split ({self.label})",
                self.fret_held_out,
            ),
            Stage("eval_start", f"evaluate the start ({START_MODEL})", self.eval_start),
            Stage("prefinetune", "pre-finetune on title/passage pairs (gecko-train)", self.pft),
            Stage("finetune", "fine-tune on the FRet rows (gecko-train)", self.finetune),
            Stage("eval_result", "evaluate the fine-tuned model", self.eval_result),
            Stage("report", "write the before/after table and its PNG", self.report),
            Stage(
                "export", "export: SavedModel and sentence-transformers (gecko-export)", self.export
            ),
            Stage("serve", "serve the SavedModel and send two requests (gecko-serve)", self.serve),
        ]

    def start_encoder(self) -> Any:
        """The starting model, loaded once for FRet's mining and its evaluation."""
        if self._start_encoder is None:
            from gecko_jax.encoder import Encoder

            self._start_encoder = Encoder.load(
                START_MODEL, max_length=self.settings.encode_max_length
            )
        return self._start_encoder

    @property
    def label(self) -> str:
        return llm_label(self.llm)

    def corpus(self) -> dict[str, Any]:
        train, held_out = corpus.build_corpus(self.settings.max_train, self.settings.max_held_out)
        os.makedirs(os.path.dirname(self.paths.train_corpus), exist_ok=True)
        corpus.write_corpus(held_out, self.paths.held_out_corpus)
        corpus.write_title_pairs(train, self.paths.title_pairs)
        corpus.write_corpus(train, self.paths.train_corpus)
        print(
            f"{len(train)} training and {len(held_out)} held-out passages "
            f"({len({p.title for p in train + held_out})} documents)",
            flush=True,
        )
        return {"train_passages": len(train), "held_out_passages": len(held_out)}

    def _fret(self, corpus_path: str, output_dir: str, shard_size: int) -> dict[str, Any]:
        from gecko_jax.fret import pipeline
        from gecko_jax.fret.config import FretConfig, RetrievalConfig

        config = FretConfig(
            corpus=corpus_path,
            output_dir=output_dir,
            llm=self.llm,
            embedder=START_MODEL,
            shard_size=shard_size,
            retrieval=RetrievalConfig(top_n=self.settings.top_n),
        )
        summary = pipeline.run(config, encoder=self.start_encoder())
        return {"rows": summary.get("rows"), "output_dir": output_dir, "llm": self.label}

    def fret_train(self) -> dict[str, Any]:
        return self._fret(self.paths.train_corpus, self.paths.fret_train, 250)

    def fret_held_out(self) -> dict[str, Any]:
        return self._fret(self.paths.held_out_corpus, self.paths.fret_held_out, 250)

    def _evaluators(self) -> list:
        passages = corpus.read_corpus(self.paths.held_out_corpus)
        return evaluation.build_evaluators(
            passages, self.paths.fret_held_out, self.eval_data_dir, self.settings.eval_batch_size
        )

    def eval_start(self) -> dict[str, Any]:
        write_json(
            self.paths.start_scores, evaluation.evaluate(self.start_encoder(), self._evaluators())
        )
        return {"scores": self.paths.start_scores}

    def _train(self, gin_file: str, model_dir: str, steps: int, batch: int, *extra: str) -> None:
        s = self.settings
        argv = commands.module_argv(
            "train",
            f"--gin_file={gin_file}",
            f"--gin.MODEL_DIR='{model_dir}'",
            f"--gin.TRAIN_STEPS={steps}",
            f"--gin.BATCH_SIZE={batch}",
            f"--gin.QUERY_LENGTH={s.query_length}",
            f"--gin.DOCUMENT_LENGTH={s.document_length}",
            f"--gin.WARMUP_STEPS={max(1, steps // 10)}",
            f"--gin.train.log_every={1 if s.mode == 'quick' else 5}",
            *extra,
        )
        commands.run(argv, "gecko-train")

    def pft(self) -> dict[str, Any]:
        s = self.settings
        self._train(
            "local/demo_prefinetune.gin",
            self.paths.prefinetune,
            s.pair_steps,
            s.pair_batch,
            f"--gin.TRAIN_FILE='{self.paths.title_pairs}'",
        )
        return {"model_dir": self.paths.prefinetune}

    def finetune(self) -> dict[str, Any]:
        s = self.settings
        self._train(
            "local/demo_finetune.gin",
            self.paths.finetune,
            s.fret_steps,
            s.fret_batch,
            f"--gin.FRET_FILES='{os.path.join(self.paths.fret_train, 'fret-*.jsonl')}'",
            f"--gin.train.init_checkpoint='{os.path.join(self.paths.prefinetune, 'checkpoints')}'",
        )
        return {"model_dir": self.paths.finetune}

    def eval_result(self) -> dict[str, Any]:
        from gecko_jax.encoder import Encoder

        encoder = Encoder.load(self.paths.finetune, max_length=self.settings.encode_max_length)
        scores = evaluation.evaluate(encoder, self._evaluators())
        write_json(self.paths.result_scores, scores)
        return {"scores": self.paths.result_scores}

    def report(self) -> dict[str, Any]:
        start = read_json(self.paths.start_scores)
        result = read_json(self.paths.result_scores)
        os.makedirs(os.path.dirname(self.paths.report_png), exist_ok=True)
        report.write_report(
            start, result, self.label, self.paths.report_markdown, self.paths.report_json
        )
        report.write_png(start, result, self.label, self.paths.report_png)
        return {"table": self.paths.report_markdown, "png": self.paths.report_png}

    def export(self) -> dict[str, Any]:
        model = self.paths.finetune
        commands.run(
            commands.module_argv(
                "export",
                "saved_model",
                model,
                self.paths.saved_model,
                "--platforms",
                self.settings.export_platforms,
                "--overwrite",
            ),
            "gecko-export",
        )
        commands.run(
            commands.module_argv(
                "export",
                "sentence_transformers",
                model,
                self.paths.sentence_transformers,
                "--overwrite",
            ),
            "gecko-export",
        )
        return {"saved_model": self.paths.saved_model, "st": self.paths.sentence_transformers}

    def serve(self) -> dict[str, Any]:
        exchanges = serving.serve_and_ask(self.paths.saved_model, self.settings.serve_warmup_length)
        write_json(self.paths.requests, exchanges)
        return {"requests": self.paths.requests}

    def where(self) -> list[tuple[str, str]]:
        """What a run leaves, and where."""
        p = self.paths
        return [
            ("corpus (training split)", p.train_corpus),
            ("corpus (held-out split)", p.held_out_corpus),
            ("title/passage pairs", p.title_pairs),
            (f"FRet rows ({self.label})", os.path.join(p.fret_train, "fret-*.jsonl")),
            ("FRet summary", os.path.join(p.fret_train, "summary.json")),
            ("held-out FRet queries", os.path.join(p.fret_held_out, "fret-*.jsonl")),
            ("pre-finetuning checkpoints", os.path.join(p.prefinetune, "checkpoints")),
            ("fine-tuning checkpoints", os.path.join(p.finetune, "checkpoints")),
            (
                "TensorBoard logs",
                f"{p.prefinetune}, {p.finetune} (tensorboard --logdir {p.join('models')})",
            ),
            ("report (table)", p.report_markdown),
            ("report (PNG)", p.report_png),
            ("report (scores)", p.report_json),
            ("export: SavedModel", p.saved_model),
            ("export: sentence-transformers", p.sentence_transformers),
            ("served requests", p.requests),
        ]
