"""`unlearnlib.colab.use_drive`: the opt-in Drive cache, with a fake `google.colab` standing in for Colab."""
import os
import sys
import types

import pytest

from unlearnlib import colab, config

ENVS = (config.CACHE_ENV, config.RESULTS_ENV, config.FORGET_SETS_ENV)


@pytest.fixture
def restore_env(monkeypatch):
    """use_drive sets os.environ directly; re-set each variable through monkeypatch so that it is restored."""
    for env in ENVS:
        if env in os.environ:
            monkeypatch.setenv(env, os.environ[env])
        else:
            monkeypatch.delenv(env, raising=False)
    return {env: os.environ.get(env) for env in ENVS}


@pytest.fixture
def fake_colab(monkeypatch):
    """A `google.colab` module whose `drive.mount` records its calls and creates the mount point's MyDrive."""
    calls = []

    def mount(path, **kwargs):
        calls.append(path)
        os.makedirs(os.path.join(path, "MyDrive"), exist_ok=True)

    google = types.ModuleType("google")
    google_colab = types.ModuleType("google.colab")
    google_colab.drive = types.SimpleNamespace(mount=mount)
    google.colab = google_colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    return calls


def test_in_colab_the_library_folders_move_to_drive_and_exist(tmp_path, fake_colab, restore_env):
    mount = tmp_path / "drive"
    root = colab.use_drive(True, "book-cache", mount_point=mount)
    assert fake_colab == [str(mount)], "Drive is mounted once, at the mount point"
    assert root == mount / "MyDrive" / "book-cache"
    assert config.cache_root() == root / "checkpoints"
    assert config.results_root() == root / "results"
    assert config.forget_sets_root() == root / "forget_sets"
    assert all(p.is_dir() for p in (config.cache_root(), config.results_root(), config.forget_sets_root()))


def test_the_cache_moves_for_code_imported_before_use_drive(tmp_path, fake_colab, restore_env):
    """The training module was imported long before (by conftest); its cache still moves to Drive, because the
    path functions read the environment when they are called."""
    from torch import nn

    from unlearnlib.training import cached_model

    root = colab.use_drive(True, mount_point=tmp_path / "drive")
    cached_model({"probe": 1}, lambda: nn.Linear(2, 2), label="probe")
    assert len(list((root / "checkpoints").glob("probe-*.pt"))) == 1


def test_disabled_does_nothing(tmp_path, fake_colab, restore_env):
    assert colab.use_drive(False, mount_point=tmp_path / "drive") is None
    assert fake_colab == [], "Drive is not mounted"
    assert {env: os.environ.get(env) for env in ENVS} == restore_env
    assert not (tmp_path / "drive").exists()


def test_outside_colab_it_warns_and_leaves_the_local_folders(tmp_path, monkeypatch, restore_env):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import google.colab raises ImportError
    assert not colab.in_colab()
    with pytest.warns(UserWarning, match="only works in Google Colab"):
        assert colab.use_drive(True, mount_point=tmp_path / "drive") is None
    assert {env: os.environ.get(env) for env in ENVS} == restore_env
    assert not (tmp_path / "drive").exists()
