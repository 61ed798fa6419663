#pragma once

#include <chrono>

namespace lossguard::store {

// Wall-clock time as unix seconds: what the store records in first_seen, received_at, opened_at...
inline double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace lossguard::store
