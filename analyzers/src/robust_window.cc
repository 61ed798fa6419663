#include "lossguard/analyzers/robust_window.h"

#include <algorithm>
#include <cmath>

namespace lossguard::analyzers {

void RobustWindow::Add(double value) {
  if (!std::isfinite(value) || capacity_ == 0) return;
  sum_ += value;
  sum_squares_ += value * value;
  if (ring_.size() < capacity_) {
    if (ring_.empty()) {
      ring_.reserve(capacity_);
      sorted_.reserve(capacity_);
    }
    ring_.push_back(value);
    sorted_.insert(std::upper_bound(sorted_.begin(), sorted_.end(), value), value);
  } else {
    const double leaving = ring_[oldest_];
    ring_[oldest_] = value;
    oldest_ = (oldest_ + 1) % capacity_;
    sum_ -= leaving;
    sum_squares_ -= leaving * leaving;
    // The leaving value's slot is reused: only the values between it and the new one's place move,
    // by one (an erase and an insert would each move everything after them).
    const auto out = std::lower_bound(sorted_.begin(), sorted_.end(), leaving);
    const auto in = std::upper_bound(sorted_.begin(), sorted_.end(), value);
    if (in > out) {
      std::move(out + 1, in, out);
      *(in - 1) = value;
    } else {
      std::move_backward(in, out, out + 1);
      *in = value;
    }
  }
  if (++since_exact_ >= capacity_) {
    since_exact_ = 0;
    sum_ = sum_squares_ = 0;
    for (double v : sorted_) {
      sum_ += v;
      sum_squares_ += v * v;
    }
  }
}

std::optional<double> RobustWindow::Median() const {
  if (sorted_.empty()) return std::nullopt;
  const std::size_t n = sorted_.size();
  return n % 2 == 1 ? sorted_[n / 2] : (sorted_[n / 2 - 1] + sorted_[n / 2]) / 2;
}

std::optional<double> RobustWindow::Mad() const {
  std::optional<double> median = Median();
  if (!median) return std::nullopt;
  // The deviations below the median, read downwards, and those above, read upwards, are two
  // ascending sequences: merge them up to the middle instead of sorting all deviations.
  const std::size_t n = sorted_.size();
  std::ptrdiff_t below =
      std::lower_bound(sorted_.begin(), sorted_.end(), *median) - sorted_.begin() - 1;
  std::size_t above = static_cast<std::size_t>(below + 1);
  auto next = [&]() {
    const bool take_below =
        below >= 0 && (above >= n || *median - sorted_[static_cast<std::size_t>(below)] <=
                                         sorted_[above] - *median);
    return take_below ? *median - sorted_[static_cast<std::size_t>(below--)]
                      : sorted_[above++] - *median;
  };
  for (std::size_t i = 0; i < (n - 1) / 2; ++i) next();
  const double middle = next();
  if (n % 2 == 1) return middle;
  return (middle + next()) / 2;
}

std::optional<double> RobustWindow::Mean() const {
  if (sorted_.empty()) return std::nullopt;
  return sum_ / static_cast<double>(sorted_.size());
}

std::optional<double> RobustWindow::StdDev() const {
  std::optional<double> mean = Mean();
  if (!mean) return std::nullopt;
  const double n = static_cast<double>(sorted_.size());
  // E[x^2] - E[x]^2 cancels badly when the spread is tiny next to the mean: fall back to the
  // two-pass formula then (rare: flat curves).
  const double variance = sum_squares_ / n - *mean * *mean;
  if (variance > 1e-6 * *mean * *mean) return std::sqrt(variance);
  double sum = 0;
  for (double value : sorted_) sum += (value - *mean) * (value - *mean);
  return std::sqrt(sum / n);
}

std::optional<double> RobustWindow::Max() const {
  if (sorted_.empty()) return std::nullopt;
  return sorted_.back();
}

}  // namespace lossguard::analyzers
