#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace lossguard::collector {

// An append-only NDJSON file of records not yet delivered, with the byte offset of the first
// undelivered line kept beside it (`<path>.offset`, replaced atomically). It survives the
// trainer's restart: a new Spool on the same path resumes where the last one stopped. Not
// thread-safe (the sender thread owns it).
class Spool {
 public:
  // Opens or creates the spool; throws std::runtime_error naming the path on I/O failure.
  Spool(std::filesystem::path path, std::uint64_t max_bytes);

  // Appends lines (each without '\n'); returns how many fit under max_bytes (the rest are not
  // written: the caller counts them as dropped). Throws std::runtime_error on I/O failure.
  std::size_t Append(const std::vector<std::string>& lines);

  // Up to `max_lines` undelivered lines, oldest first, without consuming them.
  std::vector<std::string> Peek(std::size_t max_lines);
  // Marks the first `lines` undelivered lines as delivered (after the server acknowledged them).
  void Commit(std::size_t lines);

  bool empty() const { return offset_ >= size_; }
  std::uint64_t pending_bytes() const { return size_ - offset_; }

 private:
  void SaveOffset();
  void Reset();

  std::filesystem::path path_;
  std::filesystem::path offset_path_;
  std::uint64_t max_bytes_;
  std::uint64_t size_ = 0;                  // bytes in the file
  std::uint64_t offset_ = 0;                // first undelivered byte
  std::vector<std::uint64_t> peeked_ends_;  // end offsets of the lines Peek() returned
};

}  // namespace lossguard::collector
