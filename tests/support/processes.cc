#include "support/processes.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace lossguard::testing {

namespace {

using Clock = std::chrono::steady_clock;

// fork + exec with stdout to a pipe (or, with stdout_to_file, to the stderr file too) and stderr
// to a file; returns the pid and the pipe's read end (-1 with stdout_to_file).
std::pair<pid_t, int> Spawn(const std::vector<std::string>& argv,
                            const std::map<std::string, std::string>& env,
                            const std::filesystem::path& stderr_path, bool stdout_to_file = false,
                            std::size_t file_limit = 0) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err >= 0) dup2(err, STDERR_FILENO);
    if (err >= 0 && stdout_to_file) dup2(err, STDOUT_FILENO);
    for (const auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
    if (file_limit > 0) {
      rlimit limit{file_limit, file_limit};
      setrlimit(RLIMIT_NOFILE, &limit);
    }
    ExecOrExit(argv);
  }
  close(pipe_fds[1]);
  if (stdout_to_file) {
    close(pipe_fds[0]);
    return {pid, -1};
  }
  return {pid, pipe_fds[0]};
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// Waits for the child, up to the deadline; nullopt if it is still running then.
std::optional<int> WaitUntil(pid_t pid, Clock::time_point deadline) {
  while (true) {
    int status = 0;
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::filesystem::path TempPath(const std::string& stem) {
  static int counter = 0;
  return std::filesystem::temp_directory_path() /
         (stem + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter) + ".log");
}

}  // namespace

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    throw std::runtime_error(std::string("no free loopback port: ") + std::strerror(errno));
  }
  close(fd);
  return ntohs(address.sin_port);
}

void ExecOrExit(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
  _exit(127);
}

ServerProcess::ServerProcess(Options options)
    : stderr_path_(options.stderr_log.empty()
                       ? std::filesystem::path(options.db.string() + ".stderr.log")
                       : options.stderr_log) {
  std::vector<std::string> argv = {LOSSGUARD_SERVER_BINARY, "--listen", options.listen, "--db",
                                   options.db.string()};
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  auto [pid, out_fd] = Spawn(argv, options.env, stderr_path_, false, options.file_limit);
  pid_ = pid;

  std::string out;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  constexpr std::string_view kPrefix = "listening on ";
  while (out.find('\n') == std::string::npos && Clock::now() < deadline) {
    pollfd fd{out_fd, POLLIN, 0};
    if (poll(&fd, 1, 100) <= 0) continue;
    char buffer[512];
    ssize_t n = read(out_fd, buffer, sizeof buffer);
    if (n <= 0) break;  // the server exited before listening
    out.append(buffer, static_cast<std::size_t>(n));
  }
  close(out_fd);
  std::size_t at = out.find(kPrefix);
  if (at == std::string::npos) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    throw std::runtime_error("lossguard-server did not start; stdout: " + out +
                             "; stderr: " + StderrText());
  }
  url_ = out.substr(at + kPrefix.size(), out.find('\n', at) - at - kPrefix.size());
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ignored;  // a leftover log in /tmp is harmless
  std::filesystem::remove(stderr_path_, ignored);
}

int ServerProcess::Stop(int signal, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) throw std::logic_error("server already stopped");
  kill(pid_, signal);
  std::optional<int> code = WaitUntil(pid_, Clock::now() + timeout);
  if (!code) {
    // Its signal state says whether the signal is pending (blocked, or never handled) or was taken.
    std::string signals;
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("Sig", 0) == 0 || line.rfind("ShdPnd", 0) == 0) signals += line + "; ";
    }
    std::error_code ec;
    for (const auto& task :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/task", ec)) {
      std::ifstream wchan(task.path() / "wchan");
      std::string waiting;
      std::getline(wchan, waiting);
      signals += "thread " + task.path().filename().string() + " waits in " + waiting + "; ";
    }
    throw std::runtime_error("lossguard-server did not exit within the timeout after signal " +
                             std::to_string(signal) + " (" + signals +
                             "); its stderr: " + StderrText());
  }
  pid_ = -1;
  return *code;
}

std::string ServerProcess::StderrText() const { return ReadAll(stderr_path_); }

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv)
    : log_path_(TempPath("lossguard-bg")) {
  pid_ = Spawn(argv, {}, log_path_, /*stdout_to_file=*/true).first;
}

BackgroundProcess::~BackgroundProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ignored;
  std::filesystem::remove(log_path_, ignored);
}

bool BackgroundProcess::Running() {
  if (pid_ <= 0) return false;
  if (waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
  return pid_ > 0;
}

std::string BackgroundProcess::LogText() const { return ReadAll(log_path_); }

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::map<std::string, std::string>& env) {
  std::filesystem::path err_path = TempPath("lossguard-cmd-err");
  auto [pid, out_fd] = Spawn(argv, env, err_path);
  CommandResult result;
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd fd{out_fd, POLLIN, 0};
    if (poll(&fd, 1, 50) <= 0) continue;
    char buffer[4096];
    ssize_t n = read(out_fd, buffer, sizeof buffer);
    if (n <= 0) break;  // EOF: the program closed stdout (exited)
    result.out.append(buffer, static_cast<std::size_t>(n));
  }
  close(out_fd);
  std::optional<int> code = WaitUntil(pid, deadline);
  if (!code) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    result.exit_code = -SIGKILL;
  } else {
    result.exit_code = *code;
  }
  result.err = ReadAll(err_path);
  std::error_code ignored;
  std::filesystem::remove(err_path, ignored);
  return result;
}

CommandResult RunCli(std::vector<std::string> args, const std::map<std::string, std::string>& env) {
  args.insert(args.begin(), LOSSGUARD_CLI_BINARY);
  return RunCommand(args, std::chrono::minutes(2), env);
}

}  // namespace lossguard::testing
