import math

import pytest
import torch

from s2train.rl.advantages import group_advantages
from s2train.rl.loss import PolicyLogProbs, dual_ar_grpo_loss, grpo_loss, k3_kl


def test_k3_kl_hand_values():
    new = torch.tensor([math.log(0.5), math.log(0.2), 0.0])
    ref = torch.tensor([math.log(0.25), math.log(0.2), math.log(0.5)])
    # r = log(0.5), 0, log(0.5): exp(r) - r - 1
    expected = torch.tensor([0.5 - math.log(0.5) - 1, 0.0, 0.5 - math.log(0.5) - 1])
    assert torch.allclose(k3_kl(new, ref), expected, atol=1e-6)
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_k3_kl_estimates_true_kl_by_sampling():
    torch.manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    x = torch.multinomial(p, 200_000, replacement=True)
    est = k3_kl(p.log()[x], q.log()[x]).mean()
    true = (p * (p / q).log()).sum()
    assert float(est) == pytest.approx(float(true), rel=0.03)


class ToyPolicy(torch.nn.Module):
    def __init__(self, vocab=4):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(vocab))

    def logp(self, actions):
        return torch.log_softmax(self.logits, -1)[actions]


def test_gradient_pushes_up_the_better_sample():
    policy = ToyPolicy()
    actions = torch.tensor([[0, 0], [1, 1]])  # two samples of one group, two tokens each
    rewards = torch.tensor([1.0, 0.0])
    adv = group_advantages(rewards, 2)
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    before = policy.logp(torch.tensor([0, 1])).detach()
    for agg in ("token", "sequence", "constant"):
        loss, _ = grpo_loss(policy.logp(actions), None, None, adv, torch.ones(2, 2), aggregation=agg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = policy.logp(torch.tensor([0, 1])).detach()
    assert after[0] > before[0] + 0.1 and after[1] < before[1] - 0.1


def test_on_policy_loss_value_and_aggregations():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.25, 0.25, 0.0 + 1]]))
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.tensor([1.0, -2.0])
    # on-policy: ratio = 1, per-token loss = -A
    tok, _ = grpo_loss(logp, None, None, adv, mask, aggregation="token")
    assert float(tok) == pytest.approx((-1 * 3 + 2 * 1) / 4)
    seq, _ = grpo_loss(logp, None, None, adv, mask, aggregation="sequence")
    assert float(seq) == pytest.approx((-1 + 2) / 2)
    const, _ = grpo_loss(logp, None, None, adv, mask, aggregation="constant", max_tokens=10)
    assert float(const) == pytest.approx((-3 + 2) / (2 * 10))
    const_default, _ = grpo_loss(logp, None, None, adv, mask, aggregation="constant")
    assert float(const_default) == pytest.approx((-3 + 2) / (2 * 3))


def test_sequence_aggregation_weights_short_sequences_more():
    # One long positive and one short negative sample: gradient per token differs by aggregation.
    p = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    adv = torch.tensor([1.0, -1.0])
    loss, _ = grpo_loss(p, None, None, adv, mask, aggregation="sequence")
    loss.backward()
    assert torch.allclose(p.grad[0], torch.full((4,), -1 / 8))
    assert float(p.grad[1, 0]) == pytest.approx(1 / 2)
    assert torch.all(p.grad[1, 1:] == 0)


def test_clipping_stats_and_gradient():
    old = torch.zeros(1, 4)
    # ratios e^{0.5}=1.65 (clipped for A>0), e^{-0.5}=0.61, 1.1, 1.0
    new = torch.tensor([[0.5, -0.5, math.log(1.1), 0.0]], requires_grad=True)
    loss, st = grpo_loss(new, old, None, torch.tensor([1.0]), torch.ones(1, 4), clip_eps=0.2)
    assert float(st["clip_frac"]) == pytest.approx(0.25)
    loss.backward()
    assert float(new.grad[0, 0]) == 0.0  # clipped: no gradient
    assert float(new.grad[0, 1]) != 0.0  # ratio below 1-eps with A>0 is not clipped (pessimistic bound)
    _, st_neg = grpo_loss(new.detach(), old, None, torch.tensor([-1.0]), torch.ones(1, 4), clip_eps=0.2)
    assert float(st_neg["clip_frac"]) == pytest.approx(0.25)


def test_kl_term_and_stats():
    new = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_(True)
    ref = torch.log(torch.tensor([[0.25, 0.5]]))
    kl0 = 0.5 - math.log(0.5) - 1
    loss, st = grpo_loss(new, None, ref, torch.tensor([0.0]), torch.ones(1, 2), beta=0.1)
    assert float(st["kl"]) == pytest.approx(kl0 / 2, abs=1e-6)
    assert float(loss.detach()) == pytest.approx(0.1 * kl0 / 2, abs=1e-6)
    # beta = 0 still reports the KL when a reference is given, but it adds nothing to the loss
    loss0, st0 = grpo_loss(new, None, ref, torch.tensor([0.0]), torch.ones(1, 2), beta=0.0)
    assert float(loss0.detach()) == 0.0 and float(st0["kl"]) == pytest.approx(kl0 / 2, abs=1e-6)
    with pytest.raises(ValueError, match="logp_ref"):
        grpo_loss(new, None, None, torch.tensor([0.0]), torch.ones(1, 2), beta=0.1)


def test_bad_shapes_and_names():
    with pytest.raises(ValueError, match="aggregation"):
        grpo_loss(torch.zeros(2, 3), None, None, torch.zeros(2), torch.ones(2, 3), aggregation="mean")
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(torch.zeros(2, 3), None, None, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask shape"):
        grpo_loss(torch.zeros(2, 3), None, None, torch.zeros(2), torch.ones(2, 4))


def test_dual_ar_loss_is_slow_plus_gamma_fast():
    torch.manual_seed(0)
    slow = torch.randn(4, 5)
    fast = torch.randn(4, 5, 3)
    sm = torch.rand(4, 5) > 0.3
    fm = sm.unsqueeze(-1).expand(4, 5, 3)
    adv = torch.randn(4)
    new = PolicyLogProbs(slow, sm, fast, fm)
    loss, st = dual_ar_grpo_loss(new, None, None, adv, gamma_fast=0.5)
    ls, _ = grpo_loss(slow, None, None, adv, sm)
    lf, _ = grpo_loss(fast, None, None, adv, fm)
    assert float(loss) == pytest.approx(float(ls + 0.5 * lf), abs=1e-6)
    assert float(st["num_tokens_fast"]) == 3 * float(st["num_tokens_slow"])
    loss_s, _ = dual_ar_grpo_loss(new, None, None, adv, gamma_fast=0.0)
    assert float(loss_s) == pytest.approx(float(ls), abs=1e-6)


def test_row_chunks_weighted_by_share_reproduce_sequence_and_constant_losses():
    """The GRPO module's micro-batching: sum_chunks loss_chunk * rows/N == full-batch loss."""
    torch.manual_seed(1)
    logp = torch.randn(6, 5)
    mask = torch.rand(6, 5) > 0.4
    mask[:, 0] = True
    adv = torch.randn(6)
    for agg in ("sequence", "constant"):
        full, _ = grpo_loss(logp, None, None, adv, mask, aggregation=agg, max_tokens=5)
        parts = sum(
            grpo_loss(
                logp[i : i + 2], None, None, adv[i : i + 2], mask[i : i + 2], aggregation=agg, max_tokens=5
            )[0]
            * (2 / 6)
            for i in range(0, 6, 2)
        )
        assert float(parts) == pytest.approx(float(full), abs=1e-6)
