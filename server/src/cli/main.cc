// lossguard: command-line client of a lossguard server.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "analyzer_flags.h"
#include "cli/commands.h"
#include "config.h"
#include "lossguard/client/spool.h"

int main(int argc, char** argv) {
  CLI::App app{"lossguard: send training records to a lossguard server and read its alerts."};
  app.require_subcommand(1);
  std::string default_server = "http://127.0.0.1:8080";

  lossguard::cli::ReplayOptions replay;
  replay.server = default_server;
  std::optional<std::string> token_file;
  CLI::App* replay_cmd =
      app.add_subcommand("replay", "send the records of an NDJSON file (one v1 record per line)");
  replay_cmd->add_option("file", replay.file, "NDJSON file")->required()->check(CLI::ExistingFile);
  replay_cmd->add_option("--server", replay.server, "server URL")->capture_default_str();
  replay_cmd->add_option("--batch-size", replay.batch_size, "records per request")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  replay_cmd->add_option("--token-file", token_file, "bearer token file (else LOSSGUARD_TOKEN)");

  lossguard::cli::FlushOptions flush;
  flush.server = default_server;
  flush.dir = lossguard::client::DefaultSpoolDir().string();
  std::optional<std::string> flush_token_file;
  CLI::App* flush_cmd = app.add_subcommand(
      "flush", "deliver what trainers left in their spools (each record once, resumable)");
  flush_cmd
      ->add_option("dir", flush.dir,
                   "spool directory ($LOSSGUARD_SPOOL_DIR, else ~/.local/state/lossguard/spool)")
      ->capture_default_str();
  flush_cmd->add_option("--server", flush.server, "server URL")->capture_default_str();
  flush_cmd->add_option("--batch-size", flush.batch_size, "records per request")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  flush_cmd->add_option("--token-file", flush_token_file,
                        "bearer token file (else LOSSGUARD_TOKEN)");

  lossguard::cli::AlertsOptions alerts;
  alerts.server = default_server;
  CLI::App* alerts_cmd = app.add_subcommand("alerts", "list alerts");
  alerts_cmd->add_option("--server", alerts.server, "server URL")->capture_default_str();
  alerts_cmd->add_option("--run", alerts.run, "only this run");
  alerts_cmd->add_option("--state", alerts.state, "open, resolved or all")
      ->check(CLI::IsMember({"open", "resolved", "all"}))
      ->capture_default_str();
  alerts_cmd->add_flag("--json", alerts.json, "print the server's JSON");

  lossguard::cli::ImportOptions import;
  import.server = default_server;
  CLI::App* import_cmd = app.add_subcommand(
      "import", "send a Hugging Face Trainer trainer_state.json (its log_history) as a run");
  import_cmd->add_option("file", import.file, "trainer_state.json")
      ->required()
      ->check(CLI::ExistingFile);
  import_cmd->add_option("--run", import.run, "run name")->required();
  import_cmd->add_option("--ga-steps", import.ga_steps, "gradient_accumulation_steps of the job")
      ->required()
      ->check(CLI::Range(1, 1 << 20));
  import_cmd
      ->add_option("--micro-batch-size", import.micro_batch_size,
                   "per-device batch size (default: the file's train_batch_size)")
      ->check(CLI::Range(1, 1 << 20));
  import_cmd
      ->add_option("--vocab-size", import.vocab_size,
                   "the model's vocabulary size (lets the first steps be checked against "
                   "ln(vocab_size))")
      ->check(CLI::Range(2, 1 << 30));
  import_cmd->add_option("--world-size", import.world_size, "data-parallel processes")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  import_cmd->add_option("--server", import.server, "server URL")->capture_default_str();
  import_cmd->add_option("--out", import.out,
                         "write the records as NDJSON here instead of sending");
  std::optional<std::string> import_token_file;
  import_cmd->add_option("--token-file", import_token_file,
                         "bearer token file (else LOSSGUARD_TOKEN)");

  lossguard::cli::AnalyzeOptions analyze;
  CLI::App* analyze_cmd = app.add_subcommand(
      "analyze", "run the analyzers over an NDJSON file locally (no server) and print the alerts");
  analyze_cmd->add_option("file", analyze.file, "NDJSON file")
      ->required()
      ->check(CLI::ExistingFile);
  analyze_cmd->add_flag("--json", analyze.json, "print alerts as JSON");
  lossguard::AddAnalyzerFlags(*analyze_cmd, analyze.analyzers);

  CLI11_PARSE(app, argc, argv);
  try {
    if (replay_cmd->parsed()) {
      auto token = lossguard::LoadToken(token_file, std::getenv("LOSSGUARD_TOKEN"));
      if (!token) {
        std::cerr << "lossguard replay: " << token.error() << "\n";
        return 2;
      }
      replay.token = token.value().value_or("");
      return lossguard::cli::Replay(replay, std::cout, std::cerr);
    }
    if (flush_cmd->parsed()) {
      auto token = lossguard::LoadToken(flush_token_file, std::getenv("LOSSGUARD_TOKEN"));
      if (!token) {
        std::cerr << "lossguard flush: " << token.error() << "\n";
        return 2;
      }
      flush.token = token.value().value_or("");
      return lossguard::cli::Flush(flush, std::cout, std::cerr);
    }
    if (import_cmd->parsed()) {
      auto token = lossguard::LoadToken(import_token_file, std::getenv("LOSSGUARD_TOKEN"));
      if (!token) {
        std::cerr << "lossguard import: " << token.error() << "\n";
        return 2;
      }
      import.token = token.value().value_or("");
      return lossguard::cli::Import(import, std::cout, std::cerr);
    }
    if (analyze_cmd->parsed()) {
      if (auto invalid = lossguard::CheckAnalyzerOptions(analyze.analyzers)) {
        std::cerr << "lossguard analyze: " << *invalid << "\n";
        return 2;
      }
      return lossguard::cli::Analyze(analyze, std::cout, std::cerr);
    }
    return lossguard::cli::Alerts(alerts, std::cout, std::cerr);
  } catch (const std::exception& e) {  // e.g. a malformed --server URL
    std::cerr << "lossguard: " << e.what() << "\n";
    return 2;
  }
}
