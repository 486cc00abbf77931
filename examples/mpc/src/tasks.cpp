// tasks.cpp: the dm_control tasks. Each class cites the Python it reimplements (dm_control
// 1.0.50, dm_control/suite/<domain>.py); the XML is the suite's own.
#include "tasks.hpp"

#include "tolerance.hpp"

#include <cmath>
#include <stdexcept>

namespace mpc {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Row-major 3x3 frame element "zz" of body b (dm_control's named.data.xmat[b, 'zz']).
double xmat_zz(const mjData* d, int body) { return d->xmat[9 * body + 8]; }

// dm_control's physics.step(n) (engine.py, legacy_step): RK4 models take n mj_step calls, others
// mj_step2 then n - 1 mj_step calls; then mj_step1 brings positions, velocities and sensors up to
// date with the new state.
void physics_step(const mjModel* m, mjData* d, int n) {
    if (m->opt.integrator == mjINT_RK4) {
        for (int i = 0; i < n; i++) mj_step(m, d);
    } else {
        mj_step2(m, d);
        for (int i = 1; i < n; i++) mj_step(m, d);
    }
    mj_step1(m, d);
}

// cartpole.py, Balance(swing_up=True, sparse=False): the swing-up task.
class CartpoleSwingup final : public Task {
public:
    CartpoleSwingup(ModelPtr model) : Task("cartpole-swingup", std::move(model), 1, 10.0) {
        slider_ = model_qpos("slider");
        hinge_ = model_qpos("hinge_1");
    }
    // _get_reward(sparse=False): upright = (cos + 1)/2 averaged over poles; centered =
    // (1 + tolerance(cart, margin=2))/2; small_control = (4 + tolerance(u, margin=1,
    // value_at_margin=0, quadratic))/5; small_velocity = (1 + min tolerance(pole ang. vel,
    // margin=5))/2; the reward is their product.
    double reward(const mjData* d) const override {
        const mjModel* m = model();
        double upright = 0.0;
        for (int b = 2; b < m->nbody; b++) upright += (xmat_zz(d, b) + 1.0) / 2.0;
        upright /= m->nbody - 2;
        const double centered = (1.0 + tolerance(d->qpos[slider_], Tol{0, 0, 2.0})) / 2.0;
        const double control = tolerance(d->ctrl[0], Tol{0, 0, 1.0, Sigmoid::quadratic, 0.0});
        const double small_control = (4.0 + control) / 5.0;
        double velocity = 1.0;
        for (int i = 1; i < m->nv; i++) velocity = std::fmin(velocity, tolerance(d->qvel[i], Tol{0, 0, 5.0}));
        const double small_velocity = (1.0 + velocity) / 2.0;
        return upright * small_control * small_velocity * centered;
    }

protected:
    // initialize_episode (swing_up): slider 0.01*N(0,1), hinge pi + 0.01*N(0,1), further poles
    // 0.1*N(0,1), every velocity 0.01*N(0,1).
    void initialize_episode(mjData* d, Rng& rng) const override {
        std::normal_distribution<double> normal(0.0, 1.0);
        const mjModel* m = model();
        d->qpos[slider_] = 0.01 * normal(rng);
        d->qpos[hinge_] = kPi + 0.01 * normal(rng);
        for (int i = 2; i < m->nq; i++) d->qpos[i] = 0.1 * normal(rng);
        for (int i = 0; i < m->nv; i++) d->qvel[i] = 0.01 * normal(rng);
    }

private:
    int model_qpos(const char* joint) const { return model()->jnt_qposadr[id(mjOBJ_JOINT, joint)]; }
    int slider_ = 0, hinge_ = 0;
};

// cheetah.py, Cheetah: the run task.
class CheetahRun final : public Task {
public:
    CheetahRun(ModelPtr model) : Task("cheetah-run", std::move(model), 1, 10.0), speed_(sensor_adr("torso_subtreelinvel")) {}
    // get_reward: tolerance(speed, bounds=(10, inf), margin=10, value_at_margin=0, linear),
    // speed = sensordata['torso_subtreelinvel'][0].
    double reward(const mjData* d) const override {
        return tolerance(d->sensordata[speed_], Tol{10.0, inf, 10.0, Sigmoid::linear, 0.0});
    }

protected:
    // initialize_episode: limited joints uniform in their range, then 200 physics steps (zero
    // control) to settle, then time = 0.
    void initialize_episode(mjData* d, Rng& rng) const override {
        const mjModel* m = model();
        for (int j = 0; j < m->njnt; j++) {
            if (!m->jnt_limited[j]) continue;
            std::uniform_real_distribution<double> uniform(m->jnt_range[2 * j], m->jnt_range[2 * j + 1]);
            d->qpos[m->jnt_qposadr[j]] = uniform(rng);
        }
        settle(d, 200);
        d->time = 0.0;
    }

private:
    int speed_;
};

// walker.py, PlanarWalker: stand (move_speed 0) and walk (move_speed 1); control timestep 0.025 s.
class Walker final : public Task {
public:
    Walker(ModelPtr model, double move_speed)
        : Task(move_speed == 0.0 ? "walker-stand" : "walker-walk", std::move(model), 10, 25.0),
          move_speed_(move_speed),
          torso_(id(mjOBJ_BODY, "torso")),
          velocity_(sensor_adr("torso_subtreelinvel")) {}
    // get_reward: standing = tolerance(torso z, bounds=(1.2, inf), margin=0.6); upright = (1 +
    // torso zz)/2; stand = (3*standing + upright)/4; walk multiplies by (5*move + 1)/6 with move =
    // tolerance(horizontal velocity, bounds=(speed, inf), margin=speed/2, value_at_margin=0.5,
    // linear).
    double reward(const mjData* d) const override {
        const double standing = tolerance(d->xpos[3 * torso_ + 2], Tol{1.2, inf, 0.6});
        const double upright = (1.0 + xmat_zz(d, torso_)) / 2.0;
        const double stand = (3.0 * standing + upright) / 4.0;
        if (move_speed_ == 0.0) return stand;
        const double move = tolerance(d->sensordata[velocity_], Tol{move_speed_, inf, move_speed_ / 2.0, Sigmoid::linear, 0.5});
        return stand * (5.0 * move + 1.0) / 6.0;
    }

protected:
    void initialize_episode(mjData* d, Rng& rng) const override { randomize_limited_and_rotational_joints(d, rng); }

private:
    double move_speed_;
    int torso_, velocity_;
};

// humanoid.py, Humanoid (pure_state False): stand (move_speed 0) and walk (1); control timestep
// 0.025 s.
class Humanoid final : public Task {
public:
    Humanoid(ModelPtr model, double move_speed)
        : Task(move_speed == 0.0 ? "humanoid-stand" : "humanoid-walk", std::move(model), 5, 25.0),
          move_speed_(move_speed),
          head_(id(mjOBJ_BODY, "head")),
          torso_(id(mjOBJ_BODY, "torso")),
          com_velocity_(sensor_adr("torso_subtreelinvel")) {}
    // get_reward: standing = tolerance(head z, bounds=(1.4, inf), margin=0.35); upright =
    // tolerance(torso zz, bounds=(0.9, inf), linear, margin=1.9, value_at_margin=0);
    // small_control = (4 + mean tolerance(u, margin=1, value_at_margin=0, quadratic))/5; stand:
    // times dont_move = mean over x, y of tolerance(com velocity, margin=2); walk: times (5*move +
    // 1)/6 with move = tolerance(|com velocity xy|, bounds=(speed, inf), margin=speed,
    // value_at_margin=0, linear).
    double reward(const mjData* d) const override {
        const mjModel* m = model();
        const double standing = tolerance(d->xpos[3 * head_ + 2], Tol{1.4, inf, 1.4 / 4.0});
        const double upright = tolerance(xmat_zz(d, torso_), Tol{0.9, inf, 1.9, Sigmoid::linear, 0.0});
        double control = 0.0;
        for (int i = 0; i < m->nu; i++) control += tolerance(d->ctrl[i], Tol{0, 0, 1.0, Sigmoid::quadratic, 0.0});
        const double small_control = (4.0 + control / m->nu) / 5.0;
        const double vx = d->sensordata[com_velocity_], vy = d->sensordata[com_velocity_ + 1];
        if (move_speed_ == 0.0) {
            const double dont_move = (tolerance(vx, Tol{0, 0, 2.0}) + tolerance(vy, Tol{0, 0, 2.0})) / 2.0;
            return small_control * standing * upright * dont_move;
        }
        const double move = tolerance(std::hypot(vx, vy), Tol{move_speed_, inf, move_speed_, Sigmoid::linear, 0.0});
        return small_control * standing * upright * (5.0 * move + 1.0) / 6.0;
    }

protected:
    // initialize_episode: randomize_limited_and_rotational_joints until the pose has no contact
    // (after_reset, i.e. mj_forward, between tries).
    void initialize_episode(mjData* d, Rng& rng) const override {
        for (int tries = 0;; tries++) {
            randomize_limited_and_rotational_joints(d, rng);
            mj_forward(model(), d);
            if (d->ncon == 0) return;
            if (tries > 100000) throw std::runtime_error("humanoid: no contact-free initial pose found");
        }
    }

private:
    double move_speed_;
    int head_, torso_, com_velocity_;
};

ModelPtr load(const std::string& suite_dir, const char* file) {
    const std::string path = suite_dir + "/" + file;
    char error[1024] = "";
    ModelPtr model(mj_loadXML(path.c_str(), nullptr, error, sizeof error));
    if (!model) throw std::runtime_error("cannot load " + path + ": " + error);
    return model;
}

}  // namespace

Task::Task(std::string name, ModelPtr model, int substeps, double time_limit_seconds)
    : name_(std::move(name)), model_(std::move(model)), substeps_(substeps) {
    // dm_control: n_sub_steps = round(control_timestep / timestep), which must be whole; the
    // episode has ceil-free time_limit / control_timestep steps for these tasks.
    const double control_dt = substeps_ * model_->opt.timestep;
    time_limit_steps_ = static_cast<int>(std::lround(time_limit_seconds / control_dt));
}

std::unique_ptr<Task> Task::make(const std::string& name, const std::string& suite_dir) {
    if (name == "cartpole-swingup") return std::make_unique<CartpoleSwingup>(load(suite_dir, "cartpole.xml"));
    if (name == "cheetah-run") return std::make_unique<CheetahRun>(load(suite_dir, "cheetah.xml"));
    if (name == "walker-stand") return std::make_unique<Walker>(load(suite_dir, "walker.xml"), 0.0);
    if (name == "walker-walk") return std::make_unique<Walker>(load(suite_dir, "walker.xml"), 1.0);
    if (name == "humanoid-stand") return std::make_unique<Humanoid>(load(suite_dir, "humanoid.xml"), 0.0);
    if (name == "humanoid-walk") return std::make_unique<Humanoid>(load(suite_dir, "humanoid.xml"), 1.0);
    throw std::runtime_error("unknown task '" + name + "'");
}

std::vector<std::string> Task::names() {
    return {"cartpole-swingup", "cheetah-run", "walker-stand", "walker-walk", "humanoid-stand", "humanoid-walk"};
}

DataPtr Task::make_data() const {
    DataPtr d(mj_makeData(model_.get()));
    if (!d) throw std::runtime_error("mj_makeData failed");
    return d;
}

void Task::reset(mjData* d, Rng& rng) const {
    mj_resetData(model_.get(), d);
    mj_forward(model_.get(), d);
    initialize_episode(d, rng);
    mj_forward(model_.get(), d);
}

void Task::step(mjData* d, const double* action) const {
    for (int i = 0; i < model_->nu; i++) d->ctrl[i] = action[i];
    physics_step(model_.get(), d, substeps_);
}

void Task::prepare(mjData* d) const { mj_step1(model_.get(), d); }

void Task::settle(mjData* d, int n) const {
    for (int i = 0; i < model_->nu; i++) d->ctrl[i] = 0.0;
    physics_step(model_.get(), d, n);
}

int Task::id(int type, const char* name) const {
    const int i = mj_name2id(model_.get(), type, name);
    if (i < 0) throw std::runtime_error(name_ + ": the model has no object named '" + name + "'");
    return i;
}

int Task::sensor_adr(const char* name) const { return model_->sensor_adr[id(mjOBJ_SENSOR, name)]; }

// randomizers.py: limited hinges and slides uniform in their range; a limited ball joint a random
// axis with an angle uniform in [0, range max); unlimited hinges uniform in [-pi, pi]; unlimited
// balls a normalised N(0, I) quaternion; a free joint keeps its position and gets the normalised
// uniform [0, 1)^4 quaternion that dm_control keeps for reproducibility.
void Task::randomize_limited_and_rotational_joints(mjData* d, Rng& rng) const {
    const mjModel* m = model_.get();
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    auto normalize = [](double* q, int n) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += q[i] * q[i];
        s = std::sqrt(s);
        for (int i = 0; i < n; i++) q[i] /= s;
    };
    for (int j = 0; j < m->njnt; j++) {
        const int type = m->jnt_type[j];
        double* q = d->qpos + m->jnt_qposadr[j];
        const double lo = m->jnt_range[2 * j], hi = m->jnt_range[2 * j + 1];
        if (m->jnt_limited[j]) {
            if (type == mjJNT_HINGE || type == mjJNT_SLIDE) {
                q[0] = std::uniform_real_distribution<double>(lo, hi)(rng);
            } else if (type == mjJNT_BALL) {
                double axis[3] = {normal(rng), normal(rng), normal(rng)};
                normalize(axis, 3);
                mju_axisAngle2Quat(q, axis, unit(rng) * hi);
            }
        } else if (type == mjJNT_HINGE) {
            q[0] = std::uniform_real_distribution<double>(-kPi, kPi)(rng);
        } else if (type == mjJNT_BALL) {
            for (int i = 0; i < 4; i++) q[i] = normal(rng);
            normalize(q, 4);
        } else if (type == mjJNT_FREE) {
            for (int i = 3; i < 7; i++) q[i] = unit(rng);
            normalize(q + 3, 4);
        }
    }
}

}  // namespace mpc
