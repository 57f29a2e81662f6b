"""The U-Net wrapper honours the denoiser contract at any size, and weights round-trip."""

import json

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet  # the reference our U-Net re-states (a dev dependency)

from restore.nets import UNetConfig, UNetDenoiser
from restore.nets.diffusion_unet import DiffusionUNet
from restore.weights import load_model, save_model, shipped_weights

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


def test_spatial_dims_outside_1_to_3_are_refused_and_1d_works():
    with pytest.raises(ValueError, match="spatial_dims"):
        UNetConfig(spatial_dims=4)
    net = UNetDenoiser(UNetConfig(spatial_dims=1, cond_channels=1, **TINY)).eval()
    x = torch.randn(2, 1, 37)
    assert net(x, torch.full((2,), 50), torch.randn(2, 1, 37)).shape == x.shape


@pytest.mark.parametrize("dims,channels,attention,res_blocks,size", [
    (2, (16, 32, 64), (False, False, False), 1, (32, 48)),
    (2, (32, 64, 64), (False, True, True), 2, (16, 16)),
    (3, (16, 32), (True, False), 1, (8, 8, 8)),
])
def test_our_unet_is_monai_diffusion_model_unet(dims, channels, attention, res_blocks, size):
    """Same parameter names (MONAI's state dict loads strictly) and the same outputs."""
    torch.manual_seed(0)
    kwargs = {"channels": channels, "attention_levels": attention, "num_res_blocks": res_blocks,
              "norm_num_groups": 8, "num_head_channels": 16}
    theirs = DiffusionModelUNet(spatial_dims=dims, in_channels=3, out_channels=2, use_flash_attention=True,
                                **kwargs).eval()
    for p in theirs.parameters():  # MONAI zero-initialises some convs: make every weight count
        p.data.normal_(0, 0.1)
    ours = DiffusionUNet(dims, 3, 2, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x, t = torch.randn(2, 3, *size), torch.tensor([3.0, 700.0])
    with torch.no_grad():
        expected = theirs(x, timesteps=t)
        assert expected.abs().mean() > 0.01
        torch.testing.assert_close(ours(x, t), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["audio_denoise", "audio_inpaint", "mri_denoise", "mri_fill"])
def test_shipped_weights_give_monai_outputs(name):
    model = load_model(shipped_weights(name)).model.eval()
    cfg = model.config
    theirs = DiffusionModelUNet(
        spatial_dims=cfg.spatial_dims, in_channels=cfg.data_channels + cfg.cond_channels,
        out_channels=cfg.data_channels, num_res_blocks=cfg.num_res_blocks, channels=cfg.channels,
        attention_levels=cfg.attention_levels, norm_num_groups=cfg.norm_num_groups,
        num_head_channels=cfg.num_head_channels, use_flash_attention=True).eval()
    theirs.load_state_dict(model.net.state_dict(), strict=True)
    torch.manual_seed(1)
    x = torch.randn(1, cfg.data_channels + cfg.cond_channels, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x, torch.tensor([200.0])), theirs(x, timesteps=torch.tensor([200.0])),
                                   rtol=1e-5, atol=1e-6)


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
