#pragma once

#include <sys/types.h>

#include <csignal>
#include <filesystem>
#include <string>

namespace lossguard::testing {

// A real PostgreSQL server (Debian's postgresql package) for the tests: initdb into a fresh
// directory, listening on a free port of 127.0.0.1 (and a Unix socket in its directory), trust
// authentication for the user `lossguard`. PostgreSQL refuses to run as root, so under root (CI)
// initdb and the server run as the unprivileged user `nobody`. Durability settings are the
// defaults except fsync, off unless asked for (the tests kill servers, never the machine; the
// benchmarks turn it on). Throws std::runtime_error, with the server's log, when it cannot be set
// up.
class PostgresServer {
 public:
  struct Options {
    bool fsync = false;
  };
  PostgresServer() : PostgresServer(Options{}) {}
  explicit PostgresServer(Options options);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;

  // The server that the tests of this process share, started on first use.
  static PostgresServer& Shared();

  // A new empty database; returns its URI.
  std::string CreateDatabase(const std::string& name);
  // postgresql://lossguard@127.0.0.1:PORT/DATABASE
  std::string Uri(const std::string& database) const;
  int port() const { return port_; }

  // Stops the server: SIGINT is a fast shutdown, SIGQUIT an immediate one (a crash: WAL recovery
  // at the next start). Returns once it has exited.
  void Stop(int signal = SIGINT);
  // Starts it again on the same port and data; returns once it accepts connections.
  void Start();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // the postmaster; its children are the connections
  std::string LogText() const;

 private:
  std::filesystem::path bin_;
  std::filesystem::path dir_;
  Options options_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace lossguard::testing
