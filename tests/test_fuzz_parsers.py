"""Property-based fuzzing of the parsers of untrusted text: the metadata CSV, the CelebA lists and the
config loader. Any input gives a valid object or one of our own errors, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spurmem.config import load_config
from spurmem.data.metadata_csv import _splits
from spurmem.data.schema import DataError
from spurmem.data.tables import read_csv, read_whitespace
from spurmem.errors import SpurmemError
from spurmem.train.config import TrainConfig

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text made mostly of the characters that matter to each format, plus arbitrary bytes now and then.
CSV_TEXT = st.text(alphabet=st.sampled_from(list("pathysplit,a01-2\n\r\"' \t\ufeffxé")), max_size=200)
WS_TEXT = st.text(alphabet=st.sampled_from(list("0123456789-1 \t\nBlond_Hair Male image_id .jpg\ufeff")), max_size=200)
RAW = st.binary(max_size=200)
YAML_TEXT = st.text(alphabet=st.sampled_from(list("epochs:lr[]{}-, \n\t'\"!&*#%@`|>?=12.5e_abcmodel_params")),
                    max_size=160)


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


@FUZZ
@given(content=st.one_of(CSV_TEXT, RAW))
def test_metadata_csv_parser_gives_a_table_or_a_data_error(tmp_path, content):
    path = tmp_path / "metadata.csv"
    path.write_bytes(_as_bytes(content))
    try:
        table = read_csv(path, ["path", "y", "a", "split"], "metadata CSV")
        table.strings("path")
        table.ints("y")
        table.ints("a", (0, 1))
        _splits(table)
    except DataError:
        return
    assert len(table) > 0


@FUZZ
@given(content=st.one_of(WS_TEXT, RAW), count_line=st.booleans())
def test_celeba_list_parsers_give_a_table_or_a_data_error(tmp_path, content, count_line):
    path = tmp_path / "list.txt"
    path.write_bytes(_as_bytes(content))
    try:
        attrs = read_whitespace(path, None, count_line=count_line, what="CelebA attribute list")
        for name in attrs.columns[1:]:
            attrs.ints(name, (-1, 1))
    except DataError:
        pass
    try:
        parts = read_whitespace(path, ["image_id", "partition"], what="CelebA partition list")
        parts.ints("partition", (0, 1, 2))
    except DataError:
        return
    assert len(parts) > 0


@FUZZ
@given(content=st.one_of(YAML_TEXT, RAW))
def test_config_loader_gives_a_config_or_our_error(tmp_path, content):
    path = tmp_path / "config.yaml"
    path.write_bytes(_as_bytes(content))
    try:
        config = load_config(TrainConfig, path)
    except SpurmemError:
        return
    assert isinstance(config, TrainConfig)


@FUZZ
@given(overrides=st.lists(st.text(alphabet=st.sampled_from(list("epochs.lr=[]{}:,!1a_ \n'")), max_size=20),
                          max_size=4))
def test_config_overrides_give_a_config_or_a_config_error(overrides):
    try:
        config = load_config(TrainConfig, None, overrides)
    except SpurmemError:
        return
    assert isinstance(config, TrainConfig)


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['true']", "!!python/name:os.system", "&a [*a]",
                                 "[" * 3000 + "]" * 3000])
def test_yaml_tags_anchors_and_deep_nesting_never_escape_as_other_exceptions(tmp_path, tag):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: {tag}\n")
    with pytest.raises(SpurmemError):
        load_config(TrainConfig, path)
