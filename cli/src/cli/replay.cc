#include <chrono>
#include <fstream>

#include "cli/batch_sender.h"
#include "cli/commands.h"
#include "cli/ndjson_records.h"
#include "lossguard/client/ingest_client.h"

namespace lossguard::cli {

int Replay(const ReplayOptions& options, std::ostream& out, std::ostream& err) {
  std::ifstream in(options.file);
  if (!in) {
    err << "lossguard replay: cannot open " << options.file << "\n";
    return 1;
  }
  client::IngestClient client(options.server.url, options.server.ClientOptions(kSendTimeout));
  SendTotals totals;
  std::vector<std::string> batch;
  std::size_t line_number = 0;
  auto flush = [&]() -> bool {
    if (batch.empty()) return true;
    Status sent = SendBatch(client, batch, options.retries, totals);
    if (!sent) {
      err << "lossguard replay: batch ending at " << options.file << ":" << line_number
          << " was not stored: " << sent.error() << "\n";
      return false;
    }
    batch.clear();
    return true;
  };

  bool refused = false;
  Status read = ForEachRecordLine(
      in, options.file, [&](const std::string& line, wire::StepRecord&, std::size_t number) {
        line_number = number;
        batch.push_back(line);
        refused = batch.size() == options.batch_size && !flush();
        return !refused;
      });
  if (refused) return 1;
  if (!read) {
    err << "lossguard replay: " << read.error() << "\n"
        << "  (" << totals.accepted
        << " records before this line were stored; nothing after it was sent)\n";
    return 1;
  }
  if (!flush()) return 1;
  out << "replayed " << options.file << ": " << totals.accepted << " records in " << totals.batches
      << " batches (" << totals.duplicates << " duplicates, " << totals.replaced << " replaced)\n";
  return 0;
}

}  // namespace lossguard::cli
