#include "lossguard/analyzers/robust_window.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lossguard::analyzers {

namespace {
double MedianOf(std::vector<double> values) {
  auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  if (values.size() % 2 == 1) return *middle;
  double upper = *middle;
  double lower = *std::max_element(values.begin(), middle);
  return (lower + upper) / 2;
}
}  // namespace

void RobustWindow::Add(double value) {
  if (!std::isfinite(value)) return;
  values_.push_back(value);
  if (values_.size() > capacity_) values_.pop_front();
}

std::optional<double> RobustWindow::Median() const {
  if (values_.empty()) return std::nullopt;
  return MedianOf({values_.begin(), values_.end()});
}

std::optional<double> RobustWindow::Mad() const {
  std::optional<double> median = Median();
  if (!median) return std::nullopt;
  std::vector<double> deviations;
  deviations.reserve(values_.size());
  for (double value : values_) deviations.push_back(std::abs(value - *median));
  return MedianOf(std::move(deviations));
}

std::optional<double> RobustWindow::Mean() const {
  if (values_.empty()) return std::nullopt;
  double sum = 0;
  for (double value : values_) sum += value;
  return sum / static_cast<double>(values_.size());
}

std::optional<double> RobustWindow::StdDev() const {
  std::optional<double> mean = Mean();
  if (!mean) return std::nullopt;
  double sum = 0;
  for (double value : values_) sum += (value - *mean) * (value - *mean);
  return std::sqrt(sum / static_cast<double>(values_.size()));
}

std::optional<double> RobustWindow::Max() const {
  if (values_.empty()) return std::nullopt;
  return *std::max_element(values_.begin(), values_.end());
}

}  // namespace lossguard::analyzers
