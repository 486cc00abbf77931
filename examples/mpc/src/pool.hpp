// pool.hpp: a fixed set of worker threads for the planners' rollouts.
//
// parallel_for(n, f) calls f(i, worker) for i in [0, n) spread over the calling thread (worker 0)
// and threads - 1 persistent workers, handing out indices one at a time so that uneven rollouts
// balance. Each worker index owns one mjData in the planners.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mpc {

class ThreadPool {
public:
    /// A pool of `threads` >= 1 (the caller counts as one).
    explicit ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
        for (int w = 1; w < threads_; w++) workers_.emplace_back([this, w] { work(w); });
    }
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
    }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int threads() const noexcept { return threads_; }

    /// f(i, worker) for every i in [0, n); returns when all are done. The first exception thrown
    /// by any f is rethrown here (the remaining indices still run).
    void parallel_for(int n, const std::function<void(int, int)>& f) {
        if (threads_ == 1 || n <= 1) {
            for (int i = 0; i < n; i++) f(i, 0);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &f;
            n_ = n;
            next_.store(0);
            busy_ = threads_ - 1;
            error_ = nullptr;
            generation_++;
        }
        wake_.notify_all();
        run(0);
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return busy_ == 0; });
        job_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

private:
    void run(int worker) {
        for (int i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) {
            try {
                (*job_)(i, worker);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!error_) error_ = std::current_exception();
            }
        }
    }
    void work(int worker) {
        unsigned long seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
            }
            run(worker);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                busy_--;
            }
            done_.notify_one();
        }
    }

    const int threads_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(int, int)>* job_ = nullptr;
    int n_ = 0;
    std::atomic<int> next_{0};
    int busy_ = 0;
    unsigned long generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
};

}  // namespace mpc
