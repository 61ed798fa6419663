#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/batch_sender.h"
#include "cli/commands.h"
#include "lossguard/wire/http_client.h"
#include "lossguard/wire/record_codec.h"

namespace lossguard::cli {

int Replay(const ReplayOptions& options, std::ostream& out, std::ostream& err) {
  std::ifstream in(options.file);
  if (!in) {
    err << "lossguard replay: cannot open " << options.file << "\n";
    return 1;
  }
  wire::HttpClient client(options.server,
                          wire::HttpClientOptions{options.token, std::chrono::seconds(60)});
  SendTotals totals;
  std::string batch;
  std::size_t in_batch = 0;
  std::size_t line_number = 0;
  auto flush = [&]() -> bool {
    if (in_batch == 0) return true;
    std::string error = SendBatch(client, batch, options.retries, totals);
    if (!error.empty()) {
      err << "lossguard replay: batch ending at " << options.file << ":" << line_number
          << " was not stored: " << error << "\n";
      return false;
    }
    batch.clear();
    in_batch = 0;
    return true;
  };

  std::string line;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto record = wire::ParseRecordText(line, 0);
    if (!record) {
      err << "lossguard replay: " << options.file << ":" << line_number << ": "
          << wire::RecordError{std::nullopt, record.error().field, record.error().message}
                 .Describe()
          << "\n"
          << "  (" << totals.accepted
          << " records before this line were stored; nothing after it was sent)\n";
      return 1;
    }
    batch += line;
    batch += '\n';
    if (++in_batch == options.batch_size && !flush()) return 1;
  }
  if (!flush()) return 1;
  out << "replayed " << options.file << ": " << totals.accepted << " records in " << totals.batches
      << " batches (" << totals.duplicates << " duplicates, " << totals.replaced << " replaced)\n";
  return 0;
}

}  // namespace lossguard::cli
