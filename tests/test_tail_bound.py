"""clipbook.repro.tail_bound: a CNN's head times LipSDP on its fully connected tail, sound and below the product."""
import pytest
import torch
from torch import nn

from clipbook.core.bounds import layerwise_upper_bound
from clipbook.core.lipschitz import jacobian_norm_lower_bound
from clipbook.repro.tail_bound import head_tail_bound, split_at_flatten


def small_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 5))


@pytest.mark.parametrize("seed", [0, 1])
def test_head_times_lipsdp_tail_is_sound_and_at_most_the_product(seed):
    net = small_cnn(seed)
    b = head_tail_bound(net, (1, 8, 8), steps=200)
    assert b["verified"]
    assert b["product"] == pytest.approx(layerwise_upper_bound(net, (1, 8, 8)))
    assert b["tail_lipsdp"] <= b["tail_product"] and b["head_times_tail_lipsdp"] <= b["product"]
    x = torch.randn(256, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    assert jacobian_norm_lower_bound(net, x).max().item() <= b["head_times_tail_lipsdp"]  # never below a lower bound
    assert b["tail_lmi_size"] == 64 + 32 and b["tail_solved_lmi_size"] == 32 + 32  # rank(W_0) = 32


def test_a_network_without_one_flatten_is_refused():
    with pytest.raises(ValueError, match="one Flatten"):
        split_at_flatten(nn.Sequential(nn.Linear(3, 3)))
