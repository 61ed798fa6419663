#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/batch_sender.h"
#include "cli/commands.h"
#include "lossguard/wire/json_numbers.h"
#include "lossguard/wire/record_codec.h"

namespace lossguard::cli {

namespace {
using nlohmann::json;

// A number or a non-finite spelling, as the field's value; error text otherwise.
std::optional<double> Number(const json& entry, const char* field, std::size_t index,
                             std::string& error) {
  if (!entry.contains(field) || entry[field].is_null()) return std::nullopt;
  std::optional<double> value = wire::NumberFromJson(entry[field]);
  if (!value) {
    error = "log_history[" + std::to_string(index) + "]." + field + " must be a number, but got " +
            entry[field].dump();
  }
  return value;
}

TrainerStateConversion Convert(const json& state, const ImportOptions& o) {
  TrainerStateConversion c;
  if (!state.is_object() || !state.contains("log_history") || !state["log_history"].is_array()) {
    c.error = "not a Hugging Face trainer_state.json: no \"log_history\" array";
    return c;
  }
  std::optional<std::int64_t> micro_batch_size = o.micro_batch_size;
  if (!micro_batch_size && state.contains("train_batch_size") &&
      state["train_batch_size"].is_number_integer()) {
    micro_batch_size = state["train_batch_size"].get<std::int64_t>();  // per device
  }
  if (!micro_batch_size) {
    c.error = "--micro-batch-size is required (the file has no train_batch_size)";
    return c;
  }
  const json& history = state["log_history"];
  for (std::size_t i = 0; i < history.size(); ++i) {
    const json& entry = history[i];
    // Training-loss entries only: evaluation entries carry eval_loss, the summary train_loss.
    if (!entry.is_object() || !entry.contains("loss")) {
      ++c.skipped;
      continue;
    }
    std::optional<double> loss = Number(entry, "loss", i, c.error);
    std::optional<double> grad_norm = Number(entry, "grad_norm", i, c.error);
    std::optional<double> lr = Number(entry, "learning_rate", i, c.error);
    if (!c.error.empty()) return c;
    if (!loss) {
      c.error = "log_history[" + std::to_string(i) + "].loss is null";
      return c;
    }
    if (!entry.contains("step") || !entry["step"].is_number_integer()) {
      c.error = "log_history[" + std::to_string(i) + "].step must be an integer, but got " +
                (entry.contains("step") ? entry["step"].dump() : std::string("nothing"));
      return c;
    }
    json record = {{"run", o.run},
                   {"step", entry["step"]},
                   {"loss", wire::NumberToJson(*loss)},
                   {"ga_steps", o.ga_steps},
                   {"micro_batch_size", *micro_batch_size},
                   {"world_size", o.world_size},
                   {"rank", 0}};
    if (grad_norm) record["grad_norm"] = wire::NumberToJson(*grad_norm);
    if (lr) record["lr"] = wire::NumberToJson(*lr);
    if (o.vocab_size) record["vocab_size"] = *o.vocab_size;
    // The same validation as the server's, so that an error names the log entry.
    auto parsed = wire::ParseRecord(record, 0);
    if (!parsed) {
      c.error =
          "log_history[" + std::to_string(i) + "]: " +
          wire::RecordError{std::nullopt, parsed.error().field, parsed.error().message}.Describe();
      return c;
    }
    c.lines.push_back(wire::CanonicalJson(parsed.value()));
  }
  if (c.lines.empty()) c.error = "log_history has no entry with a training loss";
  return c;
}
}  // namespace

TrainerStateConversion ConvertTrainerState(std::string_view text, const ImportOptions& o) {
  json state;
  try {
    state = wire::ParseJsonText(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    return {.error = std::string("the file is not JSON: ") + e.what()};
  }
  return Convert(state, o);
}

int Import(const ImportOptions& o, std::ostream& out, std::ostream& err) {
  std::ifstream in(o.file);
  if (!in) {
    err << "lossguard import: cannot open " << o.file << "\n";
    return 1;
  }
  std::stringstream text;
  text << in.rdbuf();
  TrainerStateConversion c = ConvertTrainerState(text.str(), o);
  if (!c.error.empty()) {
    err << "lossguard import: " << o.file << ": " << c.error << " (nothing was sent)\n";
    return 1;
  }
  std::string summary = std::to_string(c.lines.size()) + " records as run " + o.run + " (skipped " +
                        std::to_string(c.skipped) + " log entries without a training loss)";
  if (o.out) {
    std::ofstream file(*o.out);
    for (const std::string& line : c.lines) file << line << "\n";
    if (!file.flush()) {
      err << "lossguard import: cannot write " << *o.out << "\n";
      return 1;
    }
    out << "wrote " << summary << " to " << *o.out << "\n";
    return 0;
  }
  client::IngestClient client(o.server.url, o.server.ClientOptions(kSendTimeout));
  SendTotals totals;
  for (std::size_t i = 0; i < c.lines.size(); i += o.batch_size) {
    const std::vector<std::string> batch(
        c.lines.begin() + static_cast<std::ptrdiff_t>(i),
        c.lines.begin() + static_cast<std::ptrdiff_t>(std::min(c.lines.size(), i + o.batch_size)));
    if (Status sent = SendBatch(client, batch, o.retries, totals); !sent) {
      err << "lossguard import: not stored: " << sent.error() << " (" << totals.accepted
          << " records before it were)\n";
      return 1;
    }
  }
  out << "imported " << summary << ": " << totals.duplicates << " duplicates, " << totals.replaced
      << " replaced\n";
  return 0;
}

}  // namespace lossguard::cli
