#include "worker/worker_thread.h"

#include <algorithm>
#include <stdexcept>

namespace lossguard::worker {

void WorkerThread::Start(std::function<void()> body) {
  if (thread_.joinable()) throw std::logic_error("WorkerThread::Start called twice");
  thread_ = std::thread(std::move(body));
}

bool WorkerThread::Wait(std::chrono::duration<double> timeout) {
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, std::max(timeout, std::chrono::duration<double>::zero()),
                 [this] { return stopping_ || kicked_; });
  kicked_ = false;
  return !stopping_;
}

void WorkerThread::Kick() {
  {
    std::lock_guard lock(mutex_);
    kicked_ = true;
  }
  wake_.notify_all();
}

void WorkerThread::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool WorkerThread::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

}  // namespace lossguard::worker
