#!/usr/bin/env python3
"""Generate reference step data from dm_control for the MPC example's tests.

The C++ code in examples/mpc/ reimplements a few dm_control suite tasks
(reward functions and the way an environment step advances the physics) on
top of MuJoCo's C API.  This script records what dm_control itself does, so
that the C++ test can replay the recorded states and compare against it.

For every task in TASKS and every seed in --seeds, the script

  1. builds the environment with
         suite.load(domain, task, task_kwargs={'random': seed}),
  2. calls env.reset(),
  3. takes --steps control steps, each with an action drawn uniformly from
     the action spec bounds by a private numpy RandomState(seed) (independent
     of the environment's own random state), and
  4. writes one line per control step.

Each data line holds whitespace-separated fields, every number printed with
'%.17g' (enough digits to round-trip a float64):

  <task-name> <qpos (nq)> <qvel (nv)> <act (na)> <qacc_warmstart (nv)>
      <ctrl (nu)> <qpos' (nq)> <qvel' (nv)> <act' (na)> <reward>

(all on one line).  The unprimed values are physics.data read just before
env.step(action); ctrl is the action passed to env.step; the primed values
are physics.data read just after env.step; reward is the reward of the
TimeStep returned by env.step.  task-name is one of cartpole-swingup,
cheetah-run, walker-walk and humanoid-stand.  Lines starting with '#' are
comments; the file begins with a header naming the dm_control and mujoco
versions that produced it and the command that regenerates it.

Model sizes, timesteps, the number of physics substeps per control step and
the integrator of each task are printed to stdout (not to the data file).

No rendering is done, so no OpenGL backend is needed: MUJOCO_GL defaults to
'disable' here unless already set.

Compatibility shim: dm_control 1.0.50 was written against mujoco 3.x and its
named-index tables (dm_control.mujoco.wrapper.mjbindings.sizes.array_sizes)
list a few flex fields (flex_vertedge, flexvert_J, ...) that mujoco 4.0.0's
MjModel/MjData no longer have, which makes every Physics construction fail.
Before dm_control.suite is imported, this script drops from those tables
every entry the installed mujoco lacks (flex-only fields; none of the tasks
here has flexes).  Nothing is dropped when the versions match.  The dropped
names are printed and noted in the data file's header.

Usage (from the repository root, in an environment with dm_control):

  python examples/mpc/tools/dmc_reference.py [--steps 40] [--seeds 1 2]
      [--out examples/mpc/tests/data/dmc_steps.txt]

A relative --out is taken relative to the current directory; the default is
examples/mpc/tests/data/dmc_steps.txt under the repository root.
"""

import argparse
import os
import sys

import numpy as np

# (domain, task) pairs, in the order they are written.
TASKS = (
    ("cartpole", "swingup"),
    ("cheetah", "run"),
    ("walker", "walk"),
    ("humanoid", "stand"),
)

REPO_ROOT = os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
DEFAULT_OUT = os.path.join("examples", "mpc", "tests", "data", "dmc_steps.txt")


def drop_missing_index_fields():
  """Removes dm_control index entries for fields mujoco no longer has.

  Returns the sorted list of 'struct.field' names removed.
  """
  import mujoco  # pylint: disable=import-outside-toplevel
  from dm_control.mujoco.wrapper.mjbindings import sizes  # pylint: disable=import-outside-toplevel
  model = mujoco.MjModel.from_xml_string("<mujoco/>")
  data = mujoco.MjData(model)
  removed = []
  for struct_name, obj in (("mjmodel", model), ("mjdata", data)):
    table = sizes.array_sizes.get(struct_name, {})
    for field in list(table):
      if not hasattr(obj, field):
        del table[field]
        removed.append("%s.%s" % (struct_name, field))
  return sorted(removed)


def fmt(values):
  """Formats a flat sequence of numbers with 17 significant digits."""
  return [("%.17g" % float(v)) for v in np.asarray(values, np.float64).ravel()]


def snapshot(data):
  """Copies the state fields we record from an MjData-like object."""
  return (np.array(data.qpos, np.float64), np.array(data.qvel, np.float64),
          np.array(data.act, np.float64))


def describe(name, env):
  """Prints model and timing facts about one environment to stdout."""
  import mujoco  # pylint: disable=import-outside-toplevel
  physics = env.physics
  model = physics.model
  integ = int(model.opt.integrator)
  try:
    integ_name = mujoco.mjtIntegrator(integ).name
  except (ValueError, TypeError):
    integ_name = str(integ)
  n_sub = getattr(env, "_n_sub_steps", None)
  ratio = env.control_timestep() / physics.timestep()
  print("%s: nq=%d nv=%d na=%d nu=%d control_timestep=%.17g "
        "physics_timestep=%.17g substeps=%s (control/physics=%.17g) "
        "integrator=%s (%d)" % (
            name, model.nq, model.nv, model.na, model.nu,
            env.control_timestep(), physics.timestep(), n_sub, ratio,
            integ_name, integ))
  print("  legacy_step=%s" % getattr(physics, "legacy_step", None))


def record_task(domain, task, seed, steps, every):
  """Runs one task/seed for `steps` steps and returns the data lines of every
  `every`-th step (the later steps reach states, such as a running cheetah, that
  the first few do not)."""
  from dm_control import suite  # pylint: disable=import-outside-toplevel
  name = "%s-%s" % (domain, task)
  env = suite.load(domain, task, task_kwargs={"random": seed})
  env.reset()
  physics = env.physics
  spec = env.action_spec()
  rng = np.random.RandomState(seed)
  lines = []
  for step in range(steps):
    action = rng.uniform(np.asarray(spec.minimum, np.float64),
                         np.asarray(spec.maximum, np.float64),
                         size=spec.shape).astype(np.float64)
    qpos0, qvel0, act0 = snapshot(physics.data)
    warm0 = np.array(physics.data.qacc_warmstart, np.float64)
    ts = env.step(action)
    qpos1, qvel1, act1 = snapshot(physics.data)
    if ts.first() or ts.reward is None:
      raise RuntimeError("%s seed %d: episode ended early" % (name, seed))
    if step % every != every - 1:
      continue
    fields = [name]
    for part in (qpos0, qvel0, act0, warm0, action, qpos1, qvel1, act1,
                 [ts.reward]):
      fields.extend(fmt(part))
    lines.append(" ".join(fields))
  return env, lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=400,
                      help="control steps per task and seed (default 400)")
  parser.add_argument("--every", type=int, default=10,
                      help="record every N-th step (default 10)")
  parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                      help="seeds for each task (default: 1 2)")
  parser.add_argument("--out", default=None,
                      help="output file (default: <repo>/%s)" % DEFAULT_OUT)
  args = parser.parse_args(argv)

  os.environ.setdefault("MUJOCO_GL", "disable")
  removed = drop_missing_index_fields()
  if removed:
    print("compat shim: dropped dm_control index fields missing from this "
          "mujoco: %s" % " ".join(removed))

  import mujoco  # pylint: disable=import-outside-toplevel
  import dm_control  # pylint: disable=import-outside-toplevel
  try:
    from importlib import metadata  # pylint: disable=import-outside-toplevel
    dmc_version = metadata.version("dm_control")
  except Exception:  # pylint: disable=broad-except
    dmc_version = getattr(dm_control, "__version__", "unknown")

  out = args.out if args.out is not None else os.path.join(REPO_ROOT,
                                                           DEFAULT_OUT)
  out_dir = os.path.dirname(os.path.abspath(out))
  os.makedirs(out_dir, exist_ok=True)

  command = "python examples/mpc/tools/dmc_reference.py --steps %d --every %d --seeds %s" % (
      args.steps, args.every, " ".join(str(s) for s in args.seeds))
  if args.out is not None:
    command += " --out %s" % args.out

  header = [
      "# dm_control suite reference steps for examples/mpc tests.",
      "# Generated with dm_control %s and mujoco %s (numpy %s, python %s)." % (
          dmc_version, mujoco.__version__, np.__version__,
          sys.version.split()[0]),
      "# Regenerate (from the repository root): %s" % command,
      "# %d steps per task and seed, every %d-th recorded; seeds: %s; actions uniform in the action "
      "spec bounds from numpy RandomState(seed)." % (
          args.steps, args.every, " ".join(str(s) for s in args.seeds)),
      "# Line: task qpos[nq] qvel[nv] act[na] qacc_warmstart[nv] ctrl[nu] "
      "qpos'[nq] qvel'[nv] act'[na] reward",
      "# (unprimed: before env.step; primed: after env.step; numbers %.17g)",
  ]
  if removed:
    header.append("# compat shim dropped dm_control index fields absent from "
                  "this mujoco: %s" % " ".join(removed))

  body = []
  for domain, task in TASKS:
    for i, seed in enumerate(args.seeds):
      env, lines = record_task(domain, task, seed, args.steps, args.every)
      if i == 0:
        describe("%s-%s" % (domain, task), env)
      body.extend(lines)

  with open(out, "w") as f:
    f.write("\n".join(header + body) + "\n")
  print("wrote %d data lines to %s" % (len(body), out))


if __name__ == "__main__":
  main()
