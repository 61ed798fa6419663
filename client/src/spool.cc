#include "lossguard/client/spool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace lossguard::client {

namespace {
[[noreturn]] void Fail(const std::string& what, const std::filesystem::path& path) {
  throw std::runtime_error("spool " + path.string() + ": " + what + ": " + std::strerror(errno));
}
// Whole lines between byte offsets `from` and `to` of the file.
std::uint64_t CountLines(const std::filesystem::path& path, std::uint64_t from, std::uint64_t to) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot open for reading", path);
  in.seekg(static_cast<std::streamoff>(from));
  std::uint64_t lines = 0;
  std::vector<char> buffer(1 << 16);
  while (from < to && in) {
    in.read(buffer.data(),
            static_cast<std::streamsize>(std::min<std::uint64_t>(buffer.size(), to - from)));
    const auto got = static_cast<std::size_t>(in.gcount());
    lines += static_cast<std::uint64_t>(std::count(buffer.data(), buffer.data() + got, '\n'));
    from += got;
    if (got == 0) break;
  }
  return lines;
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
  try {
    Open();
  } catch (...) {
    close(lock_fd_);  // no destructor runs for a half-built Spool: release the lock here
    throw;
  }
}

void Spool::Open() {
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
  if (empty()) {
    Reset();
  } else {
    pending_lines_ = CountLines(path_, offset_, size_);
  }
}

Spool::~Spool() {
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the lock
}

std::size_t Spool::Append(const std::vector<std::string>& lines) {
  std::string block;
  std::size_t fitting = 0;
  for (const std::string& line : lines) {
    if (size_ + block.size() + line.size() + 1 > max_bytes_) break;
    (block += line) += '\n';
    ++fitting;
  }
  if (block.empty()) return 0;
  const int fd = open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) Fail("cannot open for append", path_);
  std::size_t done = 0;
  while (done < block.size()) {
    const ssize_t n = write(fd, block.data() + done, block.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      // A short block would leave a torn last line and a size_ that no longer matches the file:
      // take the partial block back off (best effort: on a full disk truncating frees the space),
      // so that the spool holds whole lines only and the caller still has every line.
      const int error = errno;
      if (ftruncate(fd, static_cast<off_t>(size_)) != 0) {
        // Nothing more to do: a torn line is skipped as an append in progress by Peek.
      }
      close(fd);
      errno = error == 0 ? ENOSPC : error;
      Fail("write failed", path_);
    }
  }
  close(fd);
  size_ += block.size();
  pending_lines_ += fitting;
  return fitting;
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
  pending_lines_ -= std::min<std::uint64_t>(lines, pending_lines_);
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
  pending_lines_ = 0;
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

}  // namespace lossguard::client
