#pragma once

#include <cstddef>
#include <optional>
#include <vector>

namespace lossguard::analyzers {

// The last `capacity` finite values of a series, with robust statistics over them. Non-finite
// values are not added (they are findings of their own, not part of a baseline). Memory is bounded
// by capacity, whatever the run's length. The values are also kept sorted, so that the median
// costs O(1) and the MAD O(capacity) without allocating: detectors ask for them on every step.
class RobustWindow {
 public:
  explicit RobustWindow(std::size_t capacity) : capacity_(capacity) {}

  void Add(double value);
  std::size_t size() const { return sorted_.size(); }
  bool full() const { return sorted_.size() == capacity_; }

  // nullopt while empty.
  std::optional<double> Median() const;
  // Median absolute deviation from the median; nullopt while empty.
  std::optional<double> Mad() const;
  std::optional<double> Mean() const;
  std::optional<double> StdDev() const;
  std::optional<double> Max() const;

 private:
  std::size_t capacity_;
  // Arrival order, to know which value leaves: a ring, allocated once, whose oldest value is at
  // `oldest_` once it is full (a run's thousands of rank windows would otherwise churn the heap).
  std::vector<double> ring_;
  std::size_t oldest_ = 0;
  std::vector<double> sorted_;  // the same values, ascending
  // Running sums for mean and standard deviation, recomputed exactly every `capacity` additions so
  // that rounding from removals cannot accumulate over a long run.
  double sum_ = 0, sum_squares_ = 0;
  std::size_t since_exact_ = 0;
};

}  // namespace lossguard::analyzers
