#include "store/database.h"

#include <spdlog/spdlog.h>

namespace lossguard::store {

std::string SqlFirstLine(std::string_view sql) {
  std::size_t start = sql.find_first_not_of(" \n\t");
  if (start == std::string_view::npos) return "";
  std::string_view rest = sql.substr(start);
  return std::string(rest.substr(0, std::min(rest.find('\n'), std::size_t{120})));
}

std::string SqlValuesRows(std::size_t rows, std::size_t columns) {
  std::string values;
  for (std::size_t row = 0; row < rows; ++row) {
    values += row == 0 ? "(" : ", (";
    for (std::size_t column = 0; column < columns; ++column) values += column == 0 ? "?" : ", ?";
    values += ")";
  }
  return values;
}

Database::KeptStatement& Database::TakeCached(std::string_view sql) {
  auto it = cached_.find(sql);
  if (it == cached_.end())
    it = cached_.emplace(std::string(sql), KeptStatement{Prepare(sql)}).first;
  KeptStatement& kept = it->second;
  if (kept.in_use) {
    throw std::logic_error("a cached statement is used twice at once: " + SqlFirstLine(sql));
  }
  kept.statement->Reset();
  kept.in_use = true;
  return kept;
}

Transaction::Transaction(Database& db) : db_(db) { db_.BeginWrite(); }

Transaction::~Transaction() {
  if (done_) return;
  try {
    db_.Exec("ROLLBACK");
  } catch (const StorageError& e) {
    // A failed statement (or a lost connection) may already have ended the transaction; rolled back
    // is the outcome we want either way.
    spdlog::warn("rollback: {}", e.what());
  }
}

void Transaction::Commit() {
  db_.Exec("COMMIT");
  done_ = true;
}

ReadTransaction::ReadTransaction(Database& db) : db_(db) { db_.BeginSnapshot(); }

ReadTransaction::~ReadTransaction() {
  try {
    db_.Exec("ROLLBACK");  // nothing was written: ending it is all there is to do
  } catch (const StorageError& e) {
    spdlog::warn("ending a read transaction: {}", e.what());
  }
}

}  // namespace lossguard::store
