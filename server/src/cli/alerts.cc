#include <iomanip>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "lossguard/wire/http_client.h"

namespace lossguard::cli {

namespace {
std::string QueryValue(const std::string& value) {
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '~') {
      out += static_cast<char>(c);
    } else {
      static const char* kHex = "0123456789ABCDEF";
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string Text(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}
}  // namespace

int Alerts(const AlertsOptions& options, std::ostream& out, std::ostream& err) {
  std::string target = "/api/v1/alerts?state=" + QueryValue(options.state);
  if (options.run) target += "&run=" + QueryValue(*options.run);
  wire::HttpClient client(options.server);  // a malformed URL throws: a usage error for main()
  wire::HttpResponse response;
  try {
    response = client.Get(target);
  } catch (const wire::HttpError& e) {
    err << "lossguard alerts: " << e.what() << "\n";
    return 1;
  }
  if (response.status != 200) {
    err << "lossguard alerts: server answered " << response.status << ": " << response.body << "\n";
    return 1;
  }
  if (options.json) {
    out << response.body << "\n";
    return 0;
  }
  nlohmann::json alerts;
  try {
    alerts = nlohmann::json::parse(response.body).at("alerts");
  } catch (const nlohmann::json::exception& e) {
    err << "lossguard alerts: unexpected response: " << e.what() << "\n";
    return 1;
  }
  if (alerts.empty()) {
    out << "no alerts" << (options.run ? " for run " + *options.run : std::string()) << "\n";
    return 0;
  }
  out << std::left << std::setw(6) << "ID" << std::setw(24) << "RUN" << std::setw(22) << "KIND"
      << std::setw(10) << "SEVERITY" << std::setw(10) << "STATE" << std::setw(16) << "STEPS"
      << "MESSAGE\n";
  for (const nlohmann::json& alert : alerts) {
    std::string steps = Text(alert.at("first_step")) + "-" + Text(alert.at("last_step"));
    out << std::left << std::setw(6) << Text(alert.at("id")) << std::setw(24)
        << Text(alert.at("run")) << std::setw(22) << Text(alert.at("kind")) << std::setw(10)
        << Text(alert.at("severity")) << std::setw(10) << Text(alert.at("state")) << std::setw(16)
        << steps << Text(alert.at("message")) << "\n";
  }
  return 0;
}

}  // namespace lossguard::cli
