#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace lossguard::http {

// SIGINT and SIGTERM taken synchronously (sigtimedwait) on a thread of their own, never by an
// asynchronous handler on whichever thread the kernel picks. A handler runs in the middle of that
// thread's work, and ThreadSanitizer defers handlers to points it chooses, where a SIGTERM can go
// unhandled for good. Blocked everywhere and waited for here, a signal is either pending or taken,
// and a signal sent while the server starts waits until it can be acted on.

// Blocks SIGINT and SIGTERM in the calling thread and in every thread it starts afterwards: call it
// first in main(), before any thread exists.
void BlockTerminationSignals();

class SignalWaiter {
 public:
  // Starts the thread; `on_signal(signo)` runs on it for every SIGINT or SIGTERM until Stop().
  explicit SignalWaiter(std::function<void(int)> on_signal);
  ~SignalWaiter();
  SignalWaiter(const SignalWaiter&) = delete;
  SignalWaiter& operator=(const SignalWaiter&) = delete;

  // Returns once the thread has ended (within about 100 ms); `on_signal` is not called after it.
  void Stop();

 private:
  std::function<void(int)> on_signal_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace lossguard::http
