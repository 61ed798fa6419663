// lossguard copy: a lossguard database to another location, through store::CopyDatabase.
#include "store/copy.h"

#include <chrono>

#include "cli/commands.h"
#include "store/database.h"
#include "token.h"

namespace lossguard::cli {

namespace {
// The location a --from/--to value names, with its password file read; nullopt after saying why.
std::optional<store::StoreLocation> Locate(const char* flag, const std::string& text,
                                           const std::optional<std::string>& password_file,
                                           std::ostream& err) {
  auto location = store::ParseStoreLocation(text);
  if (!location) {
    err << "lossguard copy: " << flag << ": " << location.error() << "\n";
    return std::nullopt;
  }
  if (password_file) {
    if (location.value().backend != store::Backend::kPostgres) {
      err << "lossguard copy: a password file is for a postgresql:// " << flag << "\n";
      return std::nullopt;
    }
    auto password = ReadSecretFile(std::string(flag) + "-password-file", *password_file);
    if (!password) {
      err << "lossguard copy: " << password.error() << "\n";
      return std::nullopt;
    }
    location.value().postgres.password = password.value().text;
  }
  return location.value();
}
}  // namespace

int Copy(const CopyOptions& options, std::ostream& out, std::ostream& err) {
  auto from = Locate("--from", options.from, options.from_password_file, err);
  auto to = Locate("--to", options.to, options.to_password_file, err);
  if (!from || !to) return 2;
  using Clock = std::chrono::steady_clock;
  auto last_report = Clock::now();
  store::CopyOptions copy;
  copy.chunk_rows = options.chunk_rows;
  copy.progress = [&](const std::string& table, std::int64_t rows) {
    if (Clock::now() - last_report < std::chrono::seconds(2)) return;
    last_report = Clock::now();
    out << "  " << table << ": " << rows << " rows so far\n" << std::flush;
  };
  out << "copying " << from->Describe() << " -> " << to->Describe() << "\n" << std::flush;
  try {
    const std::vector<store::TableCopy> tables = store::CopyDatabase(*from, *to, copy);
    for (const store::TableCopy& t : tables) {
      out << "  " << t.table << ": " << t.destination_rows << " rows, as in the source";
      if (t.already_there > 0) out << " (" << t.already_there << " were there from an earlier run)";
      out << "\n";
    }
    out << "done: " << to->Describe() << " holds everything " << from->Describe() << " does\n";
    return 0;
  } catch (const std::exception& e) {
    err << "lossguard copy: " << e.what()
        << "\nWhat was committed stays: run the same command again to resume.\n";
    return 1;
  }
}

}  // namespace lossguard::cli
