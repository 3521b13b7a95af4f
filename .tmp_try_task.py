import time, sys, numpy as np
from headway.sim.env import make_env
from headway.sim.expert import Behaviour, sample_behaviour
from headway.sim.rollout import run_episode
task = sys.argv[1]; n = int(sys.argv[2]); mode = sys.argv[3] if len(sys.argv) > 3 else "expert"
env = make_env(task)
ok = 0; t0 = time.time(); frames = 0
for seed in range(n):
    b = sample_behaviour(mode, env.task, np.random.default_rng(seed))
    ep = run_episode(env, b, seed)
    ok += ep.success; frames += ep.length
    print(seed, b.label, b.fail_stage if mode=="fail" else "", "succ", ep.success, "len", ep.length, "sf", ep.success_frame, [(s.name[:8], s.start, s.end) for s in ep.subtasks], "q %.2f" % ep.quality, "final oracle", ep.oracle_stage[-1], round(float(ep.oracle_tau[-1]),2))
print("success", ok, "/", n, "fps", frames / (time.time() - t0))
