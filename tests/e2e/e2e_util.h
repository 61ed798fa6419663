#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>

#include "lossguard/client/http_client.h"

namespace lossguard::testing {

// A valid v1 record as JSON; tests add what they need.
inline nlohmann::json RecordJson(const std::string& run, std::int64_t step, double loss = 2.0) {
  return {{"run", run},   {"step", step},  {"ga_steps", 4}, {"micro_batch_size", 2},
          {"loss", loss}, {"tokens", 1000}};
}

// NDJSON of steps [first, first + count) of one run.
inline std::string NdjsonSteps(const std::string& run, std::int64_t first, std::int64_t count) {
  std::string out;
  for (std::int64_t step = first; step < first + count; ++step) {
    out += RecordJson(run, step, 2.0 + 1.0 / static_cast<double>(step + 1)).dump();
    out += '\n';
  }
  return out;
}

// A response's body as JSON; throws if it is not JSON.
inline nlohmann::json Body(const client::HttpResponse& response) {
  return nlohmann::json::parse(response.body);
}

// The whole file; throws if it cannot be opened.
inline std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace lossguard::testing
