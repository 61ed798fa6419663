#include "cli/alert_table.h"

#include <algorithm>
#include <iomanip>

namespace lossguard::cli {

namespace {
std::string Text(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}
}  // namespace

void PrintAlertTable(const nlohmann::json& alerts, std::ostream& out) {
  if (alerts.empty()) {
    out << "no alerts\n";
    return;
  }
  // Columns as wide as their widest value: run names are often long.
  int run_width = 5;
  for (const nlohmann::json& alert : alerts) {
    run_width = std::max(run_width, static_cast<int>(Text(alert.at("run")).size()) + 2);
  }
  out << std::left << std::setw(6) << "ID" << std::setw(run_width) << "RUN" << std::setw(22)
      << "KIND" << std::setw(10) << "SEVERITY" << std::setw(10) << "STATE" << std::setw(16)
      << "STEPS"
      << "MESSAGE\n";
  for (const nlohmann::json& alert : alerts) {
    std::string steps = Text(alert.at("first_step")) + "-" + Text(alert.at("last_step"));
    out << std::left << std::setw(6) << Text(alert.at("id")) << std::setw(run_width)
        << Text(alert.at("run")) << std::setw(22) << Text(alert.at("kind")) << std::setw(10)
        << Text(alert.at("severity")) << std::setw(10) << Text(alert.at("state")) << std::setw(16)
        << steps << Text(alert.at("message")) << "\n";
  }
}

}  // namespace lossguard::cli
