"""GRPO alignment: rollouts (through ``s2train.inference``), rewards, advantages and the clipped GRPO loss.

``rl/`` holds no decode loop: rollouts call the inference engine and log-probs come from one teacher-forced
``DualAR`` forward. Heavy dependencies (Lightning, eval models) are imported lazily.
"""

from s2train.rl.advantages import group_advantages, group_stats
from s2train.rl.logprobs import PackedCompletions, completion_logprobs, pack_completions
from s2train.rl.loss import PolicyLogProbs, dual_ar_grpo_loss, grpo_loss, k3_kl
from s2train.rl.reward_pool import RewardCache, RewardPool
from s2train.rl.rewards import (
    REWARDS,
    RewardConfigError,
    RewardResult,
    RewardStack,
    intelligibility_reward,
    length_penalty,
    repetition_penalty,
    speaker_sim_reward,
    tag_reward,
)
from s2train.rl.rollout import RolloutBatch, RolloutEngine

__all__ = [
    "REWARDS",
    "PackedCompletions",
    "PolicyLogProbs",
    "RewardCache",
    "RewardConfigError",
    "RewardPool",
    "RewardResult",
    "RewardStack",
    "RolloutBatch",
    "RolloutEngine",
    "completion_logprobs",
    "dual_ar_grpo_loss",
    "group_advantages",
    "group_stats",
    "grpo_loss",
    "intelligibility_reward",
    "k3_kl",
    "length_penalty",
    "pack_completions",
    "repetition_penalty",
    "speaker_sim_reward",
    "tag_reward",
]
