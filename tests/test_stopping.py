"""upd_core.stopping: stop labels and the replayed plateau scheduler."""
import pytest
import torch

from upd_core.stopping import plateau_lr, plateau_reductions


@pytest.mark.parametrize("patience", [0, 1, 3])
def test_plateau_reductions_match_torch_reduce_lr_on_plateau(patience):
    g = torch.Generator().manual_seed(patience)
    losses = (1.0 + 0.2 * torch.rand(40, generator=g)).tolist()  # noisy: many non-improving epochs
    losses[10:14] = [0.5, 0.5, 0.50001, 0.49]  # one clear improvement, then below the 1e-4 threshold
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=patience)
    for i, v in enumerate(losses):
        sched.step(v)
        cuts = plateau_reductions(losses[: i + 1], patience)
        assert opt.param_groups[0]["lr"] == plateau_lr(1.0, 0.5, cuts), i
    assert plateau_reductions(losses, patience) > 0


def test_no_cut_while_the_loss_keeps_improving():
    assert plateau_reductions([1.0 / (k + 1) for k in range(100)], 10) == 0
