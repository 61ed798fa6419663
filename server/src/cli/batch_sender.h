#pragma once

#include <cstdint>
#include <string>

#include "lossguard/wire/http_client.h"

namespace lossguard::cli {

// What the server said of the batches sent so far.
struct SendTotals {
  std::int64_t accepted = 0, duplicates = 0, replaced = 0, batches = 0;
};

// POSTs one NDJSON body to /api/v1/steps, retrying transport failures (a restarting server) up to
// `retries` times with backoff; a refusal (4xx/5xx) is final. Returns "" when stored, else why not.
std::string SendBatch(wire::HttpClient& client, const std::string& body, int retries,
                      SendTotals& totals);

}  // namespace lossguard::cli
