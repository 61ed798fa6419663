#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace lossguard {

// A value or an error, for operations whose failure is an expected outcome (bad input) rather than
// an exceptional one. C++20 has no std::expected; this is the small subset we need.
template <typename T, typename E>
class [[nodiscard]] Result {
 public:
  Result(T value)
      : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(E error)
      : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(state_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(state_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(state_));
  }
  const E& error() const {
    assert(!ok());
    return std::get<1>(state_);
  }

 private:
  std::variant<T, E> state_;
};

// Success, or the error that says why not, for operations that return nothing else. [[nodiscard]]:
// a failure nobody looks at is a bug.
class [[nodiscard]] Status {
 public:
  static Status Ok() { return Status(); }
  static Status Error(std::string why) {
    Status status;
    status.error_ = std::move(why);
    return status;
  }

  bool ok() const { return !error_; }
  explicit operator bool() const { return ok(); }
  const std::string& error() const {
    assert(!ok());
    return *error_;
  }

 private:
  Status() = default;
  std::optional<std::string> error_;
};

}  // namespace lossguard
