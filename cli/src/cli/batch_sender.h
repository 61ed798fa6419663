#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lossguard/base/result.h"
#include "lossguard/client/ingest_client.h"

namespace lossguard::cli {

// What the server said of the batches sent so far.
struct SendTotals {
  std::int64_t accepted = 0, duplicates = 0, replaced = 0, batches = 0;
};

// POSTs one batch of records (NDJSON lines without their '\n'), retrying transport failures (a
// restarting server) up to `retries` times with backoff; an answer other than 200 is final. The
// error says what the server answered.
Status SendBatch(client::IngestClient& client, const std::vector<std::string>& lines, int retries,
                 SendTotals& totals);

}  // namespace lossguard::cli
