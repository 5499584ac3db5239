"""The YAML configs ship inside the package (an installed wheel has them) and the repo's configs/ mirrors them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from spurmem.config import ConfigError, find_config, load_config, packaged_configs

ROOT = Path(__file__).resolve().parents[1]


def test_repo_configs_are_the_packaged_ones():
    repo = {p.stem: p.read_text() for p in (ROOT / "configs").glob("*.yaml")}
    shipped = {name: p.read_text() for name, p in packaged_configs().items()}
    assert repo and repo == shipped, "configs/ must be the symlink to src/spurmem/configs/ (the packaged ones)"


def test_a_shipped_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from spurmem.train import TrainConfig

    monkeypatch.chdir(tmp_path)  # no configs/ here
    for spelling in ("erm_fashion_waterbirds", "erm_fashion_waterbirds.yaml", "configs/erm_fashion_waterbirds.yaml"):
        assert find_config(spelling) == packaged_configs()["erm_fashion_waterbirds"]
    assert load_config(TrainConfig, "configs/erm_fashion_waterbirds.yaml").dataset == "fashion-waterbirds"
    with pytest.raises(ConfigError, match="erm_fashion_waterbirds"):  # the error lists the shipped ones
        find_config("configs/nope.yaml")


def test_the_wheel_holds_the_configs(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "whl"), str(tmp_path)], check=True, capture_output=True, timeout=180)
    (wheel,) = (tmp_path / "whl").glob("spurmem-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"spurmem/configs/{n}.yaml" for n in packaged_configs()} <= names
