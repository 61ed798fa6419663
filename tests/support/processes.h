#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lossguard::testing {

// The real lossguard-server binary, started on an ephemeral loopback port with its own database.
// The constructor returns once the server has printed its listening line (or throws with the
// server's stderr). The destructor kills it (SIGKILL) if it is still running.
class ServerProcess {
 public:
  struct Options {
    std::filesystem::path db;
    std::string listen = "127.0.0.1:0";
    std::vector<std::string> extra_args;
    std::map<std::string, std::string> env;  // added to the environment
    std::size_t file_limit = 0;              // RLIMIT_NOFILE (soft and hard) when not 0
    std::filesystem::path stderr_log;        // default: beside the database
  };

  explicit ServerProcess(Options options);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;

  const std::string& url() const { return url_; }
  pid_t pid() const { return pid_; }

  // Sends `signal` and waits up to `timeout` for the exit; returns the exit code, or -signal if the
  // process died of a signal; throws if it did not exit in time.
  int Stop(int signal, std::chrono::milliseconds timeout);
  std::string StderrText() const;

 private:
  pid_t pid_ = -1;
  std::string url_;
  std::filesystem::path stderr_path_;
};

// Any program running in the background (e.g. a real Prometheus server), its stdout and stderr in a
// log file; killed (SIGKILL) on destruction.
class BackgroundProcess {
 public:
  explicit BackgroundProcess(const std::vector<std::string>& argv);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  bool Running();
  std::string LogText() const;

 private:
  pid_t pid_ = -1;
  std::filesystem::path log_path_;
};

// A TCP port of 127.0.0.1 that was free a moment ago (bound, read and closed), for a program that
// must be told its port.
int FreeLoopbackPort();

// In a forked child: replaces it with argv[0] (a path), or reports why not on stderr and exits 127.
[[noreturn]] void ExecOrExit(const std::vector<std::string>& argv);

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a program to completion (bounded by `timeout`, then SIGKILL) and captures its output.
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::map<std::string, std::string>& env = {});

// The lossguard CLI built with the tests, run with `args` (as RunCommand, 2 minutes at most).
CommandResult RunCli(std::vector<std::string> args,
                     const std::map<std::string, std::string>& env = {});

}  // namespace lossguard::testing
