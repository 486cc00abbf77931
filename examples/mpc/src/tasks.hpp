// tasks.hpp: dm_control suite tasks on MuJoCo's C API.
//
// Each task loads its model from dm_control's suite directory (the XML files shipped in the
// dm_control wheel, dm_control/suite/*.xml) and reimplements, in C++, what dm_control's Python
// defines for it: the episode initialisation, the control step (physics substeps per action)
// and the reward. The definitions are cited at each task in tasks.cpp; tests/test_rewards.cpp
// checks steps and rewards against values recorded from dm_control itself.
#pragma once

#include <mujoco/mujoco.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

namespace mpc {

using Rng = std::mt19937_64;

/// Owns an mjModel.
struct ModelDeleter {
    void operator()(mjModel* m) const noexcept { mj_deleteModel(m); }
};
/// Owns an mjData.
struct DataDeleter {
    void operator()(mjData* d) const noexcept { mj_deleteData(d); }
};
using ModelPtr = std::unique_ptr<mjModel, ModelDeleter>;
using DataPtr = std::unique_ptr<mjData, DataDeleter>;

/// A dm_control task: model, initial-state distribution, control step and reward.
class Task {
public:
    /// The task called `name` ("cartpole-swingup", "cheetah-run", "walker-walk", "walker-stand",
    /// "humanoid-stand", "humanoid-walk"), its model loaded from `suite_dir`. Throws
    /// std::runtime_error for an unknown name or a model that does not load.
    static std::unique_ptr<Task> make(const std::string& name, const std::string& suite_dir);
    /// The task names make() accepts.
    static std::vector<std::string> names();

    virtual ~Task() = default;
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;

    const std::string& name() const noexcept { return name_; }
    const mjModel* model() const noexcept { return model_.get(); }
    /// Action dimension (the model's actuators; dm_control's action spec).
    int action_dim() const noexcept { return model_->nu; }
    /// Physics steps per control step (dm_control: control_timestep / model timestep).
    int substeps() const noexcept { return substeps_; }
    /// Control steps in one dm_control episode (time_limit / control_timestep).
    int time_limit_steps() const noexcept { return time_limit_steps_; }
    /// Seconds per control step.
    double control_timestep() const noexcept { return substeps_ * model_->opt.timestep; }
    /// A new mjData for the model.
    DataPtr make_data() const;

    /// dm_control's reset: mj_resetData, the task's initialize_episode, then mj_forward.
    void reset(mjData* d, Rng& rng) const;
    /// One control step the way dm_control's Physics.step takes it (its legacy_step path): ctrl =
    /// action; RK4 models take `substeps` mj_step calls; the others mj_step2, then substeps - 1
    /// mj_step calls; both end with mj_step1, so positions, velocities and sensors that the reward
    /// reads describe the new state. Requires mj_step1's quantities of the current state (true
    /// after reset(), step() and prepare()).
    void step(mjData* d, const double* action) const;
    /// After a state was written into d (mj_setState), compute what step() requires of it.
    void prepare(mjData* d) const;
    /// The reward of the state in d (after step()); `d->ctrl` is the action of that step.
    virtual double reward(const mjData* d) const = 0;

protected:
    Task(std::string name, ModelPtr model, int substeps, double time_limit_seconds);
    /// The task's initialize_episode, applied to freshly reset data.
    virtual void initialize_episode(mjData* d, Rng& rng) const = 0;
    /// Id of a named object of type `type`; throws if the model lacks it.
    int id(int type, const char* name) const;
    /// Address in sensordata of the named sensor; throws if absent.
    int sensor_adr(const char* name) const;
    /// dm_control's randomizers.randomize_limited_and_rotational_joints.
    void randomize_limited_and_rotational_joints(mjData* d, Rng& rng) const;
    /// Runs mj_step with zero control, `n` times, the way dm_control's physics.step(nstep=n) does.
    void settle(mjData* d, int n) const;

private:
    std::string name_;
    ModelPtr model_;
    int substeps_;
    int time_limit_steps_;
};

}  // namespace mpc
