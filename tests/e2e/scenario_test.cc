// The analyzers against the scenario corpus (tests/scenarios: real demo-trainer runs with ground
// truth in manifest.json), through the real server: records go in over HTTP in batches, alerts come
// out of GET /api/v1/alerts. Prints the precision/recall table the README quotes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "e2e/corpus.h"
#include "lossguard/client/http_client.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"

namespace lossguard::testing {
namespace scenario_test {

using nlohmann::json;

struct Expected {
  std::string kind;
  std::int64_t onset = 0, within = 0;
  std::optional<std::string> explained_by;
  std::string severity;                         // at least this severity ("info" when not given)...
  std::optional<std::int64_t> severity_within;  // ...reached within this many steps of the onset
  bool known_miss = false;  // not found today: counted as missed, not a test failure
};

int SeverityRank(const std::string& severity) {
  return severity == "critical" ? 2 : severity == "warning" ? 1 : 0;
}

struct Scenario {
  std::string run;  // also the file name without .ndjson
  std::string set;  // "tuning" or "held-out"
  std::vector<Expected> expected;
  std::set<std::string> allowed;
  bool healthy = true;  // no fault (an undetectable fault is still a fault)
};

std::vector<Expected> ParseExpected(const json& list) {
  std::vector<Expected> out;
  for (const json& e : list) {
    Expected x{e.at("kind"), e.at("onset"), e.at("within"), std::nullopt,
               e.value("severity", "info")};
    if (e.contains("explained_by")) x.explained_by = e["explained_by"];
    if (e.contains("severity_within")) x.severity_within = e["severity_within"];
    x.known_miss = e.value("known_miss", false);
    out.push_back(x);
  }
  return out;
}

// Every scenario twice: as the collector sends it, and minimal (unless "minimal": false, as for
// the sparse variants, which are minimal already).
std::vector<Scenario> LoadScenarios() {
  std::ifstream in(kCorpus / "manifest.json");
  json manifest = json::parse(in);
  std::vector<Scenario> out;
  for (const json& s : manifest.at("scenarios")) {
    std::set<std::string> allowed;
    for (const json& kind : s.value("allowed", json::array())) allowed.insert(kind);
    auto expected = ParseExpected(s.at("expected"));
    std::string set = s.value("set", "tuning");
    bool healthy = !s.contains("fault");
    for (const Expected& e : expected) healthy = healthy && e.kind == "config_change";
    out.push_back({s.at("name"), set, expected, allowed, healthy});
    if (!s.value("minimal", true)) continue;
    auto minimal = s.contains("minimal_expected") ? ParseExpected(s["minimal_expected"]) : expected;
    out.push_back({s.at("name").get<std::string>() + ".minimal", set, minimal, allowed, healthy});
  }
  return out;
}

struct KindScore {
  int expected = 0, found = 0, false_alarms = 0;
  std::vector<std::int64_t> delays;
};

TEST(Scenarios, EveryFaultIsFoundInTimeAndHealthyRunsAreQuiet) {
  TempDir dir;
  ServerProcess server({.db = dir.File("db")});
  client::HttpClient client(server.url());
  std::map<std::pair<std::string, std::string>, KindScore> score;  // (set, kind)
  std::ostringstream detail;
  int runs = 0, records = 0;
  struct Healthy {
    int runs = 0, loud = 0;  // loud: alerts of warning or critical severity
    std::int64_t steps = 0;  // training steps the runs cover
  };
  std::map<std::string, Healthy> healthy;  // per set
  for (const Scenario& s : LoadScenarios()) {
    SCOPED_TRACE(s.run);
    auto lines = Lines(s.run);
    records += static_cast<int>(lines.size());
    ++runs;
    Send(client, lines, 0, lines.size());
    json alerts = Alerts(client, s.run);
    std::set<std::size_t> matched;
    for (const Expected& e : s.expected) {
      KindScore& k = score[{s.set, e.kind}];
      ++k.expected;
      bool found = false;
      for (std::size_t i = 0; i < alerts.size() && !found; ++i) {
        const json& a = alerts[i];
        if (a["kind"] != e.kind || matched.count(i)) continue;
        std::int64_t first = a["first_step"];
        if (first < e.onset || first > e.onset + e.within) continue;
        if (e.explained_by && a["evidence"].value("explained_by", "") != *e.explained_by) continue;
        if (SeverityRank(a["severity"]) < SeverityRank(e.severity)) continue;
        if (e.severity_within &&
            a["evidence"].value("severity_since", first) > e.onset + *e.severity_within)
          continue;
        matched.insert(i);
        found = true;
        ++k.found;
        k.delays.push_back(first - e.onset);
      }
      if (!found && e.known_miss) {
        detail << "  known miss: " << s.run << " " << e.kind << " at " << e.onset << "\n";
        continue;
      }
      EXPECT_TRUE(found) << s.run << ": expected " << e.kind << " opening in [" << e.onset << ", "
                         << e.onset + e.within << "]"
                         << (e.explained_by ? " explained by " + *e.explained_by : "")
                         << " at severity " << e.severity << " or above"
                         << (e.severity_within
                                 ? " within " + std::to_string(*e.severity_within) + " steps"
                                 : "")
                         << "; alerts: " << alerts.dump();
    }
    for (std::size_t i = 0; i < alerts.size(); ++i) {
      const json& a = alerts[i];
      if (matched.count(i) || a["severity"] == "info" || s.allowed.count(a["kind"])) continue;
      ++score[{s.set, a["kind"].get<std::string>()}].false_alarms;
      ADD_FAILURE() << s.run << ": false alarm " << a.dump();
    }
    if (s.healthy) {
      Healthy& h = healthy[s.set];
      ++h.runs;
      h.steps += json::parse(lines.back())["step"].get<std::int64_t>() -
                 json::parse(lines.front())["step"].get<std::int64_t>() + 1;
      for (const json& a : alerts) h.loud += a["severity"] != "info";
    }
    detail << "  " << std::left << std::setw(38) << s.run;
    for (const json& a : alerts) {
      detail << " " << a["kind"].get<std::string>() << ":" << a["severity"].get<std::string>()
             << "@" << a["first_step"] << (a["evidence"].contains("caused_by") ? "(symptom)" : "");
    }
    detail << "\n";
  }

  // The table for the README.
  std::ostringstream table;
  table << "Scenario corpus: " << runs << " runs, " << records
        << " records (tests/scenarios, scripts/make_scenarios.sh)\n\n"
        << "| set | kind | faults | found in time | missed | false alarms | precision | recall | "
           "delay (steps, max) |\n|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& [key, k] : score) {
    const auto& [set, kind] = key;
    auto ratio = [](int a, int b) {
      std::ostringstream out;
      if (b == 0) return std::string("-");
      out << std::fixed << std::setprecision(2) << static_cast<double>(a) / b;
      return out.str();
    };
    std::int64_t worst = 0;
    for (auto d : k.delays) worst = std::max(worst, d);
    table << "| " << set << " | " << kind << " | " << k.expected << " | " << k.found << " | "
          << k.expected - k.found << " | " << k.false_alarms << " | "
          << ratio(k.found, k.found + k.false_alarms) << " | " << ratio(k.found, k.expected)
          << " | " << (k.delays.empty() ? "-" : std::to_string(worst)) << " |\n";
  }
  for (const auto& [set, h] : healthy) {
    table << "\n"
          << set << ": " << h.runs << " runs without a fault, " << h.steps << " training steps, "
          << h.loud << " alerts of warning or critical severity on them (" << std::fixed
          << std::setprecision(1) << 1e4 * h.loud / static_cast<double>(h.steps)
          << " per 10,000 healthy steps)";
  }
  std::cout << table.str() << "\n\n" << detail.str();
}

const std::vector<std::string> kRestartRuns = {
    "bug-lr-spike",      "bug-ga-change.minimal", "bug-nan", "healthy-mb2-ga2-ws2", "bug-zero-grad",
    "bug-mean-of-means", "bug-sum-no-ga-div-ws2"};

std::map<std::string, std::vector<std::string>> Uninterrupted(const TempDir& dir) {
  return AlertsOfOneServer(dir.File("uninterrupted.db"), kRestartRuns);
}

TEST(Scenarios, ARestartMidRunNeitherLosesNorDuplicatesAlerts) {
  TempDir dir;
  auto expected = Uninterrupted(dir);
  for (int signal : {SIGKILL, SIGTERM}) {
    SCOPED_TRACE(signal == SIGKILL ? "kill -9" : "SIGTERM");
    const auto db = dir.File(std::string("restarted-") + std::to_string(signal) + ".db");
    std::map<std::string, std::vector<std::string>> lines;
    for (const std::string& run : kRestartRuns) lines[run] = Lines(run);
    // Odd split points: a 2-rank run stops between the ranks of a step, which then waits.
    for (std::size_t split : {61u, 147u}) {
      ServerProcess server({.db = db});
      client::HttpClient client(server.url());
      for (auto& [run, l] : lines) {
        std::size_t begin = split == 61 ? 0 : 61;
        Send(client, l, std::min(begin, l.size()), std::min(split, l.size()), 7);
      }
      server.Stop(signal, std::chrono::seconds(15));
    }
    ServerProcess server({.db = db});
    client::HttpClient client(server.url());
    for (auto& [run, l] : lines) {
      Send(client, l, std::min<std::size_t>(147, l.size()), l.size(), 7);
      EXPECT_EQ(Comparable(Alerts(client, run)), expected[run]) << run;
    }
  }
}

TEST(Scenarios, RunsEvictedFromMemoryAreRebuiltFromTheStore) {
  TempDir dir;
  auto expected = Uninterrupted(dir);
  // One run's state in memory at a time, while all runs stream interleaved.
  ServerProcess server({.db = dir.File("evicting.db"), .extra_args = {"--analyzer-max-runs", "1"}});
  client::HttpClient client(server.url());
  std::map<std::string, std::vector<std::string>> lines;
  for (const std::string& run : kRestartRuns) lines[run] = Lines(run);
  for (std::size_t begin = 0; begin < 400; begin += 5) {
    for (auto& [run, l] : lines) {
      if (begin < l.size()) Send(client, l, begin, std::min(begin + 5, l.size()), 5);
    }
  }
  for (auto& [run, l] : lines) EXPECT_EQ(Comparable(Alerts(client, run)), expected[run]) << run;
}

}  // namespace scenario_test
}  // namespace lossguard::testing
