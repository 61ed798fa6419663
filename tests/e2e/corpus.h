#pragma once

// The scenario corpus (tests/scenarios: real demo-trainer runs with ground truth in manifest.json)
// as the end-to-end tests send it: its records, sent in batches, and the alerts a server shows.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "lossguard/client/http_client.h"
#include "support/processes.h"

namespace lossguard::testing {

inline const std::filesystem::path kCorpus =
    std::filesystem::path(LOSSGUARD_SOURCE_DIR) / "tests/scenarios";

// The records of corpus run `run` (tests/scenarios/RUN.ndjson), one NDJSON line each.
inline std::vector<std::string> Lines(const std::string& run) {
  std::ifstream in(kCorpus / (run + ".ndjson"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.empty()) throw std::runtime_error("no records in " + run + ".ndjson");
  return lines;
}

// Posts lines [begin, end) in batches of `batch` (a trainer's sender thread batches similarly).
inline void Send(client::HttpClient& client, const std::vector<std::string>& lines,
                 std::size_t begin, std::size_t end, std::size_t batch = 50) {
  for (std::size_t i = begin; i < end; i += batch) {
    std::string body;
    for (std::size_t j = i; j < std::min(end, i + batch); ++j) body += lines[j] + "\n";
    auto response = client.Post("/api/v1/steps", body, "application/x-ndjson");
    ASSERT_EQ(response.status, 200) << response.body;
  }
}

inline nlohmann::json Alerts(client::HttpClient& client, const std::string& run) {
  auto response = client.Get("/api/v1/alerts?run=" + run + "&limit=10000");
  EXPECT_EQ(response.status, 200) << response.body;
  return nlohmann::json::parse(response.body).at("alerts");
}

// What the server shows for a run: the alerts without ids and wall-clock times.
inline std::vector<std::string> Comparable(const nlohmann::json& alerts) {
  std::vector<std::string> out;
  for (const nlohmann::json& a : alerts) {
    out.push_back(a["kind"].get<std::string>() + " " + a["severity"].get<std::string>() + " " +
                  a["state"].get<std::string>() + " " + a["first_step"].dump() + "-" +
                  a["last_step"].dump() + " " + a["message"].get<std::string>());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The alerts of one server on a new SQLite database at `db` that was sent each of `runs` whole, in
// batches of 50: what a test of interrupted, evicted or shared judgement expects.
inline std::map<std::string, std::vector<std::string>> AlertsOfOneServer(
    const std::filesystem::path& db, const std::vector<std::string>& runs) {
  ServerProcess server({.db = db});
  client::HttpClient client(server.url());
  std::map<std::string, std::vector<std::string>> out;
  for (const std::string& run : runs) {
    auto lines = Lines(run);
    Send(client, lines, 0, lines.size());
    out[run] = Comparable(Alerts(client, run));
  }
  return out;
}

}  // namespace lossguard::testing
