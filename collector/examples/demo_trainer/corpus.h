#pragma once
// The demo's training text: deterministic pseudo-English, generated, so nothing is downloaded; and
// its character-level vocabulary.

#include <cstdint>
#include <string>

namespace lossguard::demo {

// Characters 32..126 map to ids 1..95; 0 is padding.
inline constexpr std::int64_t kVocab = 96;
inline constexpr std::int64_t kPad = 0;
inline std::int64_t TokenId(char c) { return (c >= 32 && c <= 126) ? c - 31 : 1; }

// `characters` characters of sentences drawn from a fixed grammar (the same text every time).
std::string Corpus(std::size_t characters);

}  // namespace lossguard::demo
