"""Meta-RL algorithms: MAML-RL (gradient-based adaptation of a Gaussian policy) and RL^2 (a
recurrent policy that adapts in its hidden state). Both plug into the same chunk contract as the
supervised algorithms; see common.py for rollouts, returns, GAE and the linear baseline."""
from __future__ import annotations

import torch

from meta_dist.algorithms.base import MetaAlgorithm
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.tasks.names import RL_TASKS
from meta_dist.tasks.spec import RL_METRICS, TaskFamily


def build_rl_algorithm(config: Config, family: TaskFamily, device: torch.device | str = "cpu",
                       model=None) -> MetaAlgorithm:
    if family.metric not in RL_METRICS:
        raise UserError(f"algorithm {config.algorithm.name} needs an RL task ({', '.join(RL_TASKS)}); "
                        f"task.name is '{family.name}'")
    if config.algorithm.name == "maml_rl":
        if config.model.name != "policy_mlp":
            raise UserError("algorithm maml_rl adapts a Gaussian MLP policy: set model.name=policy_mlp")
        if config.rl.ppo_epochs > 1:
            raise UserError("rl.ppo_epochs applies to algorithm rl2; MAML-RL's trust-region step is rl.max_kl: "
                            "remove rl.ppo_epochs")
        from meta_dist.algorithms.rl.maml_rl import MAMLRL
        return MAMLRL(config, family, device, model)
    if config.model.name != "policy_gru":
        raise UserError("algorithm rl2 needs a recurrent policy: set model.name=policy_gru")
    if config.rl.max_kl > 0:
        raise UserError("rl.max_kl applies to algorithm maml_rl (its TRPO step); RL^2 takes PPO's epochs with "
                        "rl.ppo_epochs: remove rl.max_kl")
    if config.rl.eval_episodes or config.rl.eval_lr_decay != 1.0:
        raise UserError("rl.eval_episodes and rl.eval_lr_decay set MAML-RL's test-time policy-gradient steps; "
                        "RL^2 adapts without them: remove them")
    from meta_dist.algorithms.rl.rl2 import RL2
    return RL2(config, family, device, model)


__all__ = ["build_rl_algorithm"]
