#pragma once

#include <cstddef>
#include <optional>
#include <ostream>
#include <string>

#include "lossguard/analyzers/analyzer_options.h"

namespace lossguard::cli {

struct ReplayOptions {
  std::string file;
  std::string server;
  std::string token;
  std::size_t batch_size = 1000;
  int retries = 5;  // per batch, on transport failure only (server restarting); 4xx is final
};

// Sends the records of an NDJSON file to the server in batches. Each line is validated locally
// first, so an error names the file's line. Stops at the first invalid line or refused batch, after
// saying how many records were already stored. Returns the process exit code.
int Replay(const ReplayOptions& options, std::ostream& out, std::ostream& err);

struct AlertsOptions {
  std::string server;
  std::optional<std::string> run;
  std::string state = "all";
  bool json = false;
};

// Prints the server's alerts as a table, or the server's JSON with --json. Returns the exit code.
int Alerts(const AlertsOptions& options, std::ostream& out, std::ostream& err);

struct AnalyzeOptions {
  std::string file;
  analyzers::AnalyzerOptions analyzers;
  bool json = false;
};

// Runs the analyzers over an NDJSON file locally (no server) and prints the alert episodes they
// open, as a table or as JSON in the server's alert format. Returns the exit code.
int Analyze(const AnalyzeOptions& options, std::ostream& out, std::ostream& err);

}  // namespace lossguard::cli
