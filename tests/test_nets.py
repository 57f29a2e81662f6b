"""The U-Net wrapper honours the denoiser contract at any size, and weights round-trip."""

import json

import pytest
import torch

from restore.nets import UNetConfig, UNetDenoiser
from restore.weights import load_model, save_model

TINY = {"channels": (16, 16), "attention_levels": (False, False), "norm_num_groups": 8, "num_head_channels": 8}


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 1, 13, 22)), (3, (1, 1, 7, 9, 6))])
def test_odd_sizes_are_padded_and_cropped(spatial_dims, shape):
    torch.manual_seed(0)
    net = UNetDenoiser(UNetConfig(spatial_dims=spatial_dims, cond_channels=2, **TINY)).eval()
    x = torch.randn(shape)
    cond = torch.randn(shape[0], 2, *shape[2:])
    out = net(x, torch.full((shape[0],), 10), cond)
    assert out.shape == x.shape


def test_edm_preconditioning_is_identity_at_step_zero():
    net = UNetDenoiser(UNetConfig(cond_channels=1, **TINY)).eval()
    x = torch.randn(1, 1, 8, 8)
    out = net(x, torch.zeros(1, dtype=torch.long), torch.zeros_like(x))
    torch.testing.assert_close(out, x)  # sigma = 0: c_skip = 1, c_out = 0


def test_wrong_condition_channels_is_a_clear_error():
    net = UNetDenoiser(UNetConfig(cond_channels=2, **TINY))
    with pytest.raises(ValueError, match="condition channels"):
        net(torch.randn(1, 1, 8, 8), torch.ones(1), torch.randn(1, 1, 8, 8))


def test_one_d_is_refused():
    with pytest.raises(ValueError, match="spatial_dims"):
        UNetConfig(spatial_dims=1)


def test_weights_round_trip_and_shape_check(tmp_path):
    torch.manual_seed(0)
    net = UNetDenoiser(UNetConfig(cond_channels=3, **TINY)).eval()
    path = tmp_path / "m.safetensors"
    save_model(net, path, {"version": "t1", "training": {"steps": 0}})
    loaded = load_model(path)
    x, c = torch.randn(1, 1, 8, 8), torch.randn(1, 3, 8, 8)
    t = torch.tensor([50])
    torch.testing.assert_close(loaded.model(x, t, c), net(x, t, c))
    assert loaded.version == "t1"
    card = json.loads(path.with_suffix(".json").read_text())
    for change, error in [({"cond_channels": 2}, "has shape"), ({"channels": [16, 32]}, "does not match")]:
        path.with_suffix(".json").write_text(json.dumps({**card, "config": {**card["config"], **change}}))
        with pytest.raises(ValueError, match=error):
            load_model(path)
    assert not list(tmp_path.glob("*.tmp"))


def test_outputs_get_normal_permissions(tmp_path):
    import os

    from restore.outputs import atomic_write

    atomic_write(tmp_path / "x.txt", lambda tmp: tmp.write_text("hi"))
    mode = os.stat(tmp_path / "x.txt").st_mode & 0o777
    assert mode == 0o666 & ~_current_umask()


def _current_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
