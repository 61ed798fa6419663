#include "lossguard/client/ingest_client.h"

#include <nlohmann/json.hpp>

#include "lossguard/wire/json_numbers.h"

namespace lossguard::client {

namespace {
constexpr std::string_view kStepsPath = "/api/v1/steps";

// The server's error body is {"error": {"message": ..., "record": i?}}; anything else (a proxy's
// HTML page, say) is quoted as it is, shortened.
IngestRefusal ReadRefusal(const HttpResponse& response) {
  IngestRefusal refusal{.status = response.status, .record = std::nullopt, .message = {}};
  try {
    const nlohmann::json error = wire::ParseJsonText(response.body).at("error");
    refusal.message = error.at("message").get<std::string>();
    if (auto record = error.find("record"); record != error.end() && record->is_number_unsigned())
      refusal.record = record->get<std::size_t>();
  } catch (const nlohmann::json::exception&) {
    refusal.message = response.body.substr(0, 500);
  }
  return refusal;
}
// The acknowledgement's "verdicts": {run: {"through_step": n, "open": [episode...]}}. A server that
// does not send them, or sends them malformed, gives nullopt: the batch is stored either way.
std::optional<std::map<std::string, RunVerdicts>> ReadVerdicts(const nlohmann::json& answer) {
  auto found = answer.find("verdicts");
  if (found == answer.end() || !found->is_object()) return std::nullopt;
  std::map<std::string, RunVerdicts> out;
  try {
    for (const auto& [run, value] : found->items()) {
      RunVerdicts verdicts{.through_step = value.at("through_step").get<std::int64_t>(),
                           .open = {}};
      for (const nlohmann::json& episode : value.at("open")) {
        const nlohmann::json& rank = episode.at("rank");
        verdicts.open.push_back(OpenEpisode{
            .id = episode.at("id").get<std::int64_t>(),
            .kind = episode.at("kind").get<std::string>(),
            .severity = episode.at("severity").get<std::string>(),
            .rank = rank.is_null() ? std::nullopt : std::optional(rank.get<std::int64_t>()),
            .first_step = episode.at("first_step").get<std::int64_t>(),
            .last_step = episode.at("last_step").get<std::int64_t>(),
            .acked = episode.value("acked", false),
            .message = episode.value("message", std::string())});
      }
      out.emplace(run, std::move(verdicts));
    }
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  return out;
}
}  // namespace

std::string IngestRefusal::Describe() const {
  return status == 0 ? message : "HTTP " + std::to_string(status) + ": " + message;
}

IngestClient::IngestClient(std::string_view server_url, HttpClientOptions options)
    : http_(server_url, std::move(options)) {}

Result<IngestAck, IngestRefusal> IngestClient::Post(std::string ndjson_body) {
  HttpResponse response;
  try {
    response = http_.Post(kStepsPath, std::move(ndjson_body), "application/x-ndjson");
  } catch (const HttpError& e) {
    return IngestRefusal{.status = 0, .record = std::nullopt, .message = e.what()};
  }
  if (response.status != 200) return ReadRefusal(response);
  try {
    const nlohmann::json answer = wire::ParseJsonText(response.body);
    return IngestAck{.accepted = answer.at("accepted").get<std::int64_t>(),
                     .duplicates = answer.at("duplicates").get<std::int64_t>(),
                     .replaced = answer.at("replaced").get<std::int64_t>(),
                     .verdicts = ReadVerdicts(answer)};
  } catch (const nlohmann::json::exception& e) {
    // A 200 without the server's answer: not a lossguard server (or a proxy in the way). The
    // batch may or may not be stored; sending it again is safe (resends are duplicates).
    return IngestRefusal{.status = 502,
                         .record = std::nullopt,
                         .message = std::string("unexpected answer from the server: ") + e.what()};
  }
}

Result<IngestAck, IngestRefusal> IngestClient::Post(const std::vector<std::string>& lines) {
  std::string body;
  for (const std::string& line : lines) (body += line) += '\n';
  return Post(std::move(body));
}

}  // namespace lossguard::client
