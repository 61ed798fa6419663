#include "support/postgres_server.h"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/processes.h"

namespace lossguard::testing {

namespace {

// Debian installs each major version under /usr/lib/postgresql/N/bin; the newest present wins.
// LOSSGUARD_PG_BINDIR overrides.
std::filesystem::path FindBinaries() {
  if (const char* dir = std::getenv("LOSSGUARD_PG_BINDIR")) return dir;
  std::vector<std::filesystem::path> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    if (std::filesystem::exists(entry.path() / "bin/postgres"))
      found.push_back(entry.path() / "bin");
  }
  if (found.empty()) {
    throw std::runtime_error(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): run "
        "scripts/setup.sh, or apt install postgresql");
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return std::stoi(a.parent_path().filename().string()) <
           std::stoi(b.parent_path().filename().string());
  });
  return found.back();
}

// The unprivileged user PostgreSQL runs as when the tests run as root.
const passwd* Nobody() {
  const passwd* user = getpwnam("nobody");
  if (user == nullptr) throw std::runtime_error("running as root, but there is no user 'nobody'");
  return user;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  const passwd* user = geteuid() == 0 ? Nobody() : nullptr;
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      dup2(out, STDOUT_FILENO);
      dup2(out, STDERR_FILENO);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (user != nullptr &&
        (setgroups(0, nullptr) != 0 || setgid(user->pw_gid) != 0 || setuid(user->pw_uid) != 0)) {
      std::fprintf(stderr, "cannot become nobody: %s\n", std::strerror(errno));
      _exit(126);
    }
    // A test process that dies without its destructors (a ctest timeout, a kill) takes its
    // PostgreSQL down with it (SIGQUIT: immediate shutdown). Set after setuid, which clears it.
    prctl(PR_SET_PDEATHSIG, SIGQUIT);
    ExecOrExit(argv);
  }
  return pid;
}

int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string Conninfo(int port, const std::string& database) {
  return "host=127.0.0.1 port=" + std::to_string(port) + " user=lossguard dbname=" + database +
         " connect_timeout=5";
}

}  // namespace

PostgresServer::PostgresServer(Options options)
    : bin_(FindBinaries()), options_(options), port_(FreeLoopbackPort()) {
  char pattern[] = "/tmp/lossguard-pg-XXXXXX";
  if (mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = pattern;
  if (geteuid() == 0 && chown(dir_.c_str(), Nobody()->pw_uid, Nobody()->pw_gid) != 0) {
    throw std::runtime_error("chown " + dir_.string() + ": " + std::strerror(errno));
  }
  const int initdb =
      Wait(Spawn({(bin_ / "initdb").string(), "-D", (dir_ / "data").string(), "-U", "lossguard",
                  "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"},
                 dir_ / "initdb.log"));
  if (initdb != 0) {
    throw std::runtime_error("initdb exited with " + std::to_string(initdb) + ":\n" + LogText());
  }
  Start();
}

PostgresServer::~PostgresServer() {
  try {
    if (running()) Stop(SIGINT);
  } catch (const std::exception&) {
    // Nothing to do in a destructor: the directory goes regardless.
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

PostgresServer& PostgresServer::Shared() {
  static PostgresServer server;
  return server;
}

void PostgresServer::Start() {
  pid_ = Spawn({(bin_ / "postgres").string(), "-D", (dir_ / "data").string(), "-p",
                std::to_string(port_), "-h", "127.0.0.1", "-k", dir_.string(), "-c",
                std::string("fsync=") + (options_.fsync ? "on" : "off"), "-c",
                "max_connections=200", "-c", "log_min_messages=warning"},
               dir_ / "server.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (PQping(Conninfo(port_, "postgres").c_str()) != PQPING_OK) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("postgres exited at start:\n" + LogText());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("postgres did not accept connections within 60 s:\n" + LogText());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void PostgresServer::Stop(int signal) {
  if (!running()) return;
  kill(pid_, signal);
  Wait(pid_);
  pid_ = -1;
}

std::string PostgresServer::CreateDatabase(const std::string& name) {
  PGconn* conn = PQconnectdb(Conninfo(port_, "postgres").c_str());
  PGresult* result = PQexec(conn, ("CREATE DATABASE \"" + name + "\"").c_str());
  const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
  std::string error = PQerrorMessage(conn);
  PQclear(result);
  PQfinish(conn);
  if (!ok) throw std::runtime_error("CREATE DATABASE " + name + ": " + error);
  return Uri(name);
}

std::string PostgresServer::Uri(const std::string& database) const {
  return "postgresql://lossguard@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string PostgresServer::LogText() const {
  std::string out;
  for (const char* file : {"initdb.log", "server.log"}) {
    std::ifstream in(dir_ / file);
    std::stringstream text;
    text << in.rdbuf();
    out += text.str();
  }
  return out;
}

}  // namespace lossguard::testing
