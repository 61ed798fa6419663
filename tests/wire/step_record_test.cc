#include "lossguard/wire/step_record.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "lossguard/wire/json_numbers.h"
#include "lossguard/wire/record_codec.h"

namespace lossguard::wire {
namespace step_record_test {

StepRecord Sample() {
  StepRecord r;
  r.run = "run-1";
  r.step = 42;
  r.rank = 1;
  r.world_size = 2;
  r.ga_steps = 8;
  r.micro_batch_size = 1;
  r.loss = std::numeric_limits<double>::quiet_NaN();
  r.grad_norm = std::numeric_limits<double>::infinity();
  r.tokens = 512;
  r.ref_loss = 2.25;
  r.micro = {MicroBatch{2.0, 10, 20.0},
             MicroBatch{-std::numeric_limits<double>::infinity(), 0, std::nullopt}};
  r.extra = {{"seq_len", 1024}};
  return r;
}

TEST(CanonicalJson, RoundTripsThroughTheParserIncludingNonFinite) {
  StepRecord original = Sample();
  std::string text = CanonicalJson(original);
  auto parsed = ParseRecord(nlohmann::json::parse(text), 0);
  ASSERT_TRUE(parsed.ok()) << parsed.error().Describe();
  EXPECT_EQ(CanonicalJson(parsed.value()), text);
  EXPECT_TRUE(std::isnan(parsed.value().loss));
  EXPECT_EQ(parsed.value().extra["seq_len"], 1024);
}

TEST(CanonicalJson, WritesNonFiniteAsStringsAndDefaultsExplicitly) {
  nlohmann::json json = ToJson(Sample());
  EXPECT_EQ(json["loss"], "NaN");
  EXPECT_EQ(json["grad_norm"], "Infinity");
  EXPECT_EQ(json["micro"][1]["loss"], "-Infinity");
  EXPECT_FALSE(json["micro"][1].contains("loss_sum"));

  StepRecord minimal;
  minimal.run = "r";
  nlohmann::json defaults = ToJson(minimal);
  EXPECT_EQ(defaults["rank"], 0);
  EXPECT_EQ(defaults["world_size"], 1);
}

TEST(CanonicalJson, SameRecordWrittenDifferentlyIsTheSameText) {
  // Integer vs float spelling of the loss, key order and an explicit default rank.
  auto a = ParseRecord(
      nlohmann::json::parse(R"({"run":"r","step":1,"ga_steps":2,"micro_batch_size":1,"loss":2})"),
      0);
  auto b = ParseRecord(
      nlohmann::json::parse(
          R"({"loss":2.0,"micro_batch_size":1,"rank":0,"ga_steps":2,"step":1,"run":"r"})"),
      0);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(CanonicalJson(a.value()), CanonicalJson(b.value()));
}

TEST(CanonicalJson, KnownFieldsWinOverExtraWithTheSameName) {
  StepRecord r = Sample();
  r.extra["loss"] = "shadow";  // cannot come from the parser, but ToJson must not let it through
  EXPECT_EQ(ToJson(r)["loss"], "NaN");
}

TEST(JsonNumbers, EncodeDecode) {
  EXPECT_EQ(NumberToJson(1.5), 1.5);
  EXPECT_EQ(NumberToJson(-INFINITY), "-Infinity");
  EXPECT_TRUE(std::isnan(*NumberFromJson("NaN")));
  EXPECT_EQ(*NumberFromJson(3), 3.0);
  EXPECT_FALSE(NumberFromJson("inf").has_value());
  EXPECT_FALSE(NumberFromJson(nullptr).has_value());
}

}  // namespace step_record_test
}  // namespace lossguard::wire
