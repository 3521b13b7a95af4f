"""`headway rl train`: online RL in the simulator with a reward from any source."""

from __future__ import annotations

import argparse

from headway.commands import add_run_dir_flags, config_flags, config_from_args, lazy_flags


def _rl_train(args: argparse.Namespace) -> int:
    from headway.policy.rl_train import RLConfig, train_rl
    from headway.policy.sac import SACConfig

    config = config_from_args(RLConfig, args, sac=config_from_args(SACConfig, args))
    summary = train_rl(config, resume=args.resume, overwrite=args.overwrite)
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
    summary = run_online_rl(config, resume=args.resume, overwrite=args.overwrite)
    print(
        f"{summary['task']} {summary['reward']} + {summary['shaping']}: {summary['steps']} env steps; success on {config.eval_episodes} held-out "
        f"seeds {summary['start_success']:.2f} at the start (the init policy itself) -> {summary['final_success']:.2f}; "
        f"{summary['env_steps_per_s']:.0f} env steps/s, {summary['updates_per_s']:.0f} updates/s, {summary['seconds']:.0f} s"
    )
    print(f"logs: {config.out}/eval.csv, {config.out}/train.csv" + (f"; fine-tuned policy: {config.out}/policy" if config.method == "awr" else ""))
    return 0


def _train_flags(parser: argparse.ArgumentParser) -> None:
    """rl train's flags, generated from its configs: the run's own fields, then the agent's
    (headway/policy/sac.py), unprefixed as before."""
    from headway.policy.rl_train import RLConfig
    from headway.policy.sac import SACConfig

    config_flags(RLConfig, skip=("progress",), required=("out",))(parser)
    config_flags(SACConfig)(parser)


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
    add_run_dir_flags(train)
    lazy_flags(train, _train_flags)
    train.set_defaults(run=_rl_train)

    tune = rl_commands.add_parser("finetune", help="improve a headway policy online: fine-tune its own network (awr) or act through it (ibrl)")
    add_run_dir_flags(tune)
    lazy_flags(tune, _finetune_flags)
    tune.set_defaults(run=_rl_finetune)
