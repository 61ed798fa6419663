#pragma once

#include <chrono>
#include <thread>

namespace lossguard::testing {

// Polls `done` every millisecond for up to `limit`: the threads under test are real, the wait
// bounded. True once `done()` is.
template <typename Predicate>
bool Eventually(Predicate done, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace lossguard::testing
