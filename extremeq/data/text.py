"""Character-level text: tiny Shakespeare (Karpathy's char-rnn corpus, as in nanoGPT).

    ds = load_text()                              # $EXTREMEQ_SHAKESPEARE or ../shared/data/tinyshakespeare.txt
    ds.vocab_size, ds.decode(ds.train[:20])       # 65, 'First Citizen:\\nBefor'
    x, y = sample_windows(key, ds.train, batch_size=12, block_size=64)   # inside jit
    x, y = eval_windows(ds.val, block_size=64)    # the whole split, non-overlapping windows

The vocabulary is the sorted set of characters in the whole file (65 for tiny Shakespeare); a
token is the character's index. The split is nanoGPT's: the first 90% of the characters train,
the last 10% validate. Training batches are windows at uniformly random offsets (nanoGPT's
``get_batch``): inputs ``tokens[o : o + T]``, targets ``tokens[o + 1 : o + T + 1]``. Validation
covers the whole split once in non-overlapping windows of T inputs (the last partial window is
dropped), so a validation loss is the mean over every predicted character of the split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

_REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_FRACTION = 0.9


def default_shakespeare_path() -> Path:
    """``$EXTREMEQ_SHAKESPEARE`` if set, else ``<repo>/../shared/data/tinyshakespeare.txt``."""
    env = os.environ.get("EXTREMEQ_SHAKESPEARE")
    if env:
        return Path(env)
    return _REPO_ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """A character-level corpus: its vocabulary and int32 token arrays of both splits."""

    name: str
    vocab: str  # the characters, index = token id
    train: np.ndarray
    val: np.ndarray
    sha256: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        index = {ch: i for i, ch in enumerate(self.vocab)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"characters {unknown!r} are not in the {self.name} vocabulary of {self.vocab_size}")
        return np.asarray([index[ch] for ch in text], np.int32)

    def decode(self, tokens) -> str:
        return "".join(self.vocab[int(t)] for t in np.asarray(tokens).reshape(-1))


def load_text(
    path: str | os.PathLike | None = None, *, name: str = "shakespeare_char", train_fraction: float = TRAIN_FRACTION
) -> TextDataset:
    """Read a UTF-8 text file, build the character vocabulary and split it (first 90% train)."""
    path = Path(path) if path is not None else default_shakespeare_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"text file {path} not found; set $EXTREMEQ_SHAKESPEARE (or config.dataset.path) to the "
            "tiny Shakespeare file (1,115,394 characters, as used by char-rnn and nanoGPT)."
        )
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    vocab = "".join(sorted(set(text)))
    lookup = np.zeros(max(map(ord, vocab)) + 1, np.int32)
    lookup[[ord(c) for c in vocab]] = np.arange(len(vocab), dtype=np.int32)
    tokens = lookup[np.frombuffer(text.encode("utf-32-le"), np.uint32)]
    n = int(len(tokens) * train_fraction)
    return TextDataset(name, vocab, tokens[:n], tokens[n:], hashlib.sha256(raw).hexdigest())


def sample_windows(key, tokens, batch_size: int, block_size: int):
    """(x, y) int32 [B, T]: windows at uniform random offsets o in [0, len - T), y shifted by one."""
    offsets = jax.random.randint(key, (batch_size,), 0, tokens.shape[0] - block_size)
    idx = offsets[:, None] + jnp.arange(block_size)[None, :]
    return jnp.take(tokens, idx, axis=0), jnp.take(tokens, idx + 1, axis=0)


def eval_windows(tokens, block_size: int):
    """(x, y) int32 [N, T] with N = (len - 1) // T: every token of the split once, non-overlapping."""
    tokens = np.asarray(tokens)
    n = (len(tokens) - 1) // block_size
    if n < 1:
        raise ValueError(f"a split of {len(tokens)} tokens holds no window of {block_size} + 1 tokens")
    x = tokens[: n * block_size].reshape(n, block_size)
    y = tokens[1 : n * block_size + 1].reshape(n, block_size)
    return x, y
