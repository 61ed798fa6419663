#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/alert_table.h"
#include "cli/commands.h"
#include "cli/ndjson_records.h"
#include "lossguard/analyzers/episode_log.h"
#include "lossguard/analyzers/run_analyzer.h"

namespace lossguard::cli {

int Analyze(const AnalyzeOptions& options, std::ostream& out, std::ostream& err) {
  std::ifstream in(options.file);
  if (!in) {
    err << "lossguard analyze: cannot open " << options.file << "\n";
    return 1;
  }
  std::map<std::string, analyzers::RunAnalyzer> runs;
  analyzers::EpisodeLog<std::string> episodes;

  Status read = ForEachRecordLine(
      in, options.file, [&](const std::string&, wire::StepRecord& record, std::size_t) {
        auto [run, inserted] = runs.try_emplace(record.run, options.analyzers);
        episodes.Apply(record.run, run->second.Add(record));
        return true;
      });
  if (!read) {
    err << "lossguard analyze: " << read.error() << "\n";
    return 1;
  }
  for (auto& [name, analyzer] : runs) episodes.Apply(name, analyzer.Flush());
  nlohmann::json alerts = nlohmann::json::array();
  for (const auto& [run, latest] : episodes.episodes()) {
    nlohmann::json alert = analyzers::EpisodeToJson(latest);
    alert["id"] = alerts.size() + 1;  // the order the episodes opened, as a server numbers them
    alert["run"] = run;
    alerts.push_back(std::move(alert));
  }

  if (options.json) {
    out << nlohmann::json{{"alerts", alerts}}.dump() << "\n";
  } else {
    PrintAlertTable(alerts, out);
  }
  return 0;
}

}  // namespace lossguard::cli
