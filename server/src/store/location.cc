#include "store/location.h"

#include <libpq-fe.h>

namespace lossguard::store {

namespace {
bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// libpq's own parser: what it would connect with, so that what is refused here is exactly what
// libpq would have read as a password.
Result<bool, std::string> UriHasPassword(const std::string& uri) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(uri.c_str(), &error);
  if (options == nullptr) {
    std::string message = error != nullptr ? error : "cannot be parsed";
    PQfreemem(error);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return "--db " + RedactPostgresUri(uri) + ": " + message;
  }
  bool has_password = false;
  for (PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
    if (std::string_view(option->keyword) == "password" && option->val != nullptr &&
        *option->val != '\0') {
      has_password = true;
    }
  }
  PQconninfoFree(options);
  return has_password;
}
}  // namespace

std::string StoreLocation::Describe() const {
  return backend == Backend::kSqlite ? sqlite_path.string() : RedactPostgresUri(postgres.uri);
}

Result<StoreLocation, std::string> ParseStoreLocation(std::string_view text) {
  if (StartsWith(text, "postgresql://") || StartsWith(text, "postgres://")) {
    StoreLocation location;
    location.backend = Backend::kPostgres;
    location.postgres.uri = std::string(text);
    auto has_password = UriHasPassword(location.postgres.uri);
    if (!has_password) return has_password.error();
    if (has_password.value()) {
      return "--db " + RedactPostgresUri(text) +
             ": the URI holds a password, which every user of this machine can read in the "
             "process list; remove it and use --db-password-file, PGPASSWORD or ~/.pgpass";
    }
    return location;
  }
  std::string_view path = StartsWith(text, "sqlite:") ? text.substr(7) : text;
  if (path.empty()) return std::string("--db: empty SQLite path");
  return StoreLocation::Sqlite(std::filesystem::path(path));
}

}  // namespace lossguard::store
