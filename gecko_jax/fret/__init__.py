"""FRet: the LLM distillation pipeline.

Gecko's two-step recipe (paper section 3) that turns a web corpus into training rows
``(task, query, positive, negative)`` with the help of an LLM.

Layout:

  llm/          LLM clients behind one async interface (Vertex AI Gemini, OpenAI-compatible
                servers such as vLLM, llama.cpp, Ollama) with retries, rate limits, cost
                accounting and an on-disk call cache; Vertex batch prediction jobs; a
                deterministic loopback server for tests and dry runs
  prompts/      the prompt templates (generation, query likelihood, relevance)
  templates.py  loading and filling the templates
  config.py     the run's settings (gin-configurable dataclasses)
  corpus.py     reading the passage corpus
  generate.py   step 1: a task and a query for each seed passage
  retrieve.py   step 2a: nearest neighbours of ``task + query`` among the passages
  rank.py       step 2b: query likelihood and relevance classification, fused by
                reciprocal rank; the positive and the hard negative
  output.py     the rows, as JSONL or TFRecord
  shards.py, summary.py, pipeline.py, aio.py
                shards and resumable runs, statistics, the driver, asyncio helpers
  embedding_cache.py
                corpus embeddings reused on a rerun
  labelled.py, labelled_data.py, negatives.py, labelled_summary.py
                step 2 for labelled sets (``gecko-fret mine``): candidates for queries with
                known relevant documents, labelled positives, filtered hard negatives
  cli.py        the ``gecko-fret`` command
"""
