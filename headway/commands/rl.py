"""`headway rl train`: online RL in the simulator with a reward from any source."""

from __future__ import annotations

import argparse
from pathlib import Path

from headway.commands import config_flags, config_from_args, integers_argument, lazy_flags


def _rl_train(args: argparse.Namespace) -> int:
    from headway.policy.rl_train import RLConfig, train_rl
    from headway.policy.sac import SACConfig

    config = config_from_args(RLConfig, args, sac=config_from_args(SACConfig, args))
    summary = train_rl(config, resume=args.resume)
    print(
        f"{summary['task']} {summary['reward']} + {summary['shaping']}: {summary['steps']} env steps, "
        f"{summary['episodes']} episodes, final success {summary['final_success_rate']:.2f} on {config.eval_episodes} "
        f"held-out seeds (area under the success curve {summary['success_auc']:.2f}), {summary['seconds']:.0f} s"
    )
    print(f"policy: {summary['policy']}  learning curve: {summary['learning_curve']}")
    return 0


def _rl_finetune(args: argparse.Namespace) -> int:
    from headway.policy.rl_algo import AgentConfig
    from headway.policy.rl_awr import AWRConfig
    from headway.policy.rl_runner import OnlineRLConfig, run_online_rl

    config = config_from_args(OnlineRLConfig, args, agent=config_from_args(AgentConfig, args, "agent"), awr=config_from_args(AWRConfig, args, "awr"))
    summary = run_online_rl(config, resume=args.resume)
    print(
        f"{summary['task']} {summary['reward']} + {summary['shaping']}: {summary['steps']} env steps; success on {config.eval_episodes} held-out "
        f"seeds {summary['start_success']:.2f} at the start (the init policy itself) -> {summary['final_success']:.2f}; "
        f"{summary['env_steps_per_s']:.0f} env steps/s, {summary['updates_per_s']:.0f} updates/s, {summary['seconds']:.0f} s"
    )
    print(f"logs: {config.out}/eval.csv, {config.out}/train.csv" + (f"; fine-tuned policy: {config.out}/policy" if config.method == "awr" else ""))
    return 0


def _finetune_flags(parser: argparse.ArgumentParser) -> None:
    """rl finetune's flags, generated from its configs: the run's own fields, then --awr.* (method awr,
    headway/policy/rl_awr.py) and --agent.* (method ibrl, headway/policy/rl_algo.py)."""
    from headway.policy.rl_algo import AgentConfig
    from headway.policy.rl_awr import AWRConfig
    from headway.policy.rl_runner import OnlineRLConfig

    config_flags(OnlineRLConfig, skip=("processes", "progress"), required=("init",))(parser)
    config_flags(AWRConfig, prefix="awr")(parser)
    config_flags(AgentConfig, prefix="agent")(parser)


def register(commands: argparse._SubParsersAction) -> None:
    rl = commands.add_parser("rl", help="online reinforcement learning in simulation")
    rl_commands = rl.add_subparsers(dest="rl_command", required=True, metavar="COMMAND")
    train = rl_commands.add_parser("train", help="SAC with demonstrations in replay and a reward from any source")
    train.add_argument("--task", default="lift")
    train.add_argument("--reward", default="sparse", help="sparse, robosuite-dense or prm:CKPT (a reward model folder)")
    train.add_argument("--shaping", default=None, help="pbrs, delta, kagi or none (default: pbrs with prm, none otherwise)")
    train.add_argument("--init", type=Path, default=None, help="a headway policy checkpoint distilled into the actor (needs --demos)")
    train.add_argument("--demos", type=Path, default=None, help="a LeRobot dataset kept in replay (half of each batch)")
    train.add_argument("--steps", type=int, default=50_000, help="environment steps")
    train.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs, policy, learning curve)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--eval-every", type=int, default=5_000)
    train.add_argument("--eval-episodes", type=int, default=10)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--horizon", type=int, default=None, help="episode length limit (default: the task's)")
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--utd", type=int, default=1, help="gradient updates per environment step")
    train.add_argument("--gamma", type=float, default=0.99, help="discount (also used by the shaping)")
    train.add_argument("--success-weight", type=float, default=0.0, help="potential = (1 - w) progress + w success probability (prm only)")
    train.add_argument("--pretrain-steps", type=int, default=0, help="without --init: clone the successful demos first")
    train.add_argument("--distill-steps", type=int, default=2_000, help="with --init: supervised steps distilling it")
    train.add_argument("--bc-weight", type=float, default=0.0, help="behaviour-cloning term on demonstration rows (TD3+BC style)")
    train.add_argument(
        "--ibrl", action="store_true", help="IBRL: act and bootstrap with the better (by Q) of the actor and its frozen initialisation"
    )
    train.add_argument(
        "--residual", type=float, default=0.0, help="> 0: the actor outputs a correction of at most this size to its frozen initialisation's action"
    )
    train.add_argument(
        "--actor-update", default="sac", choices=("sac", "awac"),
        help="sac: follow the critics' gradient | awac: imitate replay actions weighted by their advantage",
    )
    train.add_argument(
        "--exploration", default="learned", choices=("learned", "held"),
        help="learned: SAC's own spread and temperature | held: the cloned or distilled actor's spread, fixed, no entropy term",
    )
    train.add_argument("--awac-temperature", type=float, default=1.0, help="AWAC: in units of the batch's advantage spread")
    train.add_argument("--critic-pretrain", type=int, default=0, help="critic-only updates on the demonstrations before acting")
    train.add_argument("--init-alpha", type=float, default=0.1, help="initial entropy temperature (small when fine-tuning an init)")
    train.add_argument("--actor-lr", type=float, default=3e-4)
    train.add_argument("--pretrain-lr", type=float, default=None, help="learning rate of cloning or distillation (default: --actor-lr)")
    train.add_argument("--hidden", type=integers_argument, default=(256, 256), help="hidden layer widths of actor and critics, e.g. 512,512,512")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    train.set_defaults(run=_rl_train)

    tune = rl_commands.add_parser("finetune", help="improve a headway policy online: fine-tune its own network (awr) or act through it (ibrl)")
    tune.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    lazy_flags(tune, _finetune_flags)
    tune.set_defaults(run=_rl_finetune)
