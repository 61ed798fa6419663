#include "http/signal_waiter.h"

#include <signal.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace lossguard::http {

namespace {
sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

void BlockTerminationSignals() {
  const sigset_t set = TerminationSignals();
  if (const int error = pthread_sigmask(SIG_BLOCK, &set, nullptr); error != 0) {
    throw std::runtime_error(std::string("cannot block SIGINT/SIGTERM: ") + std::strerror(error));
  }
}

SignalWaiter::SignalWaiter(std::function<void(int)> on_signal) : on_signal_(std::move(on_signal)) {
  thread_ = std::thread([this] {
    const sigset_t set = TerminationSignals();
    const timespec poll{0, 100'000'000};  // how soon Stop() is noticed
    while (!stopping_.load()) {
      const int signo = sigtimedwait(&set, nullptr, &poll);
      if (signo > 0 && !stopping_.load()) on_signal_(signo);
      // -1: the timeout (EAGAIN), or EINTR from another signal: look at stopping_ and wait again.
    }
  });
}

SignalWaiter::~SignalWaiter() { Stop(); }

void SignalWaiter::Stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
}

}  // namespace lossguard::http
