// libFuzzer target: wire format v1 bodies (JSON and NDJSON). Whatever the input, parsing returns a
// record list or an error without crashing; an accepted batch round-trips through its canonical
// NDJSON unchanged.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "lossguard/wire/record_codec.h"
#include "lossguard/wire/step_record.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  for (auto format : {lossguard::wire::BodyFormat::kJson, lossguard::wire::BodyFormat::kNdjson}) {
    auto batch = lossguard::wire::ParseBatch(body, format);
    if (!batch) {
      (void)batch.error().Describe();
      continue;
    }
    std::string canonical = lossguard::wire::ToNdjson(batch.value());
    auto again = lossguard::wire::ParseBatch(canonical, lossguard::wire::BodyFormat::kNdjson);
    if (!again || lossguard::wire::ToNdjson(again.value()) != canonical) std::abort();
  }
  return 0;
}
