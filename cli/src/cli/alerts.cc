#include <nlohmann/json.hpp>

#include "cli/alert_table.h"
#include "cli/commands.h"
#include "lossguard/client/http_client.h"
#include "lossguard/client/url.h"
#include "lossguard/wire/json_numbers.h"

namespace lossguard::cli {

int Alerts(const AlertsOptions& options, std::ostream& out, std::ostream& err) {
  std::string target = "/api/v1/alerts?state=" + client::PercentEncode(options.state);
  if (options.run) target += "&run=" + client::PercentEncode(*options.run);
  // A malformed URL throws: a usage error for main().
  client::HttpClient client(options.server.url, options.server.ClientOptions(kReadTimeout));
  client::HttpResponse response;
  try {
    response = client.Get(target);
  } catch (const client::HttpError& e) {
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
    alerts = wire::ParseJsonText(response.body).at("alerts");
  } catch (const nlohmann::json::exception& e) {
    err << "lossguard alerts: unexpected response: " << e.what() << "\n";
    return 1;
  }
  if (alerts.empty() && options.run) {
    out << "no alerts for run " << *options.run << "\n";
    return 0;
  }
  PrintAlertTable(alerts, out);
  return 0;
}

}  // namespace lossguard::cli
