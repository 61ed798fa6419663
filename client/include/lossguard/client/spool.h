#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lossguard::client {

// The spool is already open in another process (a trainer still running, or `lossguard flush`).
class SpoolInUse : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An append-only NDJSON file of records not yet delivered, with the byte offset of the first
// undelivered line kept beside it (`<path>.offset`, replaced atomically). It survives the
// trainer's restart: a new Spool on the same path resumes where the last one stopped, and
// `lossguard flush` delivers what a trainer that never restarts left behind. One process at a time:
// the spool holds an exclusive lock on `<path>.lock` while open (released when the process ends,
// however it ends). Not thread-safe (one thread owns it).
class Spool {
 public:
  // Opens or creates the spool (and its directory); throws SpoolInUse when another process has it
  // open, std::runtime_error naming the path on I/O failure (std::filesystem::filesystem_error is
  // one). Every member below throws std::runtime_error on I/O failure too.
  Spool(std::filesystem::path path, std::uint64_t max_bytes);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends lines (each without '\n'); returns how many fit under max_bytes (the rest are not
  // written: the caller counts them as dropped). Throws std::runtime_error on I/O failure, having
  // written none of them (a partial write is truncated away), so the caller still owns them all.
  std::size_t Append(const std::vector<std::string>& lines);

  // Up to `max_lines` undelivered lines, oldest first, without consuming them.
  std::vector<std::string> Peek(std::size_t max_lines);
  // Marks the first `lines` undelivered lines as delivered (after the server acknowledged them).
  void Commit(std::size_t lines);

  bool empty() const { return offset_ >= size_; }
  std::uint64_t pending_bytes() const { return size_ - offset_; }
  // Undelivered lines (counted once on open, then kept up to date).
  std::uint64_t pending_lines() const { return pending_lines_; }

 private:
  void Open();  // everything after taking the lock
  void SaveOffset();
  void Reset();

  std::filesystem::path path_;
  std::filesystem::path offset_path_;
  std::uint64_t max_bytes_;
  std::uint64_t size_ = 0;    // bytes in the file
  std::uint64_t offset_ = 0;  // first undelivered byte
  std::uint64_t pending_lines_ = 0;
  std::vector<std::uint64_t> peeked_ends_;  // end offsets of the lines Peek() returned
  int lock_fd_ = -1;
};

// Where spools go when the trainer names none: $LOSSGUARD_SPOOL_DIR, else
// $XDG_STATE_HOME/lossguard/spool, else $HOME/.local/state/lossguard/spool, else
// /tmp/lossguard-spool-<uid>.
std::filesystem::path DefaultSpoolDir();

// The spool file of one rank of one run under `dir`: <dir>/<run>/rank-<rank>.ndjson.
std::filesystem::path SpoolPathFor(const std::filesystem::path& dir, const std::string& run,
                                   std::int64_t rank);

// Every spool file under `dir` (files named *.ndjson that have an .offset beside them), sorted.
std::vector<std::filesystem::path> FindSpools(const std::filesystem::path& dir);

}  // namespace lossguard::client
