#pragma once

#include <nlohmann/json.hpp>
#include <ostream>

namespace lossguard::cli {

// Prints alerts (objects as GET /api/v1/alerts returns them) as a table, or "no alerts".
void PrintAlertTable(const nlohmann::json& alerts, std::ostream& out);

}  // namespace lossguard::cli
