// `lossguard delete RUN` and `lossguard export RUN`: a run's data leaving the server, for good or
// as a file that `lossguard replay` sends back.
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "lossguard/client/http_client.h"
#include "lossguard/client/url.h"
#include "lossguard/wire/json_numbers.h"

namespace lossguard::cli {

namespace {
// Records per request while exporting (the server's page size limit).
constexpr int kExportPage = 10000;

// Says why the server did not answer 200 for the run; false when it did.
bool Refused(const char* command, const client::HttpResponse& response, const std::string& run,
             const std::string& server_url, std::ostream& err) {
  if (response.status == 200) return false;
  if (response.status == 404) {
    err << "lossguard " << command << ": no run named \"" << run << "\" on " << server_url << "\n";
  } else {
    err << "lossguard " << command << ": server answered " << response.status << ": "
        << response.body << "\n";
  }
  return true;
}
}  // namespace

int DeleteRun(const DeleteOptions& options, std::ostream& out, std::ostream& err) {
  client::HttpClient client(options.server.url, options.server.ClientOptions(kReadTimeout));
  client::HttpResponse response;
  try {
    response =
        client.Request("DELETE", "/api/v1/runs/" + client::PercentEncode(options.run), "", "");
  } catch (const client::HttpError& e) {
    err << "lossguard delete: " << e.what() << "\n";
    return 1;
  }
  if (Refused("delete", response, options.run, options.server.url, err)) return 1;
  std::int64_t records = 0;
  try {
    records = wire::ParseJsonText(response.body).at("records").get<std::int64_t>();
  } catch (const nlohmann::json::exception& e) {
    err << "lossguard delete: unexpected response: " << e.what() << "\n";
    return 1;
  }
  out << "deleted run " << options.run << " (" << records << " records)\n";
  return 0;
}

int ExportRun(const ExportOptions& options, std::ostream& out, std::ostream& err) {
  client::HttpClient client(options.server.url, options.server.ClientOptions(kReadTimeout));
  std::ofstream file;
  if (options.out) {
    file.open(*options.out, std::ios::binary | std::ios::trunc);
    if (!file) {
      err << "lossguard export: cannot write " << *options.out << "\n";
      return 1;
    }
  }
  std::ostream& sink = options.out ? file : out;
  const std::string base = "/api/v1/runs/" + client::PercentEncode(options.run) +
                           "/steps?limit=" + std::to_string(kExportPage);
  std::string next;  // "&from=..&from_rank=.." of the next page
  std::int64_t records = 0;
  while (true) {
    client::HttpResponse response;
    try {
      response = client.Get(base + next);
    } catch (const client::HttpError& e) {
      err << "lossguard export: " << e.what() << " (after " << records << " records)\n";
      return 1;
    }
    if (Refused("export", response, options.run, options.server.url, err)) return 1;
    nlohmann::json page;
    try {
      page = wire::ParseJsonText(response.body);
      // Each record as the server stored it (canonical JSON, unknown fields included), written
      // back out the same way: non-finite numbers stay the strings the wire format spells them.
      for (const nlohmann::json& record : page.at("steps")) {
        sink << record.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict) << "\n";
        ++records;
      }
    } catch (const nlohmann::json::exception& e) {
      err << "lossguard export: unexpected response: " << e.what() << "\n";
      return 1;
    }
    if (!sink) {
      err << "lossguard export: writing failed after " << records << " records\n";
      return 1;
    }
    const nlohmann::json& continuation = page["next"];
    if (continuation.is_null()) break;
    next = "&from=" + continuation.at("from").dump() +
           "&from_rank=" + continuation.at("from_rank").dump();
  }
  sink.flush();
  if (!sink) {
    err << "lossguard export: writing failed\n";
    return 1;
  }
  err << "lossguard export: " << records << " records of run " << options.run << "\n";
  return 0;
}

}  // namespace lossguard::cli
