#pragma once
// Warnings from the collector's sender thread, held until the Python side takes them. The sender
// thread never touches the interpreter (taking the GIL from a C++ thread can deadlock against a
// caller that waits for that thread, and dies at interpreter shutdown); the package logs what
// Take() returns from the thread that calls it.

#include <atomic>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lossguard::python {

class WarningQueue {
 public:
  explicit WarningQueue(std::size_t capacity = 256) : capacity_(capacity) {}

  // Thread-safe. Beyond capacity, warnings are counted, not kept: Take() reports how many.
  void Push(std::string_view message) {
    std::lock_guard lock(mutex_);
    if (messages_.size() < capacity_) {
      messages_.emplace_back(message);
    } else {
      ++overflow_;
    }
    held_.store(true, std::memory_order_release);
  }

  // Lock-free: whether Take() has anything (checked after every record).
  bool empty() const { return !held_.load(std::memory_order_acquire); }

  // Every held warning, oldest first, then one line for those that did not fit.
  std::vector<std::string> Take() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out(messages_.begin(), messages_.end());
    messages_.clear();
    held_.store(false, std::memory_order_release);
    if (overflow_ > 0) {
      out.push_back("lossguard: " + std::to_string(overflow_) +
                    " more warnings were not kept (the warning queue was full)");
      overflow_ = 0;
    }
    return out;
  }

 private:
  const std::size_t capacity_;
  std::mutex mutex_;
  std::deque<std::string> messages_;
  std::size_t overflow_ = 0;
  std::atomic<bool> held_{false};
};

}  // namespace lossguard::python
