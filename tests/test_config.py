"""Facts written once in conf/ and used by code: each pair that must agree is checked here."""

import pytest
from omegaconf import OmegaConf

from pcsr_lightning.config import backbone_names, compose_config, model_config
from pcsr_lightning.evaluation.paper_table import BACKBONE_ROW, ROWS
from pcsr_lightning.io.checkpoint import build_model
from pcsr_lightning.models import KINDS, model_kind


@pytest.mark.parametrize("kind", KINDS)
def test_model_group_kind_names_what_it_builds(kind):
    cfg = compose_config(["backbone=fsrcnn", f"model={kind}"])
    assert cfg.model.kind == kind
    assert model_kind(build_model(OmegaConf.to_container(cfg.model.net, resolve=True))) == kind


def test_every_configured_backbone_has_its_table_rows():
    assert sorted(BACKBONE_ROW) == backbone_names()
    assert set(ROWS) == {row + suffix for row in BACKBONE_ROW.values() for suffix in ("", "-PCSR")}


def test_model_config_refuses_an_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'edsr'.*carn"):
        model_config("edsr")
