#pragma once

#include <utility>

// LOSSGUARD_ARG(T, name): an option with a chained setter and a getter, the shape of LibTorch's
// TORCH_ARG (which the loss and window options use), for the collector's options that must not
// depend on LibTorch (RecordStream builds without it). So every collector option reads the same:
//   RecordStreamOptions().server_url("http://127.0.0.1:8080").batch_size(256)
#define LOSSGUARD_ARG(T, name)                             \
 public:                                                   \
  auto name(const T& new_##name)->decltype(*this) {        \
    this->name##_ = new_##name;                            \
    return *this;                                          \
  }                                                        \
  auto name(T&& new_##name)->decltype(*this) {             \
    this->name##_ = std::move(new_##name);                 \
    return *this;                                          \
  }                                                        \
  const T& name() const noexcept { return this->name##_; } \
  T& name() noexcept { return this->name##_; }             \
                                                           \
 private:                                                  \
  T name##_
