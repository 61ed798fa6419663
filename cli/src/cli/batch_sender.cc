#include "cli/batch_sender.h"

#include <chrono>
#include <thread>

namespace lossguard::cli {

Status SendBatch(client::IngestClient& client, const std::vector<std::string>& lines, int retries,
                 SendTotals& totals) {
  for (int attempt = 0;; ++attempt) {
    auto sent = client.Post(lines);
    if (sent.ok()) {
      totals.accepted += sent.value().accepted;
      totals.duplicates += sent.value().duplicates;
      totals.replaced += sent.value().replaced;
      ++totals.batches;
      return Status::Ok();
    }
    const client::IngestRefusal& refusal = sent.error();
    if (refusal.status != 0) {
      return Status::Error("server answered " + std::to_string(refusal.status) + ": " +
                           refusal.message);
    }
    if (attempt >= retries) return Status::Error(refusal.message);
    std::this_thread::sleep_for(std::chrono::milliseconds(200) * (1 << attempt));
  }
}

}  // namespace lossguard::cli
