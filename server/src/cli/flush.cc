// lossguard flush: delivers what trainers left in their spools (the server was down when they
// ended, or a trainer will never restart to replay it).
#include <chrono>

#include "cli/batch_sender.h"
#include "cli/commands.h"
#include "lossguard/wire/http_client.h"
#include "lossguard/wire/spool.h"

namespace lossguard::cli {

namespace {

// Sends one spool in batches, committing each batch only once the server stored it, so that an
// interrupted flush resumes where it stopped and nothing is sent twice. Returns "" or why it
// stopped.
std::string FlushSpool(const std::filesystem::path& path, const FlushOptions& options,
                       wire::HttpClient& client, SendTotals& totals) {
  wire::Spool spool(path, /*max_bytes=*/~std::uint64_t{0});
  while (!spool.empty()) {
    std::vector<std::string> lines = spool.Peek(options.batch_size);
    if (lines.empty()) break;  // only a torn last line: a trainer was killed mid-append
    std::string body;
    for (const std::string& line : lines) body += line + "\n";
    std::string error = SendBatch(client, body, options.retries, totals);
    if (!error.empty()) return error;
    spool.Commit(lines.size());
  }
  return "";
}

}  // namespace

int Flush(const FlushOptions& options, std::ostream& out, std::ostream& err) {
  std::error_code ec;
  if (!std::filesystem::is_directory(options.dir, ec)) {
    err << "lossguard flush: " << options.dir << " is not a directory\n";
    return 1;
  }
  std::vector<std::filesystem::path> spools;
  try {
    spools = wire::FindSpools(options.dir);
  } catch (const std::filesystem::filesystem_error& e) {
    err << "lossguard flush: cannot read " << options.dir << ": " << e.what() << "\n";
    return 1;
  }
  wire::HttpClient client(options.server,
                          wire::HttpClientOptions{options.token, std::chrono::seconds(60)});
  int failed = 0;
  SendTotals all;
  for (const std::filesystem::path& path : spools) {
    SendTotals totals;
    std::string error;
    try {
      error = FlushSpool(path, options, client, totals);
    } catch (const wire::SpoolInUse& e) {
      err << "lossguard flush: skipped " << path.string()
          << ": open in another process (its trainer delivers it)\n";
      ++failed;
      continue;
    } catch (const std::exception& e) {
      error = e.what();
    }
    all.accepted += totals.accepted;
    all.duplicates += totals.duplicates;
    all.replaced += totals.replaced;
    all.batches += totals.batches;
    if (!error.empty()) {
      err << "lossguard flush: " << path.string() << ": stopped after " << totals.accepted
          << " records: " << error << " (the rest stays in the spool)\n";
      ++failed;
      continue;
    }
    out << "flushed " << path.string() << ": " << totals.accepted << " records ("
        << totals.duplicates << " duplicates, " << totals.replaced << " replaced)\n";
  }
  out << spools.size() << " spools, " << all.accepted << " records sent in " << all.batches
      << " batches" << (failed ? ", " + std::to_string(failed) + " spools not (fully) flushed" : "")
      << "\n";
  return failed ? 1 : 0;
}

}  // namespace lossguard::cli
