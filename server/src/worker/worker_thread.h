#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace lossguard::worker {

// A background thread that can be woken and stopped: the one mechanism behind the server's own
// threads (the notification dispatcher, the run lifecycle, the shutdown watchdog). The body runs
// once; it loops, if it wants to, around Wait(), which returns false once Stop() was called, so
// that a stop never waits longer than the step in progress. Thread-safe.
class WorkerThread {
 public:
  WorkerThread() = default;
  // Stops and joins.
  ~WorkerThread() { Stop(); }
  WorkerThread(const WorkerThread&) = delete;
  WorkerThread& operator=(const WorkerThread&) = delete;

  // Starts the thread running `body`. Throws std::logic_error if it was started before.
  void Start(std::function<void()> body);
  // Called by the body: sleeps for up to `timeout`, or until Kick() or Stop(). Returns false once
  // stopping (then at once), true otherwise.
  bool Wait(std::chrono::duration<double> timeout);
  // Ends the body's current Wait() early (or the next one, if it is not waiting).
  void Kick();
  // Asks the body to stop and joins it. Idempotent; any thread but the body's.
  void Stop();
  bool stopping();

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  bool kicked_ = false;    // guarded by mutex_
  std::thread thread_;
};

}  // namespace lossguard::worker
