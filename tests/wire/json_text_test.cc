#include "lossguard/wire/json_text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "lossguard/wire/json_numbers.h"

namespace lossguard::wire {
namespace json_text_test {

using ::testing::HasSubstr;

std::string Nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(CheckJsonText, NestingUpToTheLimitPasses) {
  EXPECT_FALSE(CheckJsonText(Nested(kMaxJsonDepth)).has_value());
  auto problem = CheckJsonText(Nested(kMaxJsonDepth + 1));
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->offset, kMaxJsonDepth);
  EXPECT_THAT(problem->message, HasSubstr("nested deeper than 64 levels at byte offset 64"));
}

TEST(CheckJsonText, BracketsInsideStringsDoNotCount) {
  std::string text = R"({"a":")" + std::string(1000, '[') + R"(\"[[[", "b": [1]})";
  EXPECT_FALSE(CheckJsonText(text).has_value());
}

TEST(CheckJsonText, NamesTheRecordInBothBodyShapes) {
  std::string deep = Nested(100);
  auto in_object = CheckJsonText(R"({"records":[{"a":1},{"b":[2,3]},)" + deep + "]}");
  ASSERT_TRUE(in_object.has_value());
  EXPECT_EQ(in_object->element, 2u);
  auto in_array = CheckJsonText("[1, 2, 3, " + deep + "]");
  ASSERT_TRUE(in_array.has_value());
  EXPECT_EQ(in_array->element, 3u);
}

TEST(CheckJsonText, NulByteAnywhereIsFound) {
  std::string text = std::string(R"({"a":1})") + '\0' + R"({"b":2})";
  auto problem = CheckJsonText(text);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->offset, 7u);
  std::string in_string = std::string(R"({"a":"x)") + '\0' + R"("})";
  EXPECT_TRUE(CheckJsonText(in_string).has_value());
  std::string after_escape = std::string(R"({"a":"\)") + '\0' + R"("})";
  EXPECT_TRUE(CheckJsonText(after_escape).has_value());
}

TEST(ParseJsonText, RefusesWhatCheckJsonTextRefuses) {
  EXPECT_THROW(ParseJsonText(Nested(100000)), nlohmann::json::parse_error);
  EXPECT_THROW(ParseJsonText(std::string("{}\0{}", 5)), nlohmann::json::parse_error);
  EXPECT_EQ(ParseJsonText(R"({"loss": NaN})")["loss"], "NaN");
}

}  // namespace json_text_test
}  // namespace lossguard::wire
