#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "lossguard/analyzers/analyzer_options.h"
#include "lossguard/client/http_client.h"

namespace lossguard::cli {

// The server a command talks to (--server, --token-file, --ca-file).
struct ServerConnection {
  std::string url;
  std::string token;    // the write token, or the read token for commands that only read
  std::string ca_file;  // https: the CAs to verify the server with (else the system's)
  // The HTTP client options for it, each request given `timeout`.
  client::HttpClientOptions ClientOptions(std::chrono::seconds timeout) const {
    return client::HttpClientOptions{token, timeout, ca_file};
  }
};
// Per request: a query or a delete; a batch of records (the server may be busy storing others).
inline constexpr std::chrono::seconds kReadTimeout{30}, kSendTimeout{60};

struct ReplayOptions {
  std::string file;
  ServerConnection server;
  std::size_t batch_size = 1000;
  int retries = 5;  // per batch, on transport failure only (server restarting); 4xx is final
};

// Sends the records of an NDJSON file to the server in batches. Each line is validated locally
// first, so an error names the file's line. Stops at the first invalid line or refused batch, after
// saying how many records were already stored. Returns the process exit code.
int Replay(const ReplayOptions& options, std::ostream& out, std::ostream& err);

struct FlushOptions {
  std::string dir;  // a spool directory (the default one, or a trainer's --spool-dir)
  ServerConnection server;
  std::size_t batch_size = 1000;
  int retries = 5;
};

// Sends the undelivered records of every spool under `dir` (see client::Spool), each batch
// committed in its spool only after the server stored it: exactly once, as a restarted trainer's
// replay is, and resumable. Spools open in a running trainer are skipped. Returns the exit code (1
// when any spool was skipped or not fully flushed).
int Flush(const FlushOptions& options, std::ostream& out, std::ostream& err);

struct AlertsOptions {
  ServerConnection server;  // its token: the read token, when the server requires one
  std::optional<std::string> run;
  std::string state = "all";
  bool json = false;
};

// Prints the server's alerts as a table, or the server's JSON with --json. Returns the exit code.
int Alerts(const AlertsOptions& options, std::ostream& out, std::ostream& err);

struct ImportOptions {
  std::string file;
  std::string run;
  std::int64_t ga_steps = 1;
  std::optional<std::int64_t> micro_batch_size;  // else the file's train_batch_size
  std::optional<std::int64_t> vocab_size;
  std::int64_t world_size = 1;
  ServerConnection server;
  std::optional<std::string> out;  // write NDJSON here instead of sending
  std::size_t batch_size = 1000;
  int retries = 5;
};

// A trainer_state.json's training-loss entries as canonical v1 records, or why the text is not one.
struct TrainerStateConversion {
  std::vector<std::string> lines;  // canonical v1 records
  std::int64_t skipped = 0;        // log entries without a training loss
  std::string error;               // not empty: nothing is to be sent
};
TrainerStateConversion ConvertTrainerState(std::string_view text, const ImportOptions& options);

// Reads a Hugging Face Trainer trainer_state.json and sends its training-loss log entries (loss,
// grad_norm, learning_rate, step) as v1 records with the given configuration, so that a finished
// or running HF job can be checked. Validates everything before sending anything. Returns the
// exit code.
int Import(const ImportOptions& options, std::ostream& out, std::ostream& err);

struct AnalyzeOptions {
  std::string file;
  analyzers::AnalyzerOptions analyzers;
  bool json = false;
};

// Runs the analyzers over an NDJSON file locally (no server) and prints the alert episodes they
// open, as a table or as JSON in the server's alert format. Returns the exit code.
int Analyze(const AnalyzeOptions& options, std::ostream& out, std::ostream& err);

struct CopyOptions {
  std::string from;  // --db spellings: PATH, sqlite:PATH or postgresql://...
  std::string to;
  std::optional<std::string> from_password_file;
  std::optional<std::string> to_password_file;
  std::int64_t chunk_rows = 5000;
};

// Copies a lossguard database to another location (e.g. SQLite to PostgreSQL), verified by row
// counts and resumable (see store::CopyDatabase). Progress and the per-table counts go to `out`.
// Returns the exit code.
int Copy(const CopyOptions& options, std::ostream& out, std::ostream& err);

struct DeleteOptions {
  std::string run;
  ServerConnection server;
};

// Deletes a run on the server (DELETE /api/v1/runs/{run}): its records, alerts and notifications.
// Returns the exit code (1 when there is no such run).
int DeleteRun(const DeleteOptions& options, std::ostream& out, std::ostream& err);

struct ExportOptions {
  std::string run;
  ServerConnection server;
  std::optional<std::string> out;  // else stdout
  std::string format = "ndjson";   // the only one so far
};

// Writes every record of a run, in (step, rank) order, as NDJSON in wire format v1, exactly as the
// server stored them (unknown fields included): `lossguard replay` sends the file back. Returns
// the exit code.
int ExportRun(const ExportOptions& options, std::ostream& out, std::ostream& err);

}  // namespace lossguard::cli
