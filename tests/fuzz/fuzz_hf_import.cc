// libFuzzer target: `lossguard import` of a Hugging Face trainer_state.json. Any text converts or
// is refused with a message; every converted line is a valid v1 record.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cli/commands.h"
#include "lossguard/wire/record_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lossguard::cli::ImportOptions options;
  options.run = "fuzz";
  options.ga_steps = 4;
  auto conversion = lossguard::cli::ConvertTrainerState(
      std::string_view(reinterpret_cast<const char*>(data), size), options);
  if (!conversion.error.empty()) return 0;
  for (std::size_t i = 0; i < conversion.lines.size(); ++i) {
    if (!lossguard::wire::ParseRecordText(conversion.lines[i], i)) std::abort();
  }
  return 0;
}
