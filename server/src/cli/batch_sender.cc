#include "cli/batch_sender.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "lossguard/wire/json_numbers.h"

namespace lossguard::cli {

namespace {
std::string ServerMessage(const wire::HttpResponse& response) {
  try {
    return wire::ParseJsonText(response.body).at("error").at("message").get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return response.body.substr(0, 500);
  }
}
}  // namespace

std::string SendBatch(wire::HttpClient& client, const std::string& body, int retries,
                      SendTotals& totals) {
  for (int attempt = 0;; ++attempt) {
    try {
      wire::HttpResponse response = client.Post("/api/v1/steps", body, "application/x-ndjson");
      if (response.status != 200) {
        return "server answered " + std::to_string(response.status) + ": " +
               ServerMessage(response);
      }
      auto result = wire::ParseJsonText(response.body);
      totals.accepted += result.at("accepted").get<std::int64_t>();
      totals.duplicates += result.at("duplicates").get<std::int64_t>();
      totals.replaced += result.at("replaced").get<std::int64_t>();
      ++totals.batches;
      return "";
    } catch (const wire::HttpError& e) {
      if (attempt >= retries) return e.what();
      std::this_thread::sleep_for(std::chrono::milliseconds(200) * (1 << attempt));
    } catch (const nlohmann::json::exception& e) {
      return std::string("unexpected response from the server: ") + e.what();
    }
  }
}

}  // namespace lossguard::cli
