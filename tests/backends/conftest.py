"""Fixtures of the backend tests: tiny checkpoints in the real formats, written once per session."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from dmpo.backends.tiny import write_tiny_dream, write_tiny_llada


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llada(tmp_path_factory) -> Path:
    """A random LLaDA checkpoint in the ORIGINAL layout, 2 safetensors shards + index."""
    return write_tiny_llada(tmp_path_factory.mktemp("ckpt") / "llada", seed=0)


@pytest.fixture(scope="session")
def llada_absolute(tmp_path_factory) -> Path:
    """A random LLaDA checkpoint with ``rope: false``: learned absolute positions (``wpe``, 32 rows)."""
    return write_tiny_llada(tmp_path_factory.mktemp("ckpt") / "llada-abs", seed=3, rope=False, max_sequence_length=32,
                            init_std=0.2)


@pytest.fixture(scope="session")
def tiny_llada_converted(tmp_path_factory) -> Path:
    """The same weights as ``tiny_llada`` (same seed) in the Llama layout."""
    return write_tiny_llada(tmp_path_factory.mktemp("ckpt") / "llada-llama", seed=0, fmt="converted")


@pytest.fixture(scope="session")
def tiny_dream(tmp_path_factory) -> Path:
    """A random Dream checkpoint (Qwen2 tensors, q/k/v biases, 4 heads over 2 kv heads)."""
    return write_tiny_dream(tmp_path_factory.mktemp("ckpt") / "dream", seed=0)


@pytest.fixture
def digest():
    """``digest(folder)``: a hash of a folder's file names and bytes."""
    return folder_digest


def folder_digest(folder: Path) -> str:
    """Hash of every file's relative path and bytes (to prove loading writes nothing)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()
