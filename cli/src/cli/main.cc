// lossguard: command-line client of a lossguard server. One function per subcommand registers its
// flags and what it runs; main() only parses.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "alert_state_filter.h"
#include "analyzer_flags.h"
#include "cli/commands.h"
#include "lossguard/client/spool.h"
#include "token.h"

namespace lossguard::cli {
namespace {

constexpr const char* kDefaultServer = "http://127.0.0.1:8080";

// The exit code of the subcommand that ran.
int exit_code = 0;

// --server, --ca-file (else $LOSSGUARD_CA_FILE) and --token-file (else $LOSSGUARD_TOKEN), read
// into a ServerConnection once the command line is parsed; the token is the write token for
// commands that write, the read token (or the write token) for those that read from a server
// started with --read-token-file. False, after saying why, when the token cannot be read.
struct ServerFlags {
  std::optional<std::string> token_file;
  std::string ca_file;
  void Add(CLI::App& command, ServerConnection& server, bool writes) {
    server.url = kDefaultServer;
    command.add_option("--server", server.url, "server URL (http:// or https://)")
        ->capture_default_str();
    command
        .add_option("--ca-file", ca_file,
                    "https: PEM certificate authorities to verify the server with (else "
                    "LOSSGUARD_CA_FILE, else the system's)")
        ->check(CLI::ExistingFile);
    command.add_option("--token-file", token_file,
                       writes
                           ? "bearer token file: the server's write token (else LOSSGUARD_TOKEN)"
                           : "bearer token file, when the server requires a read token: the read "
                             "token or the write token (else LOSSGUARD_TOKEN)");
  }
  bool Load(const char* command, ServerConnection& server) const {
    server.ca_file = ca_file;
    if (const char* from_environment = std::getenv("LOSSGUARD_CA_FILE");
        server.ca_file.empty() && from_environment != nullptr) {
      server.ca_file = from_environment;
    }
    auto loaded = LoadToken(token_file, std::getenv("LOSSGUARD_TOKEN"));
    if (!loaded) {
      std::cerr << "lossguard " << command << ": " << loaded.error() << "\n";
      exit_code = 2;
      return false;
    }
    server.token = loaded.value().value_or("");
    return true;
  }
};

void AddReplay(CLI::App& app) {
  auto options = std::make_shared<ReplayOptions>();
  auto flags = std::make_shared<ServerFlags>();
  CLI::App* command =
      app.add_subcommand("replay", "send the records of an NDJSON file (one v1 record per line)");
  command->add_option("file", options->file, "NDJSON file")->required()->check(CLI::ExistingFile);
  flags->Add(*command, options->server, /*writes=*/true);
  command->add_option("--batch-size", options->batch_size, "records per request")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  command->callback([options, flags] {
    if (flags->Load("replay", options->server)) exit_code = Replay(*options, std::cout, std::cerr);
  });
}

void AddFlush(CLI::App& app) {
  auto options = std::make_shared<FlushOptions>();
  auto flags = std::make_shared<ServerFlags>();
  options->dir = client::DefaultSpoolDir().string();
  CLI::App* command = app.add_subcommand(
      "flush", "deliver what trainers left in their spools (each record once, resumable)");
  command
      ->add_option("dir", options->dir,
                   "spool directory ($LOSSGUARD_SPOOL_DIR, else ~/.local/state/lossguard/spool)")
      ->capture_default_str();
  flags->Add(*command, options->server, /*writes=*/true);
  command->add_option("--batch-size", options->batch_size, "records per request")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  command->callback([options, flags] {
    if (flags->Load("flush", options->server)) exit_code = Flush(*options, std::cout, std::cerr);
  });
}

void AddAlerts(CLI::App& app) {
  auto options = std::make_shared<AlertsOptions>();
  auto flags = std::make_shared<ServerFlags>();
  CLI::App* command = app.add_subcommand("alerts", "list alerts");
  flags->Add(*command, options->server, /*writes=*/false);
  command->add_option("--run", options->run, "only this run");
  command->add_option("--state", options->state, "open, resolved or all")
      ->check(CLI::IsMember(AlertStateFilterNames()))
      ->capture_default_str();
  command->add_flag("--json", options->json, "print the server's JSON");
  command->callback([options, flags] {
    if (flags->Load("alerts", options->server)) exit_code = Alerts(*options, std::cout, std::cerr);
  });
}

void AddImport(CLI::App& app) {
  auto options = std::make_shared<ImportOptions>();
  auto flags = std::make_shared<ServerFlags>();
  CLI::App* command = app.add_subcommand(
      "import", "send a Hugging Face Trainer trainer_state.json (its log_history) as a run");
  command->add_option("file", options->file, "trainer_state.json")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--run", options->run, "run name")->required();
  command->add_option("--ga-steps", options->ga_steps, "gradient_accumulation_steps of the job")
      ->required()
      ->check(CLI::Range(1, 1 << 20));
  command
      ->add_option("--micro-batch-size", options->micro_batch_size,
                   "per-device batch size (default: the file's train_batch_size)")
      ->check(CLI::Range(1, 1 << 20));
  command
      ->add_option("--vocab-size", options->vocab_size,
                   "the model's vocabulary size (lets the first steps be checked against "
                   "ln(vocab_size))")
      ->check(CLI::Range(2, 1 << 30));
  command->add_option("--world-size", options->world_size, "data-parallel processes")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  flags->Add(*command, options->server, /*writes=*/true);
  command->add_option("--out", options->out, "write the records as NDJSON here instead of sending");
  command->callback([options, flags] {
    if (flags->Load("import", options->server)) exit_code = Import(*options, std::cout, std::cerr);
  });
}

void AddAnalyze(CLI::App& app) {
  auto options = std::make_shared<AnalyzeOptions>();
  CLI::App* command = app.add_subcommand(
      "analyze", "run the analyzers over an NDJSON file locally (no server) and print the alerts");
  command->add_option("file", options->file, "NDJSON file")->required()->check(CLI::ExistingFile);
  command->add_flag("--json", options->json, "print alerts as JSON");
  AddAnalyzerFlags(*command, options->analyzers);
  command->callback([options] {
    if (Status valid = CheckAnalyzerOptions(options->analyzers); !valid) {
      std::cerr << "lossguard analyze: " << valid.error() << "\n";
      exit_code = 2;
      return;
    }
    exit_code = Analyze(*options, std::cout, std::cerr);
  });
}

void AddDelete(CLI::App& app) {
  auto options = std::make_shared<DeleteOptions>();
  auto flags = std::make_shared<ServerFlags>();
  CLI::App* command = app.add_subcommand(
      "delete", "delete a run on the server: its records, alerts and notifications, for good");
  command->add_option("run", options->run, "run name")->required();
  flags->Add(*command, options->server, /*writes=*/true);
  command->callback([options, flags] {
    if (flags->Load("delete", options->server))
      exit_code = DeleteRun(*options, std::cout, std::cerr);
  });
}

void AddExport(CLI::App& app) {
  auto options = std::make_shared<ExportOptions>();
  auto flags = std::make_shared<ServerFlags>();
  CLI::App* command = app.add_subcommand(
      "export",
      "write a run's records as NDJSON (wire format v1; `lossguard replay` sends it back)");
  command->add_option("run", options->run, "run name")->required();
  command->add_option("--format", options->format, "output format")
      ->check(CLI::IsMember({"ndjson"}))
      ->capture_default_str();
  command->add_option("--out,-o", options->out, "file to write (default: stdout)");
  flags->Add(*command, options->server, /*writes=*/false);
  command->callback([options, flags] {
    if (flags->Load("export", options->server))
      exit_code = ExportRun(*options, std::cout, std::cerr);
  });
}

void AddCopy(CLI::App& app) {
  auto options = std::make_shared<CopyOptions>();
  CLI::App* command = app.add_subcommand(
      "copy",
      "copy a lossguard database to another location, e.g. SQLite to PostgreSQL (stop the servers "
      "first; verified by row counts; run again to resume after a failure)");
  command->add_option("--from", options->from, "source: PATH, sqlite:PATH or postgresql://...")
      ->required();
  command
      ->add_option("--to", options->to,
                   "destination, created if new (empty, or a copy that "
                   "was interrupted)")
      ->required();
  command->add_option("--from-password-file", options->from_password_file,
                      "PostgreSQL password of the source (else PGPASSWORD or ~/.pgpass)");
  command->add_option("--to-password-file", options->to_password_file,
                      "PostgreSQL password of the destination");
  command->add_option("--chunk-rows", options->chunk_rows, "rows per destination transaction")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  command->callback([options] { exit_code = Copy(*options, std::cout, std::cerr); });
}

}  // namespace
}  // namespace lossguard::cli

int main(int argc, char** argv) {
  CLI::App app{"lossguard: send training records to a lossguard server and read its alerts."};
  app.require_subcommand(1);
  lossguard::cli::AddReplay(app);
  lossguard::cli::AddFlush(app);
  lossguard::cli::AddAlerts(app);
  lossguard::cli::AddImport(app);
  lossguard::cli::AddAnalyze(app);
  lossguard::cli::AddCopy(app);
  lossguard::cli::AddDelete(app);
  lossguard::cli::AddExport(app);
  try {
    CLI11_PARSE(app, argc, argv);      // runs the subcommand's callback
  } catch (const std::exception& e) {  // e.g. a malformed --server URL
    std::cerr << "lossguard: " << e.what() << "\n";
    return 2;
  }
  return lossguard::cli::exit_code;
}
