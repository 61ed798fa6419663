#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace lossguard::wire {

// Python's json.dumps writes float('nan') as the bare token NaN (and Infinity, -Infinity), which is
// not JSON. Returns `text` with those tokens, where they stand as values outside strings, quoted
// ("NaN"); nullopt when there is no such token, so the caller can keep its original parse error.
std::optional<std::string> QuoteBareNonFiniteTokens(std::string_view text);

// ParseJsonText for a text that already passed CheckJsonText (the codec checks first, to name the
// record that failed).
nlohmann::json ParseCheckedJsonText(std::string_view text);

}  // namespace lossguard::wire
