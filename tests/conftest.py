"""Shared test setup: the tests folder on sys.path (helper modules), and shared fixtures."""

import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests with one torch thread (small tensors: threads only add overhead and noise)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
