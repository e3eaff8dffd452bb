"""A titled passage corpus from the text installed with Python itself.

Sources, in a fixed order so the corpus is the same on every run of one Python:
the language reference's topics (``pydoc_data.topics.topics``, what ``help('for')``
shows) and the docstrings of standard-library modules and their public functions and
classes. Each text is split into passages of about 100 to 200 words at paragraph
boundaries; a document's passages share its title. The held-out split is chosen by a
hash of the title, so every passage of a document lands on the same side.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence

from gecko_jax import fileio

# Standard-library modules whose import has no side effect (no window, no output).
STDLIB_MODULES = (
    "abc argparse array ast asyncio base64 bisect bz2 calendar cmath codecs collections "
    "concurrent.futures configparser contextlib copy csv dataclasses datetime decimal "
    "difflib dis doctest email.message enum filecmp fileinput fnmatch fractions ftplib "
    "functools gc getpass gettext glob graphlib gzip hashlib heapq hmac html html.parser "
    "http.client http.server imaplib inspect io ipaddress itertools json keyword linecache "
    "locale logging lzma mailbox math mimetypes multiprocessing numbers operator os "
    "os.path pathlib pickle pkgutil platform plistlib poplib pprint queue random re sched "
    "secrets select selectors shelve shlex shutil signal smtplib socket socketserver "
    "sqlite3 ssl stat statistics string struct subprocess sysconfig tarfile tempfile "
    "textwrap threading timeit tokenize trace traceback types typing unicodedata unittest "
    "urllib.parse urllib.request uuid warnings wave weakref xml.dom.minidom "
    "xml.etree.ElementTree zipfile zlib zoneinfo"
).split()
MIN_WORDS = 40
TARGET_WORDS = 100
MAX_WORDS = 200
HELD_OUT_PERCENT = 12


@dataclasses.dataclass(frozen=True)
class Passage:
    """One passage of a titled document."""

    id: str
    title: str
    text: str


@dataclasses.dataclass(frozen=True)
class Document:
    """A titled text before it is split into passages."""

    title: str
    text: str


def topic_documents() -> list[Document]:
    """The language reference's topics, as ``help()`` shows them."""
    from pydoc_data.topics import topics

    return [
        Document(f"Python language reference: {name.replace('-', ' ')}", text)
        for name, text in sorted(topics.items())
    ]


def _public_members(module: object) -> Iterator[tuple[str, object]]:
    name = module.__name__  # type: ignore[attr-defined]
    for attribute, value in sorted(vars(module).items()):
        defined_here = getattr(value, "__module__", None) == name
        if attribute.startswith("_") or not defined_here:
            continue
        if inspect.isfunction(value) or inspect.isclass(value):
            yield attribute, value


def docstring_documents(modules: Sequence[str] = STDLIB_MODULES) -> list[Document]:
    """Docstrings of ``modules`` and of the public functions and classes defined there.

    A module this Python lacks (e.g. built without ``sqlite3``) is left out.
    """
    documents = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        text = inspect.getdoc(module)
        if text:
            documents.append(Document(f"Python module {name}", text))
        for attribute, value in _public_members(module):
            text = inspect.getdoc(value)
            if text:
                documents.append(Document(f"{name}.{attribute}", text))
    return documents


def _pieces(text: str) -> Iterator[list[str]]:
    """Paragraphs as word lists; a paragraph over ``MAX_WORDS`` in pieces of ``TARGET_WORDS``."""
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        for start in range(0, len(words), MAX_WORDS if len(words) <= MAX_WORDS else TARGET_WORDS):
            piece = words[start : start + (MAX_WORDS if len(words) <= MAX_WORDS else TARGET_WORDS)]
            if piece:
                yield piece


def split_text(text: str) -> list[str]:
    """Splits ``text`` into passages of about ``TARGET_WORDS`` to ``MAX_WORDS`` words.

    Paragraphs are packed whole while a passage is under ``TARGET_WORDS`` words and stays
    within ``MAX_WORDS``; a short tail joins the passage before it; passages under
    ``MIN_WORDS`` words are dropped.
    """
    passages: list[list[str]] = []
    current: list[str] = []
    for piece in _pieces(text):
        if current and (len(current) >= TARGET_WORDS or len(current) + len(piece) > MAX_WORDS):
            passages.append(current)
            current = []
        current = current + piece
    if current:
        if passages and len(current) < TARGET_WORDS // 2:
            passages[-1] = passages[-1] + current
        else:
            passages.append(current)
    return [" ".join(words) for words in passages if len(words) >= MIN_WORDS]


def is_held_out(title: str) -> bool:
    """Whether a document belongs to the held-out split (a hash of its title)."""
    return zlib.crc32(title.encode("utf-8")) % 100 < HELD_OUT_PERCENT


def passages_of(documents: Iterable[Document], max_passages: int | None = None) -> list[Passage]:
    """The documents' passages, ids ``p0``, ``p1``, ... (at most ``max_passages``)."""
    passages = []
    for document in documents:
        for text in split_text(document.text):
            passages.append(Passage(f"p{len(passages)}", document.title, text))
            if max_passages is not None and len(passages) >= max_passages:
                return passages
    return passages


def interleave(*sources: Sequence[Document]) -> list[Document]:
    """The documents of the sources taken in turn, so a prefix samples every source."""
    mixed = []
    for position in range(max(len(s) for s in sources)):
        mixed.extend(s[position] for s in sources if position < len(s))
    return mixed


def build_corpus(
    max_train: int | None = None, max_held_out: int | None = None
) -> tuple[list[Passage], list[Passage]]:
    """The training and held-out passages of the Python documentation corpus (the first
    ``max_train`` and ``max_held_out`` of each, None: all)."""
    passages = passages_of(interleave(topic_documents(), docstring_documents()))
    train = [p for p in passages if not is_held_out(p.title)]
    held_out = [p for p in passages if is_held_out(p.title)]
    return train[:max_train], held_out[:max_held_out]


def write_corpus(passages: Sequence[Passage], path: str) -> None:
    """Writes a BEIR-style ``corpus.jsonl`` (``_id``, ``title``, ``text``) atomically."""
    with fileio.atomic_open(path) as f:
        for p in passages:
            f.write(json.dumps({"_id": p.id, "title": p.title, "text": p.text}) + "\n")


def write_title_pairs(passages: Sequence[Passage], path: str) -> None:
    """Writes pre-finetuning pairs (``query``: the title, ``positive``: the passage)."""
    with fileio.atomic_open(path) as f:
        for p in passages:
            f.write(json.dumps({"query": p.title, "positive": p.text}) + "\n")


def read_corpus(path: str) -> list[Passage]:
    """Reads a corpus written by :func:`write_corpus`."""
    with fileio.open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [Passage(r["_id"], r["title"], r["text"]) for r in records]
