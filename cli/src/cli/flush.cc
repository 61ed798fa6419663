// lossguard flush: delivers what trainers left in their spools (the server was down when they
// ended, or a trainer will never restart to replay it).
#include <chrono>

#include "cli/batch_sender.h"
#include "cli/commands.h"
#include "lossguard/client/ingest_client.h"
#include "lossguard/client/spool.h"

namespace lossguard::cli {

namespace {

// Sends one spool in batches, committing each batch only once the server stored it, so that an
// interrupted flush resumes where it stopped and nothing is sent twice. The error says why it
// stopped.
Status FlushSpool(const std::filesystem::path& path, const FlushOptions& options,
                  client::IngestClient& client, SendTotals& totals) {
  client::Spool spool(path, /*max_bytes=*/~std::uint64_t{0});
  while (!spool.empty()) {
    std::vector<std::string> lines = spool.Peek(options.batch_size);
    if (lines.empty()) break;  // only a torn last line: a trainer was killed mid-append
    if (Status sent = SendBatch(client, lines, options.retries, totals); !sent) return sent;
    spool.Commit(lines.size());
  }
  return Status::Ok();
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
    spools = client::FindSpools(options.dir);
  } catch (const std::filesystem::filesystem_error& e) {
    err << "lossguard flush: cannot read " << options.dir << ": " << e.what() << "\n";
    return 1;
  }
  client::IngestClient client(options.server.url, options.server.ClientOptions(kSendTimeout));
  int failed = 0;
  SendTotals all;
  for (const std::filesystem::path& path : spools) {
    SendTotals totals;
    Status flushed = Status::Ok();
    try {
      flushed = FlushSpool(path, options, client, totals);
    } catch (const client::SpoolInUse& e) {
      err << "lossguard flush: skipped " << path.string()
          << ": open in another process (its trainer delivers it)\n";
      ++failed;
      continue;
    } catch (const std::exception& e) {
      flushed = Status::Error(e.what());
    }
    all.accepted += totals.accepted;
    all.duplicates += totals.duplicates;
    all.replaced += totals.replaced;
    all.batches += totals.batches;
    if (!flushed) {
      err << "lossguard flush: " << path.string() << ": stopped after " << totals.accepted
          << " records: " << flushed.error() << " (the rest stays in the spool)\n";
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
