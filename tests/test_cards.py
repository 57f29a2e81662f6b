"""Model cards: a small JSON the code reads (typed, validated) and a Markdown card people read."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from restore.provenance import sha256_of
from restore.weights import SHIPPED, read_settings, shipped_weights

SECTIONS = ("## Intended use", "## Out of scope", "## Training data and held-out split", "## Results",
            "Command:", "## Limitations", "## Licence")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_is_small_json_plus_a_markdown_document(name):
    weights = shipped_weights(name)
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["name"] == name and card["version"] and card["card"] == f"{name}.md"
    assert card["weights_sha256"] == sha256_of(weights)
    assert len(weights.with_suffix(".json").read_bytes()) < 4000  # history lives in bench/results/model_history/
    assert not {"notes", "tried_and_dropped", "not_shipped", "calibration", "benchmark"} & set(card)
    assert "runs/" not in json.dumps(card)
    text = weights.with_suffix(".md").read_text()
    assert text.startswith(f"# {name} {card['version']}")
    assert [s for s in SECTIONS if s not in text] == []
    assert "| restore" in text or "restore |" in text  # the table against baselines


@dataclass(frozen=True, kw_only=True)
class _Settings:
    steps: int
    bf16: bool = False
    scale: float = 1.0


def test_inference_settings_are_typed_and_validated():
    assert read_settings(_Settings, {"steps": 2, "scale": 3}, "m") == _Settings(steps=2, scale=3.0)
    for raw, error in [({"steps": 2, "scael": 1.0}, "unknown inference settings \\['scael'\\]"),
                       ({"scale": 1.0}, "steps is missing"), ({"steps": 1.5}, "steps must be int"),
                       ({"steps": True}, "steps must be int"), ({"steps": 1, "bf16": 1}, "bf16 must be bool"),
                       ({"steps": 1, "scale": "2"}, "scale must be float")]:
        with pytest.raises(ValueError, match=error):
            read_settings(_Settings, raw, "m")


def test_audio_card_with_another_front_end_is_refused(tmp_path):
    from restore.audio.denoise import load_audio_model
    from restore.nets import UNetConfig, UNetDenoiser
    from restore.weights import save_model

    cfg = UNetConfig(data_channels=2, cond_channels=2, channels=(8, 8), attention_levels=(False, False),
                     norm_num_groups=4, num_head_channels=8)
    path = tmp_path / "m.safetensors"
    save_model(UNetDenoiser(cfg), path, {"name": "audio_denoise", "version": "t", "inference": {"hop": 128}})
    with pytest.raises(ValueError, match="STFT front end"):
        load_audio_model(path)
