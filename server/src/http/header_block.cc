#include "http/header_block.h"

namespace lossguard::http {

HeaderBlock ScanHeaderBlock(std::string_view bytes) {
  for (std::size_t line_end = bytes.find('\n'); line_end != std::string_view::npos;
       line_end = bytes.find('\n', line_end + 1)) {
    if (line_end == 0 || bytes[line_end - 1] != '\r') return HeaderBlock::kComplete;
    if (line_end + 1 == bytes.size()) return HeaderBlock::kIncomplete;
    const char next = bytes[line_end + 1];
    if (next == ' ' || next == '\t') return HeaderBlock::kFolded;
    if (next == '\r') return HeaderBlock::kComplete;  // the empty line that ends the block
  }
  return HeaderBlock::kIncomplete;
}

}  // namespace lossguard::http
