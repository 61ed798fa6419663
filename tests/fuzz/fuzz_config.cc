// libFuzzer target: a --config TOML file, read by CLI11 into the server's analyzer flags, then
// checked as lossguard-server checks it.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <sstream>
#include <string>

#include "analyzer_flags.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  CLI::App app{"fuzz"};
  lossguard::analyzers::AnalyzerOptions options;
  lossguard::AddAnalyzerFlags(app, options);
  app.allow_config_extras(CLI::config_extras_mode::error);
  std::istringstream input(std::string(reinterpret_cast<const char*>(data), size));
  try {
    app.parse_from_stream(input);
    (void)lossguard::CheckAnalyzerOptions(options);
  } catch (const CLI::Error&) {
    // A refused file: the server prints CLI11's message and exits 2.
  }
  return 0;
}
