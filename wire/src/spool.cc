#include "lossguard/wire/spool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace lossguard::wire {

namespace {
[[noreturn]] void Fail(const std::string& what, const std::filesystem::path& path) {
  throw std::runtime_error("spool " + path.string() + ": " + what + ": " + std::strerror(errno));
}
}  // namespace

Spool::Spool(std::filesystem::path path, std::uint64_t max_bytes)
    : path_(std::move(path)), offset_path_(path_.string() + ".offset"), max_bytes_(max_bytes) {
  std::error_code ec;
  if (!path_.parent_path().empty()) {
    std::filesystem::create_directories(path_.parent_path(), ec);
    if (ec) {
      throw std::runtime_error("spool " + path_.string() +
                               ": cannot create its directory: " + ec.message());
    }
  }
  const std::string lock_path = path_.string() + ".lock";
  lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) Fail("cannot open lock file", lock_path);
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    close(lock_fd_);
    lock_fd_ = -1;
    if (error == EWOULDBLOCK) {
      throw SpoolInUse("spool " + path_.string() +
                       " is open in another process (a trainer still running, or lossguard flush)");
    }
    errno = error;
    Fail("cannot lock", lock_path);
  }
  {
    std::ofstream touch(path_, std::ios::app);
    if (!touch) Fail("cannot create", path_);
  }
  size_ = std::filesystem::file_size(path_);
  std::ifstream offset_file(offset_path_);
  if (offset_file >> offset_) {
    // A torn write of the spool (trainer killed mid-append) can leave the offset past the end.
    if (offset_ > size_) offset_ = size_;
  } else {
    offset_ = 0;
  }
  if (empty()) Reset();
}

Spool::~Spool() {
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the lock
}

std::size_t Spool::Append(const std::vector<std::string>& lines) {
  std::ofstream out(path_, std::ios::app | std::ios::binary);
  if (!out) Fail("cannot open for append", path_);
  std::size_t written = 0;
  for (const std::string& line : lines) {
    if (size_ + line.size() + 1 > max_bytes_) break;
    out << line << '\n';
    size_ += line.size() + 1;
    ++written;
  }
  out.flush();
  if (!out) Fail("write failed", path_);
  return written;
}

std::vector<std::string> Spool::Peek(std::size_t max_lines) {
  std::vector<std::string> lines;
  peeked_ends_.clear();
  std::ifstream in(path_, std::ios::binary);
  if (!in) Fail("cannot open for reading", path_);
  in.seekg(static_cast<std::streamoff>(offset_));
  std::uint64_t position = offset_;
  std::string line;
  while (lines.size() < max_lines && position < size_ && std::getline(in, line)) {
    position += line.size() + 1;
    if (position > size_) break;  // a line without its newline: an append still in progress
    peeked_ends_.push_back(position);
    lines.push_back(std::move(line));
  }
  return lines;
}

void Spool::Commit(std::size_t lines) {
  if (lines == 0) return;
  if (lines > peeked_ends_.size()) throw std::logic_error("Spool::Commit of lines never peeked");
  offset_ = peeked_ends_[lines - 1];
  peeked_ends_.clear();
  if (empty()) {
    Reset();
  } else {
    SaveOffset();
  }
}

void Spool::SaveOffset() {
  std::filesystem::path temp = offset_path_.string() + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << offset_ << '\n';
    out.flush();
    if (!out) Fail("cannot write offset", temp);
  }
  std::filesystem::rename(temp, offset_path_);
}

// Everything delivered: start the file over, so the spool does not grow without bound.
void Spool::Reset() {
  {
    std::ofstream truncate(path_, std::ios::trunc);
    if (!truncate) Fail("cannot truncate", path_);
  }
  size_ = offset_ = 0;
  SaveOffset();
}

std::filesystem::path DefaultSpoolDir() {
  auto env = [](const char* name) -> std::string {
    const char* value = std::getenv(name);
    return value != nullptr ? value : "";
  };
  if (std::string dir = env("LOSSGUARD_SPOOL_DIR"); !dir.empty()) return dir;
  if (std::string state = env("XDG_STATE_HOME"); !state.empty())
    return std::filesystem::path(state) / "lossguard" / "spool";
  if (std::string home = env("HOME"); !home.empty())
    return std::filesystem::path(home) / ".local" / "state" / "lossguard" / "spool";
  return std::filesystem::temp_directory_path() / ("lossguard-spool-" + std::to_string(getuid()));
}

std::filesystem::path SpoolPathFor(const std::filesystem::path& dir, const std::string& run,
                                   std::int64_t rank) {
  return dir / run / ("rank-" + std::to_string(rank) + ".ndjson");
}

std::vector<std::filesystem::path> FindSpools(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> spools;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    const std::filesystem::path& path = entry.path();
    if (entry.is_regular_file() && path.extension() == ".ndjson" &&
        std::filesystem::exists(path.string() + ".offset")) {
      spools.push_back(path);
    }
  }
  std::sort(spools.begin(), spools.end());
  return spools;
}

}  // namespace lossguard::wire
