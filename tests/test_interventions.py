import pytest
import torch
from safetensors.torch import save_file

from probe_models import MLP, TinyCNN
from spurmem.errors import UnreadableFileError
from spurmem.probes.interventions import INTERVENTIONS, activation_means, intervene
from spurmem.probes.units import Unit, WeightSelection

UNITS = [Unit("stages.0.conv", 1), Unit("stages.1.conv", 5), Unit("stages.1.conv", 2)]


def _model(seed=0):
    torch.manual_seed(seed)
    m = TinyCNN(widths=(4, 8)).eval()
    for bn in (m.stages[0].bn, m.stages[1].bn):  # non-trivial BN statistics so BN-untouched is testable
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return m


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _changed(before, after):
    """{key: boolean mask of changed entries} for the tensors that changed."""
    return {k: before[k] != after[k] for k in before if not torch.equal(before[k], after[k])}


def _expected_mask(m, units):
    masks = {k: torch.zeros_like(v, dtype=torch.bool) for k, v in m.state_dict().items()}
    for u in units:
        masks[f"{u.layer}.weight"][u.index] = True
    return masks


@pytest.mark.parametrize("name,kwargs", [("zero", {}), ("reinit", {"sigma": 0.1}), ("noise", {"sigma": 0.1})])
def test_weight_interventions_change_exactly_the_selected_slices_on_a_copy(name, kwargs):
    m = _model()
    before = _state(m)
    expected = _expected_mask(m, UNITS)
    with intervene(m, UNITS, name, seed=3, **kwargs) as edited:
        assert edited is not m
        changed = _changed(before, _state(edited))
        assert set(changed) == {"stages.0.conv.weight", "stages.1.conv.weight"}
        for key, mask in changed.items():
            assert torch.equal(mask, expected[key])  # every selected weight changed, nothing else
        if name == "zero":
            assert edited.stages[1].conv.weight[[5, 2]].abs().sum() == 0
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("name", ["zero", "reinit", "noise"])
def test_inplace_edits_are_restored_exactly(name):
    m = _model()
    before = _state(m)
    x = torch.randn(2, 3, 8, 8)
    out0 = m(x)
    with intervene(m, UNITS, name, sigma=0.5, seed=1, inplace=True) as edited:
        assert edited is m
        assert not torch.equal(m(x), out0)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert torch.equal(m(x), out0)


def test_inplace_restores_after_an_exception():
    m = _model()
    before = _state(m)
    with pytest.raises(RuntimeError):
        with intervene(m, UNITS, "noise", sigma=1.0, inplace=True):
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_bias_is_part_of_a_units_slice():
    m = MLP(d_in=6, hidden=(5, 4))
    with intervene(m, [Unit("body.0", 2)], "zero") as edited:
        assert edited.body[0].bias[2] == 0 and edited.body[0].weight[2].abs().sum() == 0
        assert torch.equal(edited.body[0].bias[[0, 1, 3, 4]], m.body[0].bias[[0, 1, 3, 4]])


def test_reinit_and_noise_follow_their_definition_and_seed():
    m = _model()
    w = m.stages[1].conv.weight.detach().clone()
    g = torch.Generator().manual_seed(7)
    draw = torch.randn(w[[2, 5]].shape, generator=g)  # draws in module order, selected entries in index order
    with intervene(m, [Unit("stages.1.conv", 5), Unit("stages.1.conv", 2)], "reinit", sigma=0.3, seed=7) as e:
        assert torch.allclose(e.stages[1].conv.weight[[2, 5]], 0.3 * draw)
    with intervene(m, [Unit("stages.1.conv", 5), Unit("stages.1.conv", 2)], "noise", sigma=0.3, seed=7) as e:
        assert torch.allclose(e.stages[1].conv.weight[[2, 5]], w[[2, 5]] + 0.3 * draw)


def test_repeats_are_reproducible_from_their_seeds():
    m = _model()
    with intervene(m, UNITS, "reinit", sigma=0.1, seed=11) as a, intervene(m, UNITS, "reinit", sigma=0.1, seed=11) as b:
        assert torch.equal(a.stages[1].conv.weight, b.stages[1].conv.weight)
    with intervene(m, UNITS, "reinit", sigma=0.1, seed=11) as a, intervene(m, UNITS, "reinit", sigma=0.1, seed=12) as b:
        assert not torch.equal(a.stages[1].conv.weight, b.stages[1].conv.weight)


def test_weight_selection_edits_single_weights():
    m = _model()
    mask = torch.zeros_like(m.stages[1].conv.weight, dtype=torch.bool)
    mask[3, 1, 0, 2] = mask[6, 0, 1, 1] = True
    before = _state(m)
    with intervene(m, WeightSelection({"stages.1.conv": mask}), "zero") as e:
        changed = _changed(before, _state(e))
    assert list(changed) == ["stages.1.conv.weight"] and torch.equal(changed["stages.1.conv.weight"], mask)
    with pytest.raises(ValueError):
        with intervene(m, WeightSelection({"stages.1.conv": mask}), "zero-activation"):
            pass


def test_rewind_reads_the_requested_epoch(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    states = {epoch: _model(seed=epoch).state_dict() for epoch in (1, 2, 3)}
    for epoch, sd in states.items():
        save_file({k: v.contiguous() for k, v in sd.items()}, str(ckpt / f"epoch_{epoch:04d}.safetensors"))
    m = _model(seed=99)
    with intervene(m, UNITS, "rewind", source=ckpt / "epoch_0002.safetensors") as e:
        w = e.stages[1].conv.weight
        assert torch.equal(w[[2, 5]], states[2]["stages.1.conv.weight"][[2, 5]])
        assert not torch.equal(w[[2, 5]], states[1]["stages.1.conv.weight"][[2, 5]])
        assert torch.equal(w[[0, 1, 3, 4, 6, 7]], m.stages[1].conv.weight[[0, 1, 3, 4, 6, 7]])
        assert torch.equal(e.stages[1].bn.running_mean, m.stages[1].bn.running_mean)
    with intervene(m, UNITS, "rewind", source=states[3]) as e:  # a state dict works as well
        assert torch.equal(e.stages[0].conv.weight[1], states[3]["stages.0.conv.weight"][1])
    with pytest.raises(UnreadableFileError, match="epoch_0007.safetensors.*no such file"):
        with intervene(m, UNITS, "rewind", source=ckpt / "epoch_0007.safetensors"):
            pass


def _site_output(model, x):
    out = {}
    h = model.stages[1].bn.register_forward_hook(lambda mod, i, o: out.setdefault("bn", o.detach().clone()))
    model(x)
    h.remove()
    return out["bn"]


def test_zero_activation_sets_post_bn_output_and_leaves_weights(shapes):
    m = _model()
    x = torch.randn(4, 3, 8, 8)
    ref = _site_output(m, x)
    before = _state(m)
    with intervene(m, [Unit("stages.1.conv", 5)], "zero-activation") as e:
        assert _changed(before, _state(e)) == {}
        out = _site_output(e, x)
    assert out[:, 5].abs().sum() == 0
    assert torch.equal(out[:, [0, 1, 2, 3, 4, 6, 7]], ref[:, [0, 1, 2, 3, 4, 6, 7]])
    assert torch.equal(_site_output(m, x), ref)  # hooks gone from the caller's model


def test_mean_activation_uses_training_means(shapes):
    m = _model()
    means = activation_means(m, shapes, [Unit("stages.1.conv", 5)])
    assert means["stages.1.conv"].shape == (8,)
    # independent check: the BN output averaged over the whole training split
    from spurmem.data import iterate_batches

    acts = torch.cat([_site_output(m, b.x) for b in iterate_batches(shapes["train"], 64, shapes.mean, shapes.std)])
    assert torch.allclose(means["stages.1.conv"], acts.mean(dim=(0, 2, 3)), atol=1e-5)
    x = torch.randn(2, 3, 12, 12)
    with intervene(m, [Unit("stages.1.conv", 5)], "mean-activation", means=means, inplace=True) as e:
        out = _site_output(e, x)
    assert torch.allclose(out[:, 5], torch.full_like(out[:, 5], float(means["stages.1.conv"][5])))
    assert not torch.equal(_site_output(m, x)[:, 5], out[:, 5])


def test_vit_mean_activation_acts_on_fc1_hidden_axis():
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=8, num_classes=2,
                            depth=1, embed_dim=32, num_heads=2).eval()
    x = torch.randn(2, 3, 16, 16)
    seen = {}
    with intervene(vit, [Unit("blocks.0.mlp.fc1", 3)], "zero-activation") as e:
        e.blocks[0].mlp.act.register_forward_hook(lambda mod, i, o: seen.setdefault("in", i[0].detach()))
        e(x)
    assert seen["in"].shape[-1] == 128 and seen["in"][..., 3].abs().sum() == 0 and seen["in"][..., 4].abs().sum() > 0


def test_missing_arguments_are_clear_errors():
    m = _model()
    with pytest.raises(ValueError, match="sigma"):
        with intervene(m, UNITS, "reinit"):
            pass
    with pytest.raises(ValueError, match="means"):
        with intervene(m, UNITS, "mean-activation"):
            pass
    with pytest.raises(KeyError, match="did you mean 'zero'"):
        with intervene(m, UNITS, "zeros"):
            pass
    assert set(INTERVENTIONS) == {"zero", "reinit", "noise", "rewind", "zero-activation", "mean-activation"}
