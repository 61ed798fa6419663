#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/alert_table.h"
#include "cli/commands.h"
#include "cli/ndjson_records.h"
#include "lossguard/analyzers/run_analyzer.h"

namespace lossguard::cli {

int Analyze(const AnalyzeOptions& options, std::ostream& out, std::ostream& err) {
  std::ifstream in(options.file);
  if (!in) {
    err << "lossguard analyze: cannot open " << options.file << "\n";
    return 1;
  }
  std::map<std::string, analyzers::RunAnalyzer> runs;
  // Episodes by (run, kind, first_step), in the order they opened; later events update them.
  std::map<std::tuple<std::string, std::string, std::int64_t>, std::size_t> index;
  nlohmann::json alerts = nlohmann::json::array();
  auto apply = [&](const std::string& run, const std::vector<analyzers::AlertEvent>& events) {
    for (const analyzers::AlertEvent& e : events) {
      auto [it, inserted] = index.try_emplace({run, e.kind, e.first_step}, alerts.size());
      if (inserted) alerts.push_back({{"id", alerts.size() + 1}, {"run", run}, {"kind", e.kind}});
      nlohmann::json& alert = alerts[it->second];
      alert["severity"] = analyzers::SeverityName(e.severity);
      alert["state"] = e.action == analyzers::AlertEvent::Action::kResolve ? "resolved" : "open";
      alert["first_step"] = e.first_step;
      alert["last_step"] = e.last_step;
      alert["message"] = e.message;
      alert["evidence"] = e.evidence;
    }
  };

  std::optional<std::string> invalid = ForEachRecordLine(
      in, options.file, [&](const std::string&, wire::StepRecord& record, std::size_t) {
        auto [run, inserted] = runs.try_emplace(record.run, options.analyzers);
        apply(record.run, run->second.Add(record));
        return true;
      });
  if (invalid) {
    err << "lossguard analyze: " << *invalid << "\n";
    return 1;
  }
  for (auto& [name, analyzer] : runs) apply(name, analyzer.Flush());

  if (options.json) {
    out << nlohmann::json{{"alerts", alerts}}.dump() << "\n";
  } else {
    PrintAlertTable(alerts, out);
  }
  return 0;
}

}  // namespace lossguard::cli
