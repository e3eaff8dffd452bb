"""A sentence-transformers folder from a gecko_jax model, loadable without gecko_jax.

Layout (what ``SentenceTransformer(folder)`` reads, and text-embeddings-inference for
BERT models)::

    modules.json                       Transformer -> Pooling -> [Dense] -> [Normalize]
    config.json, model.safetensors     the backbone as a bare Hugging Face encoder
    tokenizer files                    the vocabulary the model was trained with
    sentence_bert_config.json          max_seq_length
    1_Pooling/config.json              mean or cls (new and legacy keys)
    2_Dense/                           the projection head, if any
    N_Normalize/                       L2 normalisation, if the model normalises
    config_sentence_transformers.json  query/document prompts, cosine similarity
    README.md                          what was exported and how to load it

Gecko's input formats are templates; sentence-transformers prompts are prefixes. An
export therefore fixes one task: the query prompt is the query template with that task
and an empty text, the document prompt the document template with the missing-title
placeholder. A document title cannot be passed through a prefix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import numpy as np
import safetensors.numpy

from gecko_jax import formats
from gecko_jax.data.vocabularies import SentencePieceVocabulary, WordPieceVocabulary
from gecko_jax.encoder import Encoder
from gecko_jax.export.hf_weights import backbone_tensors
from gecko_jax.export.output import staged_directory
from gecko_jax.export.source import ExportError, ExportSource
from gecko_jax.models.hf_checkpoint import CheckpointError, read_config

# Stands for the text while a template is split into prefix and text; a private-use
# character cannot come from a template.
_TEXT_MARK = "\ue000"

# Hugging Face files of a WordPiece tokenizer, copied when the base model has them.
_WORDPIECE_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)

# ``T5Tokenizer`` builds its Unigram model with these ids for pad, EOS and unknown.
_T5_SPECIAL_IDS = {"pad": 0, "eos": 1, "unk": 2}


@dataclasses.dataclass(frozen=True)
class _Family:
    """How one Hugging Face model type is written as a bare encoder."""

    architecture: str  # the transformers class sentence-transformers loads
    drop: tuple[str, ...] = ()  # tensor name prefixes outside the encoder
    config_updates: tuple[tuple[str, Any], ...] = ()


_ENCODER_ONLY_T5 = (("is_encoder_decoder", False), ("use_cache", False))
FAMILIES: dict[str, _Family] = {
    "bert": _Family("BertModel"),
    # sentence-transformers loads these configs with their encoder-only classes.
    "t5": _Family("T5EncoderModel", ("decoder.", "lm_head."), _ENCODER_ONLY_T5),
    "mt5": _Family("MT5EncoderModel", ("decoder.", "lm_head."), _ENCODER_ONLY_T5),
    "umt5": _Family("UMT5EncoderModel", ("decoder.", "lm_head."), _ENCODER_ONLY_T5),
}


def prompts_for_task(input_format: formats.InputFormat, task: str | None) -> dict[str, str]:
    """sentence-transformers prompts that reproduce the encoder's formatting for ``task``.

    Args:
      input_format: the model's query/document templates.
      task: the task description; ``None`` gives no prompts, as texts are then embedded
        unchanged on both sides.

    Returns:
      ``{"query": prefix, "document": prefix}`` (empty without a task).

    Raises:
      ExportError: a template does not end with its ``{text}`` field, so no prefix
        reproduces it.
    """
    if task is None:
        return {}
    return {
        formats.QUERY: _prefix(input_format.query_template, "query", task=task),
        formats.DOCUMENT: _prefix(
            input_format.document_template, "document", title=input_format.missing_title
        ),
    }


def _prefix(template: str, side: str, **fields: str) -> str:
    try:
        filled = template.format(text=_TEXT_MARK, **fields)
    except (KeyError, IndexError, ValueError) as e:
        raise ExportError(f"the {side} template {template!r} cannot be filled: {e}") from None
    if filled.count(_TEXT_MARK) != 1 or not filled.endswith(_TEXT_MARK):
        raise ExportError(
            f"the {side} template {template!r} is not a prefix followed by {{text}}; "
            "sentence-transformers prompts can only prepend text"
        )
    return filled[: -len(_TEXT_MARK)]


def export_sentence_transformers(
    source: ExportSource, out: str | os.PathLike, overwrite: bool = False, task: str | None = None
) -> str:
    """Writes ``source`` as a sentence-transformers folder.

    Args:
      source: the model (see :func:`gecko_jax.export.source.load_source`).
      out: the folder to write.
      overwrite: replace an existing ``out``.
      task: the task the ``query`` / ``document`` prompts are written for; ``None``
        writes no prompts (texts embedded as they are, like ``Encoder.encode(texts)``).

    Returns:
      The absolute path of the folder.

    Raises:
      ExportError: ``out`` exists (without ``overwrite``), the model family has no
        sentence-transformers form, or a template is not a prefix + ``{text}``.
    """
    encoder = source.encoder
    try:
        hf_config = read_config(source.base_dir)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    model_type = hf_config.get("model_type")
    family = FAMILIES.get(model_type)
    if family is None:
        raise ExportError(
            f"model_type={model_type!r} ({source.base_dir}/config.json) has no "
            f"sentence-transformers export; supported: {', '.join(sorted(FAMILIES))}"
        )
    prompts = prompts_for_task(encoder.input_format, task)
    with staged_directory(out, overwrite) as staging:
        _write_transformer(source, hf_config, family, staging)
        modules = _write_head(encoder, staging)
        _write_json(os.path.join(staging, "modules.json"), modules)
        _write_json(
            os.path.join(staging, "config_sentence_transformers.json"),
            {
                "model_type": "SentenceTransformer",
                "prompts": prompts,
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
        )
        with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as f:
            f.write(_model_card(source, model_type, modules, task, prompts))
    return os.path.abspath(os.fspath(out))


def _write_json(path: str, value: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _write_transformer(
    source: ExportSource, hf_config: dict[str, Any], family: _Family, folder: str
) -> None:
    encoder = source.encoder
    config = dict(hf_config, architectures=[family.architecture], **dict(family.config_updates))
    _write_json(os.path.join(folder, "config.json"), config)
    tensors = backbone_tensors(
        encoder.model.backbone, encoder.params["backbone"], source.base_dir, family.drop
    )
    safetensors.numpy.save_file(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()},
        os.path.join(folder, "model.safetensors"),
        metadata={"format": "pt"},
    )
    _write_json(
        os.path.join(folder, "sentence_bert_config.json"),
        {"max_seq_length": encoder.max_length, "do_lower_case": False},
    )
    vocabulary = encoder.vocabulary
    if isinstance(vocabulary, WordPieceVocabulary):
        # Lower-casing and accent stripping travel in the tokenizer's own files, so
        # sentence-transformers' extra do_lower_case stays off.
        for name in _WORDPIECE_FILES:
            path = os.path.join(source.base_dir, name)
            if os.path.isfile(path):
                shutil.copy(path, os.path.join(folder, name))
    elif isinstance(vocabulary, SentencePieceVocabulary):
        _write_sentencepiece_tokenizer(vocabulary, encoder.max_length, folder)
    else:
        raise ExportError(f"no Hugging Face tokenizer files for {type(vocabulary).__name__}")


def _write_sentencepiece_tokenizer(
    vocabulary: SentencePieceVocabulary, max_length: int, folder: str
) -> None:
    """``spiece.model`` plus a ``T5Tokenizer`` config giving the vocabulary's own ids.

    The SentencePiece model the encoder tokenizes with is written, not a base
    ``tokenizer.json``. ``extra_ids`` is 0 because the encoder's vocabulary has no
    sentinel tokens; ``T5Tokenizer`` would otherwise add ``<extra_id_*>`` tokens that
    split such strings out of the text.
    """
    processor = vocabulary.tokenizer
    ids = {"pad": processor.pad_id(), "eos": processor.eos_id(), "unk": processor.unk_id()}
    if ids != _T5_SPECIAL_IDS:
        raise ExportError(
            f"{vocabulary.sentencepiece_model_file}: special ids {ids} differ from T5's "
            f"{_T5_SPECIAL_IDS}, which the Hugging Face T5 tokenizer assumes"
        )
    with open(os.path.join(folder, "spiece.model"), "wb") as f:
        f.write(vocabulary.sp_model)
    _write_json(
        os.path.join(folder, "tokenizer_config.json"),
        {
            "tokenizer_class": "T5Tokenizer",
            "extra_ids": 0,
            "additional_special_tokens": [],
            **{f"{k}_token": processor.id_to_piece(v) for k, v in ids.items()},
            "model_max_length": max_length,
        },
    )


def _write_head(encoder: Encoder, folder: str) -> list[dict[str, Any]]:
    """Writes pooling, projection and normalisation; returns the ``modules.json`` list."""
    head = encoder.model.head
    width = encoder.model.backbone.hidden_size
    modules = [_module(0, "", "Transformer"), _module(1, "1_Pooling", "Pooling")]
    _write_json(
        os.path.join(folder, "1_Pooling", "config.json"),
        {
            "word_embedding_dimension": width,
            "pooling_mode": head.pooling,
            "include_prompt": True,
            # Legacy flags: older readers (text-embeddings-inference) only know these.
            "pooling_mode_cls_token": head.pooling == "cls",
            "pooling_mode_mean_tokens": head.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
        },
    )
    if head.projection_dim is not None:
        path = f"{len(modules)}_Dense"
        kernel = np.asarray(encoder.params["projection"]["dense"]["kernel"], dtype=np.float32)
        os.makedirs(os.path.join(folder, path))
        _write_json(
            os.path.join(folder, path, "config.json"),
            {
                "in_features": width,
                "out_features": head.projection_dim,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            },
        )
        safetensors.numpy.save_file(
            {"linear.weight": np.ascontiguousarray(kernel.T)},
            os.path.join(folder, path, "model.safetensors"),
            metadata={"format": "pt"},
        )
        modules.append(_module(len(modules), path, "Dense"))
    if head.normalize:
        path = f"{len(modules)}_Normalize"
        _write_json(os.path.join(folder, path, "config.json"), {})
        modules.append(_module(len(modules), path, "Normalize"))
    return modules


def _module(idx: int, path: str, kind: str) -> dict[str, Any]:
    # The short `sentence_transformers.models.*` names load in every release.
    return {
        "idx": idx,
        "name": str(idx),
        "path": path,
        "type": f"sentence_transformers.models.{kind}",
    }


def _model_card(
    source: ExportSource,
    model_type: str,
    modules: list[dict[str, Any]],
    task: str | None,
    prompts: dict[str, str],
) -> str:
    encoder = source.encoder
    head = encoder.model.head
    step = "n/a (pre-trained model)" if source.step is None else str(source.step)
    if prompts:
        prompt_lines = "\n".join(f"- `{k}`: `{v!r}`" for k, v in prompts.items())
        prompt_text = (
            f"Exported for the task `{task!r}`. `encode_query` / `encode_document` prepend:\n\n"
            f"{prompt_lines}\n\n"
            "The document prompt uses the missing-title placeholder: a prompt is a prefix, so "
            "per-document titles cannot be given. `encode` without a prompt embeds texts as "
            "they are (gecko_jax `Encoder.encode(texts)` without a task)."
        )
    else:
        prompt_text = (
            "Exported without a task: no prompts, texts are embedded as they are on both sides "
            "(gecko_jax `Encoder.encode(texts)` without a task)."
        )
    dims = ", ".join(map(str, source.matryoshka_dims)) or "none recorded"
    tokenizer_note = ""
    if isinstance(encoder.vocabulary, SentencePieceVocabulary):
        tokenizer_note = (
            "\n## Tokenizer\n\n`spiece.model` is the SentencePiece model the encoder was trained "
            "with; transformers builds its `T5Tokenizer` from it and gives the same ids, except "
            "for texts containing the literal strings `</s>`, `<pad>` or `<unk>`: Hugging Face "
            "matches them as those tokens, SentencePiece as plain text.\n"
        )
    return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags:
- sentence-transformers
- feature-extraction
- gecko_jax
---

# {os.path.basename(os.path.normpath(source.name_or_path))} (sentence-transformers export)

Exported by gecko_jax `gecko-export sentence_transformers`.

| | |
|---|---|
| source | `{source.name_or_path}` |
| checkpoint | `{source.checkpoint_dir or source.base_dir}` |
| step | {step} |
| pre-trained base | `{source.init_from}` (`model_type={model_type}`) |
| pooling | {head.pooling} |
| projection | {head.projection_dim or "none"} |
| embedding size | {encoder.embedding_dim} |
| Matryoshka sizes | {dims} |
| normalised | {head.normalize} |
| max_seq_length | {encoder.max_length} tokens |
| modules | {" -> ".join(m["type"].rsplit(".", 1)[-1] for m in modules)} |

## Prompts

{prompt_text}
{tokenizer_note}
## Use

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/this/folder")
queries = model.encode_query(["how do vaccines work?"])
documents = model.encode_document(["Vaccines train the immune system ..."])
print(model.similarity(queries, documents))
```

For a Matryoshka size pass `truncate_dim=` to `SentenceTransformer`; the truncated
vectors are not renormalised, so compare them with cosine similarity.
"""
