#pragma once

#include <cstdio>
#include <string>

namespace lossguard::analyzers {

// Three significant digits, for alert messages ("8x", "0.577", "1.2e+03").
inline std::string FormatNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", value);
  return buffer;
}

}  // namespace lossguard::analyzers
