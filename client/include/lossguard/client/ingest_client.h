#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lossguard/base/result.h"
#include "lossguard/client/http_client.h"

namespace lossguard::client {

// An open alert episode of a run at warning or critical severity, as an acknowledgement reports it.
struct OpenEpisode {
  std::int64_t id = 0;               // the alert id (GET /api/v1/alerts)
  std::string kind;                  // "loss_scale_mismatch", ...
  std::string severity;              // "warning" | "critical"
  std::optional<std::int64_t> rank;  // nullopt: judged across ranks
  std::int64_t first_step = 0;
  std::int64_t last_step = 0;
  bool acked = false;  // a person acknowledged it
  std::string message;
};

// A run's verdicts after a batch: the open episodes once the batch was judged. The server judges a
// step once its ranks are in (or max_wait_steps later), so `through_step` (the batch's highest step
// of the run) can be ahead of what the episodes reflect by that wait.
struct RunVerdicts {
  std::int64_t through_step = 0;
  std::vector<OpenEpisode> open;
};

// What the server stored of an accepted batch: every record of it (accepted, all durable now), of
// which `duplicates` were already stored identically under their (run, step, rank) and `replaced`
// overwrote a different record; the rest are new.
struct IngestAck {
  std::int64_t accepted = 0;
  std::int64_t duplicates = 0;
  std::int64_t replaced = 0;
  // Per run of the batch; nullopt from a server that does not report verdicts (older ones).
  std::optional<std::map<std::string, RunVerdicts>> verdicts;
};

// Why a batch was not stored. Nothing of a refused batch is stored (batches are atomic).
struct IngestRefusal {
  // 0 for a transport failure (cannot connect, send or read; timeout), else the HTTP status.
  unsigned status = 0;
  // For 400: the 0-based index in the batch of the record the server found invalid, when it named
  // one. Sending the batch again without it can succeed.
  std::optional<std::size_t> record;
  std::string message;  // the server's error message, or the transport error

  // A record is invalid: the same batch can never be stored.
  bool invalid_batch() const { return status == 400; }
  // The server was unreachable or failed (transport, 5xx, 401/403 until a token is fixed, 413 if
  // the server's limit changes...): the same batch may be stored later.
  bool retryable() const { return status != 400; }
  // "HTTP 503: the server is shutting down" / the transport error.
  std::string Describe() const;
};

// The one client for POST /api/v1/steps: the collector's sender, `lossguard replay`, `import` and
// `flush` all send through it, and read the server's answer (and its error body) only here.
// Not thread-safe (one per thread), like the HttpClient it keeps alive between batches.
class IngestClient {
 public:
  // Throws std::invalid_argument for a malformed server_url.
  explicit IngestClient(std::string_view server_url, HttpClientOptions options = {});

  // Sends an NDJSON body (one wire-format-v1 record per line).
  Result<IngestAck, IngestRefusal> Post(std::string ndjson_body);
  // Sends lines without their '\n', one record each.
  Result<IngestAck, IngestRefusal> Post(const std::vector<std::string>& lines);

 private:
  HttpClient http_;
};

}  // namespace lossguard::client
